// RMSNorm over the last dimension: the reference steps rmsnorm_forward and rmsnorm_backward. (The residual add
// before a norm runs in the GEMM epilogue that writes the residual: kernels/matmul.cuh, matmul_forward_residual.)
//
// Shapes: n rows of C (B·T positions of D); x, out, dout, dx (n, C) floatX; w, dw (C) fp32; rstd (n) fp32, kept by
// the forward for the backward.
//   forward:   r = 1 / sqrt(mean_j x_j² + 1e-5);   out = x·r ⊙ w;   rstd = r     (model_math.h: rmsnorm_rstd)
//   backward:  dx = r (dout ⊙ w) − r³/C · x · Σ_j (dout ⊙ w ⊙ x)_j                (rmsnorm_dx)
//              overwritten, or added into dx when `accumulate` (dx is then the residual stream's gradient)
//              dw += Σ_rows dout ⊙ x·r                (a parameter gradient: it accumulates)
//
// Work split: a block takes RMSNORM_FORWARD_ROWS (RMSNORM_BACKWARD_ROWS) consecutive rows, its warp w the rows
// w, w + RMSNORM_WARPS, …; a warp's lanes stride the row's columns in packs of W (16 bytes where the rows allow),
// K = RMSNORM_LANE_FLOATS / W packs a lane, so a lane holds up to 32 values of each tensor in registers and a row
// of C ≤ 32·K·W = 1024 is read once: its sum is a warp reduction over the registers, which then give out (dx).
// The row is walked in chunks of 32·K packs, each chunk's weights held in registers across the warp's rows; a
// longer row (C > 1024, more than one chunk) first gets every row's sum (Σ x², or Σ dout·w·x) in a pass of its own,
// kept in shared memory, so it is read twice. The backward's dw: each lane sums its columns' dout·x·r over its
// warp's rows in registers (a chunk at a time), then the warps' sums are added in warp order in shared memory into
// the block's partial. Deterministic: the partials (ceil(n / RMSNORM_BACKWARD_ROWS), C) go to scratch
// (rmsnorm_backward_scratch_floats) and sum_partials adds them into dw in a fixed order; no atomics.
//
// Bytes at the 410M shape (n = 32,768, C = 1024, bf16) and the time they need at the H200's 4.2 TB/s copy rate:
//   forward:   x read, out written: 134 MB, 32 µs (was 51 µs: every row read twice)
//   backward:  dout, x read, dx read and written (accumulating), 2 MB of dw partials: 270 MB, 64 µs (was 134 µs:
//              395 MB from DRAM, dout and x read again for dw); dx overwritten (lnf): 203 MB, 48 µs
//   then sum_partials of 512 partials of 1024 columns: 2 MB, in L2 (a few µs, mostly its launch)
#pragma once
#include "common.cuh"

// warps per block: the backward holds ≈ 200 registers a thread (a lane's dout, x, dx, w and dw: 32 values each),
// so an SM fits 8 of its warps; in blocks of 4, one block's start and end overlap the other's rows
static const int RMSNORM_WARPS = 4;
static const int RMSNORM_FORWARD_ROWS = 16;     // rows per block in the forward
static const int RMSNORM_BACKWARD_ROWS = 64;    // rows per block in the backward: one dw partial each
static const int RMSNORM_LANE_FLOATS = 32;      // values of a tensor a lane holds: K·W

// A lane's K packs of a row chunk: packs p0 + 32k, k < K (zero past the row's end, at `packs`).
template <int W, int K>
static __device__ __forceinline__ void load_packs(FloatXPack<W> (&v)[K], const floatX* row, int p0, int packs) {
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int p = p0 + 32 * k;
        v[k] = p < packs ? reinterpret_cast<const FloatXPack<W>*>(row)[p] : FloatXPack<W>{};
    }
}

template <int W, int K>
static __device__ __forceinline__ void store_packs(floatX* row, const FloatXPack<W> (&v)[K], int p0, int packs) {
#pragma unroll
    for (int k = 0; k < K; k++)
        if (p0 + 32 * k < packs) reinterpret_cast<FloatXPack<W>*>(row)[p0 + 32 * k] = v[k];
}

// The weights of the same packs (zero past the row's end), in 16-byte loads when the packs are 16 bytes.
template <int W, int K>
static __device__ __forceinline__ void load_weights(float (&wv)[K][W], const float* w, int p0, int packs) {
    constexpr int G = W % 4 == 0 ? 4 : 1;
    using Group = ValuePack<float, G>;
#pragma unroll
    for (int k = 0; k < K; k++) {
        const int p = p0 + 32 * k;
#pragma unroll
        for (int i = 0; i < W / G; i++) {
            const Group g = p < packs ? reinterpret_cast<const Group*>(w + (size_t)p * W)[i] : Group{};
#pragma unroll
            for (int e = 0; e < G; e++) wv[k][i * G + e] = g.v[e];
        }
    }
}

// A lane's share of a chunk's Σ x² (forward) and Σ dout·w·x (backward).
template <int W, int K>
static __device__ __forceinline__ float lane_sum_squares(const FloatXPack<W> (&v)[K]) {
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < K; k++)
#pragma unroll
        for (int u = 0; u < W; u++) sum += to_float(v[k].v[u]) * to_float(v[k].v[u]);
    return sum;
}

template <int W, int K>
static __device__ __forceinline__ float lane_dot(const FloatXPack<W> (&d)[K], const FloatXPack<W> (&xv)[K],
                                                 const float (&wv)[K][W]) {
    float dot = 0.0f;
#pragma unroll
    for (int k = 0; k < K; k++)
#pragma unroll
        for (int u = 0; u < W; u++) dot += to_float(d[k].v[u]) * wv[k][u] * to_float(xv[k].v[u]);
    return dot;
}

// A block's ROWS rows from row_begin (its warp w takes rows w, w + RMSNORM_WARPS, …) and a lane's packs in them.
template <int W, int ROWS>
struct NormBlock {
    static constexpr int K = RMSNORM_LANE_FLOATS / W;  // packs a lane holds: a chunk of a row is 32·K packs
    int warp, lane, packs, row_begin, row_end;
    bool whole_row;  // the row is one chunk: read once, its sum taken from the registers
    __device__ NormBlock(int n, int C)
        : warp(threadIdx.x / 32), lane(threadIdx.x % 32), packs(C / W), row_begin(blockIdx.x * ROWS),
          row_end(min(row_begin + ROWS, n)), whole_row(packs <= 32 * K) {}
};

// Rows of more than one chunk, before the pass that uses the sums: each of the warp's rows' Σ over its chunks c of
// lane_part(row, c), summed over the lanes, into sums[row − row_begin] (a warp reads back only its own rows).
template <int W, int ROWS, typename LanePart>
static __device__ __forceinline__ void chunked_row_sums(float* sums, const NormBlock<W, ROWS>& b,
                                                        LanePart lane_part) {
    for (int row = b.row_begin + b.warp; row < b.row_end; row += RMSNORM_WARPS) {
        float sum = 0.0f;
        for (int c = 0; c < b.packs; c += 32 * b.K) sum += lane_part(row, c);
        sum = warp_sum(sum);
        if (b.lane == 0) sums[row - b.row_begin] = sum;
    }
    __syncwarp();
}

// grid ceil(n / RMSNORM_FORWARD_ROWS), block 32·RMSNORM_WARPS.
template <int W>
static __global__ void __launch_bounds__(32 * RMSNORM_WARPS)
    rmsnorm_forward_kernel(floatX* __restrict__ out, float* __restrict__ rstd, const floatX* __restrict__ x,
                           const float* __restrict__ w, int n, int C) {
    const NormBlock<W, RMSNORM_FORWARD_ROWS> b(n, C);
    constexpr int K = b.K;
    using Pack = FloatXPack<W>;
    __shared__ float row_sum_squares[RMSNORM_FORWARD_ROWS];
    if (!b.whole_row)
        chunked_row_sums(row_sum_squares, b, [&](int row, int c) {
            Pack v[K];
            load_packs(v, x + (size_t)row * C, c + b.lane, b.packs);
            return lane_sum_squares(v);
        });
    for (int c = 0; c < b.packs; c += 32 * K) {
        float wv[K][W];
        load_weights(wv, w, c + b.lane, b.packs);
        for (int row = b.row_begin + b.warp; row < b.row_end; row += RMSNORM_WARPS) {
            Pack v[K];
            load_packs(v, x + (size_t)row * C, c + b.lane, b.packs);
            const float sum_squares =
                b.whole_row ? warp_sum(lane_sum_squares(v)) : row_sum_squares[row - b.row_begin];
            const float r = rmsnorm_rstd(sum_squares, C);
            if (b.lane == 0 && c == 0) rstd[row] = r;
#pragma unroll
            for (int k = 0; k < K; k++)
#pragma unroll
                for (int u = 0; u < W; u++) v[k].v[u] = from_float<floatX>(to_float(v[k].v[u]) * r * wv[k][u]);
            store_packs(out + (size_t)row * C, v, c + b.lane, b.packs);
        }
    }
}

// grid ceil(n / RMSNORM_BACKWARD_ROWS), block 32·RMSNORM_WARPS; dw_partials row blockIdx.x (C floats) written.
template <int W>
static __global__ void __launch_bounds__(32 * RMSNORM_WARPS)
    rmsnorm_backward_kernel(floatX* __restrict__ dx, float* __restrict__ dw_partials, const floatX* __restrict__ dout,
                            const floatX* __restrict__ x, const float* __restrict__ w,
                            const float* __restrict__ rstd, int n, int C, bool accumulate) {
    const NormBlock<W, RMSNORM_BACKWARD_ROWS> b(n, C);
    constexpr int K = b.K;
    using Pack = FloatXPack<W>;
    __shared__ float row_dot[RMSNORM_BACKWARD_ROWS];
    __shared__ float warp_dw[RMSNORM_WARPS][32 * K * W];
    if (!b.whole_row)
        chunked_row_sums(row_dot, b, [&](int row, int c) {
            Pack d[K], xv[K];
            float wv[K][W];
            load_packs(d, dout + (size_t)row * C, c + b.lane, b.packs);
            load_packs(xv, x + (size_t)row * C, c + b.lane, b.packs);
            load_weights(wv, w, c + b.lane, b.packs);
            return lane_dot(d, xv, wv);
        });
    for (int c = 0; c < b.packs; c += 32 * K) {
        float wv[K][W], dw[K][W] = {};
        load_weights(wv, w, c + b.lane, b.packs);
        for (int row = b.row_begin + b.warp; row < b.row_end; row += RMSNORM_WARPS) {
            Pack d[K], xv[K], g[K] = {};
            load_packs(d, dout + (size_t)row * C, c + b.lane, b.packs);
            load_packs(xv, x + (size_t)row * C, c + b.lane, b.packs);
            if (accumulate) load_packs(g, dx + (size_t)row * C, c + b.lane, b.packs);
            const float r = rstd[row];
            const float dot = b.whole_row ? warp_sum(lane_dot(d, xv, wv)) : row_dot[row - b.row_begin];
            const float factor = rmsnorm_dx_factor(r, dot, C);
#pragma unroll
            for (int k = 0; k < K; k++)
#pragma unroll
                for (int u = 0; u < W; u++) {
                    const float dv = to_float(d[k].v[u]), xu = to_float(xv[k].v[u]);
                    const float gu = rmsnorm_dx(r, factor, dv, wv[k][u], xu);
                    g[k].v[u] = from_float<floatX>(accumulate ? gu + to_float(g[k].v[u]) : gu);
                    dw[k][u] += dv * xu * r;
                }
            store_packs(dx + (size_t)row * C, g, c + b.lane, b.packs);
        }
        // the block's partial of this chunk's columns: the warps' sums added in warp order
#pragma unroll
        for (int k = 0; k < K; k++)
#pragma unroll
            for (int u = 0; u < W; u++) warp_dw[b.warp][(b.lane + 32 * k) * W + u] = dw[k][u];
        __syncthreads();
        const int columns = min(32 * K, b.packs - c) * W;
        for (int i = threadIdx.x; i < columns; i += blockDim.x) {
            float sum = warp_dw[0][i];
            for (int other = 1; other < RMSNORM_WARPS; other++) sum += warp_dw[other][i];
            dw_partials[(size_t)blockIdx.x * C + (size_t)c * W + i] = sum;
        }
        __syncthreads();  // warp_dw is read before the next chunk overwrites it
    }
}

// out (n, C) floatX, rstd (n) fp32 from x (n, C) and w (C).
static inline void rmsnorm_forward(floatX* out, float* rstd, const floatX* x, const float* w, int n, int C,
                                   cudaStream_t stream) {
    const int blocks = ceil_div(n, RMSNORM_FORWARD_ROWS);
    if (floatx_packable(C, {out, x, w}))
        rmsnorm_forward_kernel<FLOATX_PACK><<<blocks, 32 * RMSNORM_WARPS, 0, stream>>>(out, rstd, x, w, n, C);
    else
        rmsnorm_forward_kernel<1><<<blocks, 32 * RMSNORM_WARPS, 0, stream>>>(out, rstd, x, w, n, C);
    cudaCheckLaunch();
}

// Floats of scratch rmsnorm_backward needs for n rows of C.
static inline size_t rmsnorm_backward_scratch_floats(int n, int C) {
    return (size_t)ceil_div(n, RMSNORM_BACKWARD_ROWS) * C;
}

// dx (n, C) overwritten, or += when accumulate; dw (C) +=; scratch rmsnorm_backward_scratch_floats(n, C) floats.
static inline void rmsnorm_backward(floatX* dx, float* dw, float* scratch, const floatX* dout, const floatX* x,
                                    const float* w, const float* rstd, int n, int C, bool accumulate,
                                    cudaStream_t stream) {
    const int blocks = ceil_div(n, RMSNORM_BACKWARD_ROWS);
    if (floatx_packable(C, {dx, dout, x, w}))
        rmsnorm_backward_kernel<FLOATX_PACK><<<blocks, 32 * RMSNORM_WARPS, 0, stream>>>(dx, scratch, dout, x, w,
                                                                                           rstd, n, C, accumulate);
    else
        rmsnorm_backward_kernel<1><<<blocks, 32 * RMSNORM_WARPS, 0, stream>>>(dx, scratch, dout, x, w, rstd, n, C,
                                                                              accumulate);
    cudaCheckLaunch();
    sum_partials(dw, scratch, blocks, C, stream);
}
