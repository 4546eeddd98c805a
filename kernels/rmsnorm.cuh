// RMSNorm over the last dimension: the reference steps rmsnorm_forward and rmsnorm_backward. (The residual add
// before a norm runs in the GEMM epilogue that writes the residual: kernels/matmul.cuh, matmul_forward_residual.)
//
// Shapes: n rows of C (B·T positions of D, or of N·V for the M²RNN gnorm); x, out, dout, dx (n, C) floatX;
// w, dw (C) fp32; rstd (n) fp32, kept by the forward for the backward.
//   forward:   r = 1 / sqrt(mean_j x_j² + 1e-5);   out = x·r ⊙ w;   rstd = r     (model_math.h: rmsnorm_rstd)
//   backward:  dx = r (dout ⊙ w) − r³/C · x · Σ_j (dout ⊙ w ⊙ x)_j                (rmsnorm_dx)
//              overwritten, or added into dx when `accumulate` (dx is then the residual stream's gradient)
//              dw += Σ_rows dout ⊙ x·r                (a parameter gradient: it accumulates)
//
// Work split: one warp per row, its lanes striding the columns in 16-byte packs where the rows allow, so the row's
// sum is a warp reduction and each pass re-reads the row from cache rather than holding a variable number of
// values per thread. The backward gives each block RMSNORM_BACKWARD_ROWS rows: a warp per row for dx, then a
// thread per column (per pack of columns) sums the block's rows in order (re-read from cache) into its partial of dw.
// Deterministic: the partials (ceil(n / RMSNORM_BACKWARD_ROWS), C) go to scratch
// (rmsnorm_backward_scratch_floats) and sum_partials adds them into dw in a fixed order; no atomics.
#pragma once
#include "common.cuh"

static const int RMSNORM_WARPS = 8;            // rows in flight per block
static const int RMSNORM_BACKWARD_ROWS = 32;   // rows per block in the backward

// grid ceil(n / RMSNORM_WARPS), block 32·RMSNORM_WARPS: one warp per row, each lane moving W elements an access
// (W = FLOATX_PACK when the rows allow it: with 2-byte accesses too few bytes are in flight, docs/perf.md)
template <int W>
static __global__ void rmsnorm_forward_kernel(floatX* __restrict__ out, float* __restrict__ rstd,
                                              const floatX* __restrict__ x, const float* __restrict__ w, int n, int C) {
    using Pack = FloatXPack<W>;
    const int row = blockIdx.x * RMSNORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32, packs = C / W;
    if (row >= n) return;  // the whole warp leaves together
    const Pack* x_row = reinterpret_cast<const Pack*>(x + (size_t)row * C);
    Pack* out_row = reinterpret_cast<Pack*>(out + (size_t)row * C);
    float sum_squares = 0.0f;
    for (int p = lane; p < packs; p += 32) {
        const Pack v = x_row[p];
#pragma unroll
        for (int u = 0; u < W; u++) sum_squares += to_float(v.v[u]) * to_float(v.v[u]);
    }
    const float r = rmsnorm_rstd(warp_sum(sum_squares), C);
    for (int p = lane; p < packs; p += 32) {
        const Pack v = x_row[p];
        Pack o;
#pragma unroll
        for (int u = 0; u < W; u++) o.v[u] = from_float<floatX>(to_float(v.v[u]) * r * w[p * W + u]);
        out_row[p] = o;
    }
    if (lane == 0) rstd[row] = r;
}

// grid ceil(n / RMSNORM_BACKWARD_ROWS), block 32·RMSNORM_WARPS; dw_partials row blockIdx.x (C floats) written.
// Each lane moves W elements an access: with 2-byte accesses (W = 1) too few bytes are in flight to reach DRAM's
// bandwidth (docs/perf.md: 1.3 ms where the bytes need 0.09), so rows of a multiple of FLOATX_PACK take W = that.
template <int W>
static __global__ void rmsnorm_backward_kernel(floatX* __restrict__ dx, float* __restrict__ dw_partials,
                                               const floatX* __restrict__ dout, const floatX* __restrict__ x,
                                               const float* __restrict__ w, const float* __restrict__ rstd, int n,
                                               int C, bool accumulate) {
    using Pack = FloatXPack<W>;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, packs = C / W;
    const int row_begin = blockIdx.x * RMSNORM_BACKWARD_ROWS, row_end = min(row_begin + RMSNORM_BACKWARD_ROWS, n);
    for (int row = row_begin + warp; row < row_end; row += RMSNORM_WARPS) {
        const Pack* d_row = reinterpret_cast<const Pack*>(dout + (size_t)row * C);
        const Pack* x_row = reinterpret_cast<const Pack*>(x + (size_t)row * C);
        Pack* dx_row = reinterpret_cast<Pack*>(dx + (size_t)row * C);
        float dot = 0.0f;
        for (int p = lane; p < packs; p += 32) {
            const Pack d = d_row[p], xv = x_row[p];
#pragma unroll
            for (int u = 0; u < W; u++) dot += to_float(d.v[u]) * w[p * W + u] * to_float(xv.v[u]);
        }
        const float r = rstd[row];
        const float factor = rmsnorm_dx_factor(r, warp_sum(dot), C);
        for (int p = lane; p < packs; p += 32) {
            const Pack d = d_row[p], xv = x_row[p];
            Pack out;
            if (accumulate) out = dx_row[p];
#pragma unroll
            for (int u = 0; u < W; u++) {
                const float g = rmsnorm_dx(r, factor, to_float(d.v[u]), w[p * W + u], to_float(xv.v[u]));
                out.v[u] = from_float<floatX>(accumulate ? g + to_float(out.v[u]) : g);
            }
            dx_row[p] = out;
        }
    }
    for (int p = threadIdx.x; p < packs; p += blockDim.x) {
        float acc[W] = {};
        for (int row = row_begin; row < row_end; row++) {
            const Pack d = reinterpret_cast<const Pack*>(dout + (size_t)row * C)[p];
            const Pack xv = reinterpret_cast<const Pack*>(x + (size_t)row * C)[p];
#pragma unroll
            for (int u = 0; u < W; u++) acc[u] += to_float(d.v[u]) * to_float(xv.v[u]) * rstd[row];
        }
#pragma unroll
        for (int u = 0; u < W; u++) dw_partials[(size_t)blockIdx.x * C + p * W + u] = acc[u];
    }
}

// out (n, C) floatX, rstd (n) fp32 from x (n, C) and w (C).
static inline void rmsnorm_forward(floatX* out, float* rstd, const floatX* x, const float* w, int n, int C,
                                   cudaStream_t stream) {
    const int blocks = ceil_div(n, RMSNORM_WARPS);
    if (floatx_packable(C, {out, x}))
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
    if (floatx_packable(C, {dx, dout, x}))
        rmsnorm_backward_kernel<FLOATX_PACK><<<blocks, 32 * RMSNORM_WARPS, 0, stream>>>(dx, scratch, dout, x, w,
                                                                                           rstd, n, C, accumulate);
    else
        rmsnorm_backward_kernel<1><<<blocks, 32 * RMSNORM_WARPS, 0, stream>>>(dx, scratch, dout, x, w, rstd, n, C,
                                                                              accumulate);
    cudaCheckLaunch();
    sum_partials(dw, scratch, blocks, C, stream);
}
