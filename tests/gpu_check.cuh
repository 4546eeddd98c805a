// Helpers of the GPU checks: upload host doubles as a device type, download to doubles, and poisoned
// output buffers (every byte 0xFF: NaN in fp32 and in bf16) so an element a kernel fails to write
// shows as NaN and fails max_rel_err. Tolerances of METHOD.md / the GPU issue: fp32 1e-4, bf16 2e-2.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <cmath>
#include <vector>

#include "../kernels/common.cuh"
#include "../model/random.h"
#include "check.h"
#include "random_inputs.h"

#if defined(ENABLE_FP32)
static const double GPU_TOLERANCE = 1e-4;
#else
static const double GPU_TOLERANCE = 2e-2;
#endif

template <typename T> static inline T host_from_double(double x) { return (T)x; }
template <> inline __nv_bfloat16 host_from_double<__nv_bfloat16>(double x) { return __float2bfloat16((float)x); }
template <typename T> static inline double host_to_double(T x) { return (double)x; }
template <> inline double host_to_double<__nv_bfloat16>(__nv_bfloat16 x) { return (double)__bfloat162float(x); }

template <typename T>
T* device_upload(const std::vector<double>& host) {
    std::vector<T> tmp(host.size());
    for (size_t i = 0; i < host.size(); i++) tmp[i] = host_from_double<T>(host[i]);
    T* d = nullptr;
    cudaCheck(cudaMalloc(&d, tmp.size() * sizeof(T)));
    cudaCheck(cudaMemcpy(d, tmp.data(), tmp.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

template <typename T>
T* device_poisoned(size_t n) {
    T* d = nullptr;
    cudaCheck(cudaMalloc(&d, n * sizeof(T)));
    cudaCheck(cudaMemset(d, 0xFF, n * sizeof(T)));
    return d;
}

template <typename T>
std::vector<double> device_download(const T* d, size_t n) {
    cudaCheck(cudaDeviceSynchronize());
    std::vector<T> tmp(n);
    cudaCheck(cudaMemcpy(tmp.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<double> out(n);
    for (size_t i = 0; i < n; i++) out[i] = host_to_double<T>(tmp[i]);
    return out;
}

// Rounds host values to what a T holds, so the reference sees exactly the kernel's inputs.
template <typename T>
void round_to(std::vector<double>& x) {
    for (double& v : x) v = host_to_double<T>(host_from_double<T>(v));
}

// Random parameters with the GEMM weights rounded to floatX: the GPU's GEMMs read that copy, so both
// sides then compute the same function and the comparison measures the kernels, not the rounding of
// the weights.
static inline std::vector<double> gpu_parameters(const ParameterTable& t, const Config& c, uint64_t seed,
                                                 double matrix_noise) {
    std::vector<double> params = random_parameters(t, c, seed, 0.05, matrix_noise);
    for (const ParamTensor& p : t.tensors) {
        const bool gemm_weight = p.kind == P_WTE || p.kind == P_IN_PROJ || p.kind == P_OUT_PROJ || p.kind == P_QKV ||
                                 p.kind == P_ATTN_OUT || p.kind == P_UP || p.kind == P_DOWN || p.kind == P_LM_HEAD;
        if (!gemm_weight) continue;
        std::vector<double> x(params.begin() + p.offset, params.begin() + p.offset + p.numel);
        round_to<floatX>(x);
        std::copy(x.begin(), x.end(), params.begin() + p.offset);
    }
    return params;
}

static inline std::vector<double> random_vector(size_t n, Random& rng, double scale) {
    std::vector<double> x(n);
    for (double& v : x) v = scale * rng.normal();
    return x;
}

static inline double max_abs(const std::vector<double>& x) {
    double m = 0;
    for (double v : x) m = fmax(m, fabs(v));
    return m;
}

// Columns [c0, c1) of a (rows, stride) tensor, row by row.
static inline std::vector<double> columns(const std::vector<double>& x, size_t rows, int stride, int c0, int c1) {
    std::vector<double> out;
    out.reserve(rows * (c1 - c0));
    for (size_t i = 0; i < rows; i++)
        for (int c = c0; c < c1; c++) out.push_back(x[i * stride + c]);
    return out;
}

// A (rows, width) tensor laid out with rows `stride` apart, the padding NaN (a kernel that reads it fails).
static inline std::vector<double> padded_rows(const std::vector<double>& x, size_t rows, int width, int stride) {
    std::vector<double> out(rows * stride, NAN);
    for (size_t i = 0; i < rows; i++)
        for (int c = 0; c < width; c++) out[i * stride + c] = x[i * width + c];
    return out;
}

static inline std::vector<double> plus(const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<double> out(a.size());
    for (size_t i = 0; i < a.size(); i++) out[i] = a[i] + b[i];
    return out;
}

static inline std::vector<double> minus(const std::vector<double>& a, const std::vector<double>& b) {
    std::vector<double> out(a.size());
    for (size_t i = 0; i < a.size(); i++) out[i] = a[i] - b[i];
    return out;
}

// Random start values of an accumulated output (+=), on the scale of what the kernel adds to them and
// rounded to the output's type T, so a kernel that overwrites instead of adding fails.
template <typename T>
std::vector<double> prefill(const std::vector<double>& increment, Random& rng) {
    std::vector<double> x = random_vector(increment.size(), rng, max_abs(increment));
    round_to<T>(x);
    return x;
}

// One check line per compared output: "<what> (<shape>) max rel err 3.1e-04 <= 2e-02".
static inline void check_err(TestReport& r, double err, const char* what, const char* shape) {
    r.check(err <= GPU_TOLERANCE, "%s (%s) max rel err %.1e <= %.0e", what, shape, err, GPU_TOLERANCE);
}
static inline void check_err(TestReport& r, const std::vector<double>& got, const std::vector<double>& want,
                             const char* what, const char* shape) {
    check_err(r, max_rel_err(got.data(), want.data(), got.size()), what, shape);
}

// Fresh inputs every run: the seed comes from the clock, or from M2RNN_TEST_SEED to repeat a failing
// run; each call returns a new one. Every test prints the seed it drew.
static inline uint64_t test_seed() {
    static uint64_t counter = 0;
    const char* env = getenv("M2RNN_TEST_SEED");
    uint64_t base = env ? strtoull(env, nullptr, 10) : (uint64_t)time(nullptr);
    return base + counter++;
}
