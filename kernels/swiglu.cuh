// The MLP's SwiGLU gate between its two GEMMs: the reference steps swiglu_forward and swiglu_backward.
//
// Shapes: n rows (B·T positions); up, dup (n, 2F) floatX, each row [a (F) | b (F)]; h, dh (n, F) floatX.
//   forward:   h = silu(a) ⊙ b
//   backward:  dup = [dh ⊙ b ⊙ silu'(a) | dh ⊙ silu(a)]      (overwritten: an activation gradient)
//   with silu and silu' of model_math.h.
// Work split: a block owns SWIGLU_ROWS rows and its threads stride over their (row, pack) pairs, a pack being W
// consecutive columns j of h and the same columns j and F + j of up / dup. W = FLOATX_PACK (16-byte accesses)
// when F and the pointers allow it: the kernel only streams memory, and 2-byte accesses keep too few bytes in
// flight to reach the bandwidth (docs/perf.md). Row and pack come from one 32-bit division per pack.
#pragma once
#include "common.cuh"

static const int SWIGLU_THREADS = 256;
static const int SWIGLU_ROWS = 8;

// body(row, p, packs) for each of the block's (row, pack) pairs, packs = F/W a row: the walk the forward and the
// backward share, the block's threads striding over the pairs.
template <int W, typename Body> static __device__ __forceinline__ void swiglu_for_each_pack(int n, int F, Body body) {
    const int packs = F / W, row0 = blockIdx.x * SWIGLU_ROWS;
    const int count = min(SWIGLU_ROWS, n - row0) * packs;
    for (int i = threadIdx.x; i < count; i += blockDim.x) body(row0 + i / packs, i % packs, packs);
}

// grid ceil(n / SWIGLU_ROWS), block SWIGLU_THREADS
template <int W>
static __global__ void swiglu_forward_kernel(floatX* __restrict__ h, const floatX* __restrict__ up, int n, int F) {
    using Pack = FloatXPack<W>;
    swiglu_for_each_pack<W>(n, F, [&](int row, int p, int packs) {
        const Pack* up_row = reinterpret_cast<const Pack*>(up + (size_t)row * 2 * F);
        const Pack a = up_row[p], b = up_row[packs + p];
        Pack out;
#pragma unroll
        for (int u = 0; u < W; u++) out.v[u] = from_float<floatX>(silu(to_float(a.v[u])) * to_float(b.v[u]));
        reinterpret_cast<Pack*>(h + (size_t)row * F)[p] = out;
    });
}

// grid ceil(n / SWIGLU_ROWS), block SWIGLU_THREADS
template <int W>
static __global__ void swiglu_backward_kernel(floatX* __restrict__ dup, const floatX* __restrict__ dh,
                                              const floatX* __restrict__ up, int n, int F) {
    using Pack = FloatXPack<W>;
    swiglu_for_each_pack<W>(n, F, [&](int row, int p, int packs) {
        const Pack* up_row = reinterpret_cast<const Pack*>(up + (size_t)row * 2 * F);
        Pack* dup_row = reinterpret_cast<Pack*>(dup + (size_t)row * 2 * F);
        const Pack a = up_row[p], b = up_row[packs + p], g = reinterpret_cast<const Pack*>(dh + (size_t)row * F)[p];
        Pack da, db;
#pragma unroll
        for (int u = 0; u < W; u++) {
            const float av = to_float(a.v[u]), gv = to_float(g.v[u]);
            da.v[u] = from_float<floatX>(gv * to_float(b.v[u]) * silu_grad(av));
            db.v[u] = from_float<floatX>(gv * silu(av));
        }
        dup_row[p] = da;
        dup_row[packs + p] = db;
    });
}

// h (n, F) from up (n, 2F).
static inline void swiglu_forward(floatX* h, const floatX* up, int n, int F, cudaStream_t stream) {
    const int blocks = ceil_div(n, SWIGLU_ROWS);
    if (floatx_packable(F, {h, up}))
        swiglu_forward_kernel<FLOATX_PACK><<<blocks, SWIGLU_THREADS, 0, stream>>>(h, up, n, F);
    else
        swiglu_forward_kernel<1><<<blocks, SWIGLU_THREADS, 0, stream>>>(h, up, n, F);
    cudaCheckLaunch();
}

// dup (n, 2F) overwritten from dh (n, F) and up (n, 2F).
static inline void swiglu_backward(floatX* dup, const floatX* dh, const floatX* up, int n, int F,
                                   cudaStream_t stream) {
    const int blocks = ceil_div(n, SWIGLU_ROWS);
    if (floatx_packable(F, {dup, dh, up}))
        swiglu_backward_kernel<FLOATX_PACK><<<blocks, SWIGLU_THREADS, 0, stream>>>(dup, dh, up, n, F);
    else
        swiglu_backward_kernel<1><<<blocks, SWIGLU_THREADS, 0, stream>>>(dup, dh, up, n, F);
    cudaCheckLaunch();
}
