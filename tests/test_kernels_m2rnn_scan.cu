// GPU checks of kernels/m2rnn_scan.cuh against the reference steps m2rnn_scan_forward / m2rnn_scan_backward
// (double precision, called as reference_forward / reference_backward call them) on fresh random inputs, rounded
// to what the kernels read before the reference sees them. y and df start poisoned, so an unwritten element fails;
// dqkv and dW start from known random values and what the kernel added to them is compared with the reference's
// increment, so overwriting instead of adding fails. The backward reads the checkpoints the GPU forward wrote.
// Each shape runs with clipping off and with a clip that bites, from H_{-1} = 0 and from a random H_{-1} (the
// `state` argument, row-major as --state-noise's fill kernel writes it): the forward's y and the last state it leaves
// in `state` (against the reference's H_{T-1}), then the backward from the checkpoints, whose t = 0 terms read
// H_{-1}. A carried state (generation's one position at a time) is checked by running a sequence in two calls, the
// second starting from the state the first left. The fill kernel (m2rnn_initial_state.cuh) is checked against
// model_math.h's m2rnn_initial_state on every element.
#include "test_kernels_m2rnn_scan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "../kernels/m2rnn_initial_state.cuh"
#include "../kernels/m2rnn_scan.cuh"
#include "../model/reference.h"
#include "gpu_check.cuh"

namespace {

struct ScanShape {
    int B, T;
    M2RNNLayout L;
    int chunk;
    size_t BT() const { return (size_t)B * T; }
};

const ScanShape SHAPES[] = {
    {2, 37, {4, 8, 4, 1, 1}, 8},     // tiny, all heads share q and k; the last chunk is 5 steps
    {3, 29, {6, 6, 4, 3, 3}, 5},     // q/k shared by pairs of heads; K·V = 24 is no multiple of a warp
    {2, 64, {3, 64, 16, 1, 1}, 16},  // the real head size (K·V = 1024 threads); bf16: tensor cores, 1 head a block
    // bf16 builds run these on the tensor-core kernels (V = 16, K = 16, 32, 64), fp32 builds on the scalar ones
    {2, 45, {8, 64, 16, 1, 1}, 16},  // 4 heads a backward block; the last chunk (13 steps) is 2 segments, 8 + 5
    {1, 50, {4, 64, 16, 1, 2}, 24},  // q shared by 4 heads, k by 2: 2 heads a block; 3 segments a chunk
    {3, 23, {4, 32, 16, 2, 2}, 6},   // K = 32; a chunk shorter than a segment
    {2, 20, {2, 16, 16, 2, 2}, 16},  // K = 16, no sharing: 1 head a block, each head its own q and k
    {2, 33, {4, 48, 16, 1, 1}, 16},  // K = 48: three 16-row slices of the state per head, one warp each
};
const double CLIP_BITES = 0.05;

void describe(char* buf, size_t size, const ScanShape& s, double clip, bool random_h0 = false) {
    snprintf(buf, size, "B=%d T=%d N=%d K=%d V=%d Nq=%d Nk=%d chunk %d, clip %g%s", s.B, s.T, s.L.N, s.L.K, s.L.V,
             s.L.Nq, s.L.Nk, s.chunk, clip, random_h0 ? ", random H_{-1}" : "");
}

struct ScanInputs {
    std::vector<double> qkv, f, W, dy;
};

struct ScanGrads {
    std::vector<double> dqkv, df, dW;  // what the backward adds (df: writes)
};

ScanGrads reference_scan_backward(const ScanShape& s, const ScanInputs& in, const double* H0,
                                  const std::vector<double>& H, const std::vector<double>& Z, double clip) {
    ScanGrads g;
    g.dqkv.assign(s.BT() * s.L.Cc(), 0.0);
    g.df.assign(s.BT() * s.L.N, 0.0);
    g.dW.assign((size_t)s.L.N * s.L.V * s.L.V, 0.0);
    m2rnn_scan_backward(g.dqkv.data(), g.df.data(), g.dW.data(), in.dy.data(), in.qkv.data(), in.f.data(), in.W.data(),
                        H0, H.data(), Z.data(), clip, s.L, s.B, s.T);
    return g;
}

// Random fp32 start values for an accumulated output, on the scale of the increment in each column range
// [bounds[k], bounds[k+1]) of its rows.
std::vector<double> prefill_by_columns(const std::vector<double>& increment, size_t rows, int stride,
                                       const std::vector<int>& bounds, Random& rng) {
    std::vector<double> x(increment.size());
    for (size_t k = 0; k + 1 < bounds.size(); k++) {
        const double scale = max_abs(columns(increment, rows, stride, bounds[k], bounds[k + 1]));
        for (size_t i = 0; i < rows; i++)
            for (int c = bounds[k]; c < bounds[k + 1]; c++) x[i * stride + c] = scale * rng.normal();
    }
    round_to<float>(x);
    return x;
}

// The N matrices W_n = I + noise of entries 0.2/√V (spectral size about 0.4 whatever V: with a W much farther from
// I the unclipped backward over 64 steps is so ill-conditioned that fp32 rounding alone moves it by 1e-4), rounded
// to what the kernels read: fp32, or fp16 on the tensor-core kernels (scan_tc_read_w). Left in fp32 there, the
// kernels' rounding of W's diagonal (an fp16 ulp at 1 is 2^-10) moves H_{T-1} after 64 steps by ≈ 1e-2 of its
// scale: half the bf16 tolerance, measured as the largest of the forward's error terms (docs/perf.md).
std::vector<double> random_scan_w(const M2RNNLayout& L, Random& rng) {
    const int V = L.V;
    std::vector<double> W = random_vector((size_t)L.N * V * V, rng, 0.2 / sqrt((double)V));
    for (int n = 0; n < L.N; n++)
        for (int m = 0; m < V; m++) W[((size_t)n * V + m) * V + m] += 1.0;
    round_to<float>(W);
    if (m2rnn_scan_tc_supported(L.K, V))
        for (double& w : W) w = scan_tc_read_w((float)w);
    return W;
}

void test_scan(TestReport& r, const ScanShape& s, double clip, bool random_h0, Random& rng) {
    char shape[160];
    describe(shape, sizeof(shape), s, clip, random_h0);
    const M2RNNLayout& L = s.L;
    const size_t BT = s.BT();
    const int Cc = L.Cc(), NV = L.NV(), V = L.V;
    const int q_end = L.Nq * L.K, k_end = (L.Nq + L.Nk) * L.K;

    ScanInputs in;
    in.qkv = random_vector(BT * Cc, rng, 0.5);
    round_to<floatX>(in.qkv);
    in.f.resize(BT * L.N);
    for (double& x : in.f) x = rng.uniform(0.05, 0.95);
    round_to<float>(in.f);
    in.W = random_scan_w(L, rng);
    in.dy = random_vector(BT * NV, rng, 1.0);
    round_to<floatX>(in.dy);
    const size_t KV = (size_t)L.K * V, state_floats = (size_t)s.B * L.N * KV;
    std::vector<double> h0(random_h0 ? state_floats : 0);  // (B,N,K,V) H_{-1}, uniform in (-0.9, 0.9)
    for (double& x : h0) x = rng.uniform(-0.9, 0.9);
    round_to<float>(h0);
    const double* H0 = random_h0 ? h0.data() : nullptr;

    // forward
    std::vector<double> y(BT * NV), H((size_t)s.B * L.N * s.T * KV), Z(H.size());
    m2rnn_scan_forward(y.data(), H.data(), Z.data(), in.qkv.data(), in.f.data(), in.W.data(), H0, L, s.B, s.T);
    floatX* d_qkv = device_upload<floatX>(in.qkv);
    float* d_f = device_upload<float>(in.f);
    float* d_W = device_upload<float>(in.W);
    floatX* d_y = device_poisoned<floatX>(BT * NV);
    float* d_checkpoints = device_poisoned<float>(m2rnn_scan_checkpoint_floats(L, s.B, s.T, s.chunk));
    float* d_state = random_h0 ? device_upload<float>(h0) : nullptr;
    m2rnn_scan_forward(d_y, d_checkpoints, d_state, d_qkv, d_f, d_W, L, s.B, s.T, s.chunk, 0);
    check_err(r, device_download(d_y, BT * NV), y, "m2rnn_scan_forward y", shape);
    if (random_h0) {  // the state left is H_{T-1} of every chain, row-major
        std::vector<double> last(state_floats);
        for (size_t chain = 0; chain < (size_t)s.B * L.N; chain++)
            std::copy(H.begin() + (chain * s.T + s.T - 1) * KV, H.begin() + (chain * s.T + s.T) * KV,
                      last.begin() + chain * KV);
        check_err(r, device_download(d_state, state_floats), last, "m2rnn_scan_forward state left (H_{T-1})", shape);
    }

    // backward
    const ScanGrads want = reference_scan_backward(s, in, H0, H, Z, clip);
    if (clip > 0) {
        const ScanGrads exact = reference_scan_backward(s, in, H0, H, Z, 0.0);
        const double e_dqkv = max_rel_err(want.dqkv.data(), exact.dqkv.data(), want.dqkv.size()),
                     e_df = max_rel_err(want.df.data(), exact.df.data(), want.df.size()),
                     e_dW = max_rel_err(want.dW.data(), exact.dW.data(), want.dW.size());
        const double least = fmin(e_dqkv, fmin(e_df, e_dW));
        r.check(least > 10 * GPU_TOLERANCE,
                "m2rnn_scan_backward clip bites (%s): reference with vs without clip differs by dqkv %.2f, df %.2f, "
                "dW %.2f (rel) > %.0e",
                shape, e_dqkv, e_df, e_dW, 10 * GPU_TOLERANCE);
    }
    const std::vector<double> dqkv0 = prefill_by_columns(want.dqkv, BT, Cc, {0, q_end, k_end, Cc}, rng);
    const std::vector<double> dW0 = prefill_by_columns(want.dW, 1, (int)want.dW.size(), {0, (int)want.dW.size()}, rng);
    floatX* d_dy = device_upload<floatX>(in.dy);
    float* d_dqkv = device_upload<float>(dqkv0);
    float* d_df = device_poisoned<float>(BT * L.N);
    float* d_dW = device_upload<float>(dW0);
    float* d_scratch = device_poisoned<float>(m2rnn_scan_backward_scratch_floats(L, s.B, s.T, s.chunk));
    m2rnn_scan_backward(d_dqkv, d_df, d_dW, d_scratch, d_dy, d_qkv, d_f, d_W, d_checkpoints, (float)clip, L, s.B, s.T,
                        s.chunk, 0);
    const std::vector<double> added = minus(device_download(d_dqkv, BT * Cc), dqkv0);
    check_err(r, columns(added, BT, Cc, 0, q_end), columns(want.dqkv, BT, Cc, 0, q_end),
              "m2rnn_scan_backward dqkv q columns +=", shape);
    check_err(r, columns(added, BT, Cc, q_end, k_end), columns(want.dqkv, BT, Cc, q_end, k_end),
              "m2rnn_scan_backward dqkv k columns +=", shape);
    check_err(r, columns(added, BT, Cc, k_end, Cc), columns(want.dqkv, BT, Cc, k_end, Cc),
              "m2rnn_scan_backward dqkv v columns +=", shape);
    check_err(r, device_download(d_df, BT * L.N), want.df, "m2rnn_scan_backward df", shape);
    check_err(r, minus(device_download(d_dW, dW0.size()), dW0), want.dW, "m2rnn_scan_backward dW +=", shape);

    for (void* p : {(void*)d_qkv, (void*)d_f, (void*)d_W, (void*)d_y, (void*)d_checkpoints, (void*)d_state,
                    (void*)d_dy, (void*)d_dqkv, (void*)d_df, (void*)d_dW, (void*)d_scratch})
        cudaCheck(cudaFree(p));
}

// m2rnn_initial_state_fill on the device against model_math.h's m2rnn_initial_state on the host, every element of
// a layer's (B,N,K,V) H_{-1} at a layer index > 0: bitwise equal (both compute the draw in float); the output starts
// poisoned, so an unwritten element fails.
void test_initial_state_fill(TestReport& r, const ScanShape& s, int layer, Random& rng) {
    const M2RNNLayout& L = s.L;
    const size_t n = (size_t)s.B * L.N * L.K * L.V;
    const StateNoise noise{0.75f, rng.next_u64()};
    float* d_h0 = device_poisoned<float>(n);
    m2rnn_initial_state_fill(d_h0, noise, layer, L, s.B, 0);
    const std::vector<double> got = device_download(d_h0, n);
    cudaCheck(cudaFree(d_h0));
    size_t differ = 0;
    double lo = 1, hi = -1;
    for (size_t e = 0; e < n; e++) {
        const float want = m2rnn_initial_state(noise.key, (uint64_t)layer * n + e, noise.amplitude);
        differ += !(got[e] == (double)want);
        lo = fmin(lo, got[e]);
        hi = fmax(hi, got[e]);
    }
    r.check(differ == 0 && lo >= -noise.amplitude && hi < noise.amplitude,
            "m2rnn_initial_state_fill (B=%d N=%d K=%d V=%d, layer %d, amplitude %g): %zu of %zu elements differ from "
            "m2rnn_initial_state (bitwise); range [%.4f, %.4f]",
            s.B, L.N, L.K, L.V, layer, noise.amplitude, differ, n, lo, hi);
}

// Positions [t0, t0 + len) of every sequence of a (B, T, width) tensor, as a (B, len, width) tensor.
std::vector<double> time_slice(const std::vector<double>& x, int B, int T, int width, int t0, int len) {
    std::vector<double> out;
    for (int b = 0; b < B; b++)
        out.insert(out.end(), x.begin() + ((size_t)b * T + t0) * width, x.begin() + ((size_t)b * T + t0 + len) * width);
    return out;
}

// The forward in two calls, [0, T1) from a zero state and [T1, T) from the state the first call left (no
// checkpoints kept), against the reference's y of the whole sequence.
void test_scan_carried_state(TestReport& r, const ScanShape& s, Random& rng) {
    char shape[160];
    describe(shape, sizeof(shape), s, 0.0);
    const M2RNNLayout& L = s.L;
    const int T1 = s.T / 3, T2 = s.T - T1, Cc = L.Cc(), NV = L.NV();
    std::vector<double> qkv = random_vector(s.BT() * Cc, rng, 0.5), f(s.BT() * L.N);
    const std::vector<double> W = random_scan_w(L, rng);
    round_to<floatX>(qkv);
    for (double& x : f) x = rng.uniform(0.05, 0.95);
    round_to<float>(f);
    std::vector<double> y(s.BT() * NV), H((size_t)s.B * L.N * s.T * L.K * L.V), Z(H.size());
    const double* zero_h0 = nullptr;
    m2rnn_scan_forward(y.data(), H.data(), Z.data(), qkv.data(), f.data(), W.data(), zero_h0, L, s.B, s.T);

    float* d_W = device_upload<float>(W);
    float* d_state = device_upload<float>(std::vector<double>((size_t)s.B * L.N * L.K * L.V, 0.0));
    std::vector<double> got(s.BT() * NV);
    for (int part = 0; part < 2; part++) {
        const int t0 = part == 0 ? 0 : T1, len = part == 0 ? T1 : T2;
        floatX* d_qkv = device_upload<floatX>(time_slice(qkv, s.B, s.T, Cc, t0, len));
        float* d_f = device_upload<float>(time_slice(f, s.B, s.T, L.N, t0, len));
        floatX* d_y = device_poisoned<floatX>((size_t)s.B * len * NV);
        m2rnn_scan_forward(d_y, nullptr, d_state, d_qkv, d_f, d_W, L, s.B, len, s.chunk, 0);
        const std::vector<double> y_part = device_download(d_y, (size_t)s.B * len * NV);
        for (int b = 0; b < s.B; b++)
            std::copy(y_part.begin() + (size_t)b * len * NV, y_part.begin() + (size_t)(b + 1) * len * NV,
                      got.begin() + ((size_t)b * s.T + t0) * NV);
        for (void* p : {(void*)d_qkv, (void*)d_f, (void*)d_y}) cudaCheck(cudaFree(p));
    }
    char what[96];
    snprintf(what, sizeof(what), "m2rnn_scan_forward y, steps 0-%d then %d-%d from the carried state", T1 - 1, T1,
             s.T - 1);
    check_err(r, got, y, what, shape);
    cudaCheck(cudaFree(d_W));
    cudaCheck(cudaFree(d_state));
}

}  // namespace

void test_m2rnn_scan_kernels(TestReport& r) {
    const unsigned long long seed = (unsigned long long)test_seed();
    printf("m2rnn_scan kernels (%s), seed %llu\n", PRECISION_NAME, seed);
    Random rng(seed);
    for (const ScanShape& s : SHAPES)
        for (bool random_h0 : {false, true}) {
            test_scan(r, s, 0.0, random_h0, rng);
            test_scan(r, s, CLIP_BITES, random_h0, rng);
        }
    test_initial_state_fill(r, SHAPES[1], 2, rng);
    test_initial_state_fill(r, SHAPES[3], 1, rng);
    test_scan_carried_state(r, SHAPES[1], rng);  // the scalar kernels
    test_scan_carried_state(r, SHAPES[3], rng);  // bf16 builds: the tensor-core kernels
}
