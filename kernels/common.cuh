// What every kernel header shares: the activation type, error checks, and small device helpers. The model's
// element-wise math (silu, the M²RNN step, RoPE, ...) is model/model_math.h, shared with the CPU reference.
//
// Precision. Activations and GEMM inputs are floatX: bf16 by default, fp32 when built with
// PRECISION=FP32 (-DENABLE_FP32, with TF32 off in the GEMMs) for tight checks against the reference.
// Parameters are read from the fp32 master copy, except the GEMM weights, which come from the floatX
// copy cuBLASLt consumes. Parameter gradients, optimizer moments and the M²RNN state are always fp32.
//
// Conventions (as llm.c): parameter gradients accumulate (+=) so gradient accumulation is free;
// activation gradients overwrite, except on the residual stream, where each block adds its branch.
//
// Determinism: a training step gives bitwise the same result every run. No kernel adds with atomics; a sum
// spread over blocks is done in two stages: each block writes its partial sums to scratch in a fixed layout
// (the launcher's caller provides it, sized by the kernel's ..._scratch_floats), then sum_partials adds them
// in a fixed order.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "../model/model_math.h"

#if defined(ENABLE_FP32)
typedef float floatX;
#define PRECISION_NAME "fp32"
#else
typedef __nv_bfloat16 floatX;
#define PRECISION_NAME "bf16"
#endif

static inline void cuda_check(cudaError_t status, const char* file, int line) {
    if (status != cudaSuccess) {
        fprintf(stderr, "CUDA error at %s:%d: %s\n", file, line, cudaGetErrorString(status));
        exit(EXIT_FAILURE);
    }
}
#define cudaCheck(call) cuda_check((call), __FILE__, __LINE__)
// After a kernel launch: a bad launch configuration shows here, not at the next synchronisation.
#define cudaCheckLaunch() cuda_check(cudaGetLastError(), __FILE__, __LINE__)

static inline int ceil_div(int a, int b) { return (a + b - 1) / b; }
static inline size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16(x); }

// Sum over a warp; every lane gets the total.
__device__ __forceinline__ float warp_sum(float x) {
    for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffff, x, offset);
    return x;
}
__device__ __forceinline__ float warp_max(float x) {
    for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, offset));
    return x;
}
// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
// `scratch` holds 32 floats of shared memory; the call ends with the block synchronised.
__device__ __forceinline__ float block_sum(float x, float* scratch) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    x = warp_sum(x);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = x;
    __syncthreads();
    x = lane < warps ? scratch[lane] : 0.0f;
    return warp_sum(x);
}
// Maximum over the block, as block_sum.
__device__ __forceinline__ float block_max(float x, float* scratch) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    x = warp_max(x);
    __syncthreads();
    if (lane == 0) scratch[warp] = x;
    __syncthreads();
    x = lane < warps ? scratch[lane] : -INFINITY;
    return warp_max(x);
}

// N consecutive values moved as one access (FloatXPack: floatX; 16 bytes at N = FLOATX_PACK), for the kernels that
// stream rows (a warp of 2-byte accesses keeps too few bytes in flight to reach the memory's bandwidth).
static const int FLOATX_PACK = 16 / (int)sizeof(floatX);
template <typename T, int N> struct alignas(N * sizeof(T)) ValuePack { T v[N]; };
template <int N> using FloatXPack = ValuePack<floatX, N>;

// Whether every address is 16-byte aligned, so that 16-byte packs can be read and written there.
static inline bool aligned16(std::initializer_list<const void*> addresses) {
    bool aligned = true;
    for (const void* p : addresses) aligned = aligned && reinterpret_cast<uintptr_t>(p) % 16 == 0;
    return aligned;
}

// Whether rows of C floatX at these addresses can be moved in FLOATX_PACK packs: C a multiple of the pack and every
// address 16-byte aligned (then every row is too). The launchers choose the packed kernel or the 1-wide one by it.
static inline bool floatx_packable(int C, std::initializer_list<const void*> rows) {
    return C % FLOATX_PACK == 0 && aligned16(rows);
}

// Second stage of a deterministic reduction: out[j] += Σ_p partials[p·n + j] for j < n, p < n_parts.
// Block (SUM_PARTIALS_COLUMNS, SUM_PARTIALS_SLICES): thread (x, y) sums the parts p ≡ y (mod slices) of column
// x in increasing p; the slices' totals are then added in increasing y. The order depends only on n_parts.
static const int SUM_PARTIALS_COLUMNS = 32;
static const int SUM_PARTIALS_SLICES = 8;

static __global__ void sum_partials_kernel(float* out, const float* partials, int n_parts, size_t n) {
    __shared__ float slice_sum[SUM_PARTIALS_SLICES][SUM_PARTIALS_COLUMNS];
    const size_t j = (size_t)blockIdx.x * SUM_PARTIALS_COLUMNS + threadIdx.x;
    float acc = 0.0f;
    if (j < n)
        for (int p = threadIdx.y; p < n_parts; p += SUM_PARTIALS_SLICES) acc += partials[(size_t)p * n + j];
    slice_sum[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && j < n) {
        float total = slice_sum[0][threadIdx.x];
        for (int y = 1; y < SUM_PARTIALS_SLICES; y++) total += slice_sum[y][threadIdx.x];
        out[j] += total;
    }
}

// out (n) += the column sums of partials (n_parts, n), in a fixed order.
static inline void sum_partials(float* out, const float* partials, int n_parts, size_t n, cudaStream_t stream) {
    if (n == 0) return;
    const dim3 block(SUM_PARTIALS_COLUMNS, SUM_PARTIALS_SLICES);
    sum_partials_kernel<<<(unsigned)ceil_div(n, (size_t)SUM_PARTIALS_COLUMNS), block, 0, stream>>>(out, partials,
                                                                                                  n_parts, n);
    cudaCheckLaunch();
}

// n floatX values of device memory as fp32 on the host, once the stream's earlier work is done; `staging` holds
// the floatX copy on the way (grown when short).
static inline void download_as_float(float* host, std::vector<floatX>& staging, const floatX* device, size_t n,
                                     cudaStream_t stream) {
    if (staging.size() < n) staging.resize(n);
    cudaCheck(cudaMemcpyAsync(staging.data(), device, n * sizeof(floatX), cudaMemcpyDeviceToHost, stream));
    cudaCheck(cudaStreamSynchronize(stream));
    for (size_t i = 0; i < n; i++) host[i] = (float)staging[i];
}

// dst[i] = (floatX) src[i]: the GEMM copy of the fp32 master parameters.
static __global__ void copy_to_floatX_kernel(floatX* dst, const float* src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_float<floatX>(src[i]);
}
static inline void copy_to_floatX(floatX* dst, const float* src, size_t n, cudaStream_t stream) {
    const int block = 256;
    const int grid = (int)std::min<size_t>(ceil_div(n, (size_t)block), 65536);
    copy_to_floatX_kernel<<<grid, block, 0, stream>>>(dst, src, n);
    cudaCheckLaunch();
}
