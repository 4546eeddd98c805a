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
// Block (columns, slices) of SUM_PARTIALS_THREADS: thread (x, y) sums the parts p ≡ y (mod slices) of its column in
// increasing p, then the slices' sums are added pairwise in shared memory (slice y takes slice y + s, for s =
// slices/2, …, 1). slices is the fewest (a power of two) that leave a thread at most SUM_PARTIALS_BATCH parts, but
// at most SUM_PARTIALS_THREADS / SUM_PARTIALS_MIN_COLUMNS (8 columns: a 32-byte sector of a part), so the order
// depends only on n_parts.
// Speed: the parts were just written and sit in L2. A thread issues a batch of loads before adding any, so it waits
// out L2's latency (≈ 600 ns) once a batch rather than once a part (one thread down 128 parts of a column took
// ≈ 15 µs), and narrow blocks spread a few columns over many SMs: at the 410M shapes, 512–1024 parts of 1024–5888
// columns are 128–736 blocks of one or two batches a thread, 8–32 parts of 21,504 are 84–168 blocks of one.
static const int SUM_PARTIALS_THREADS = 256;
static const int SUM_PARTIALS_BATCH = 16;  // loads a thread has in flight
static const int SUM_PARTIALS_MIN_COLUMNS = 8;

static __global__ void __launch_bounds__(SUM_PARTIALS_THREADS)
    sum_partials_kernel(float* out, const float* partials, int n_parts, size_t n) {
    __shared__ float slice_sum[SUM_PARTIALS_THREADS];
    const int columns = blockDim.x, slices = blockDim.y, x = threadIdx.x, y = threadIdx.y;
    const size_t j = (size_t)blockIdx.x * columns + x;
    float acc = 0.0f;
    if (j < n)
        for (int p0 = y; p0 < n_parts; p0 += SUM_PARTIALS_BATCH * slices) {
            float part[SUM_PARTIALS_BATCH];
#pragma unroll
            for (int b = 0; b < SUM_PARTIALS_BATCH; b++) {
                const int p = p0 + b * slices;
                if (p < n_parts) part[b] = partials[(size_t)p * n + j];
            }
#pragma unroll
            for (int b = 0; b < SUM_PARTIALS_BATCH; b++)
                if (p0 + b * slices < n_parts) acc += part[b];
        }
    slice_sum[y * columns + x] = acc;
    for (int s = slices / 2; s > 0; s /= 2) {
        __syncthreads();  // slice y + s wrote its sum (this round reads slices [s, 2s), writes [0, s))
        if (y < s) {
            acc += slice_sum[(y + s) * columns + x];
            slice_sum[y * columns + x] = acc;
        }
    }
    if (y == 0 && j < n) out[j] += acc;
}

// out (n) += the column sums of partials (n_parts, n), in a fixed order.
static inline void sum_partials(float* out, const float* partials, int n_parts, size_t n, cudaStream_t stream) {
    if (n == 0) return;
    int slices = 1;
    while (slices < SUM_PARTIALS_THREADS / SUM_PARTIALS_MIN_COLUMNS && slices * SUM_PARTIALS_BATCH < n_parts)
        slices *= 2;
    const dim3 block(SUM_PARTIALS_THREADS / slices, slices);
    sum_partials_kernel<<<(unsigned)ceil_div(n, (size_t)block.x), block, 0, stream>>>(out, partials, n_parts, n);
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
