// The MLP's SwiGLU gate between its two GEMMs: the reference steps swiglu_forward and swiglu_backward.
//
// Shapes: n rows (B·T positions); up, dup (n, 2F) floatX, each row [a (F) | b (F)]; h, dh (n, F) floatX.
//   forward:   h = silu(a) ⊙ b
//   backward:  dup = [dh ⊙ b ⊙ silu'(a) | dh ⊙ silu(a)]      (overwritten: an activation gradient)
//   with silu and silu' of model_math.h.
// Each thread owns one element of h (one column j of one row) and reads or writes columns j and F + j of
// that row of up / dup.
#pragma once
#include "common.cuh"

static const int SWIGLU_THREADS = 256;

// grid-stride over the n·F elements of h
static __global__ void swiglu_forward_kernel(floatX* h, const floatX* up, int F, size_t total) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const floatX* up_row = up + (i / F) * 2 * F;
        const int j = (int)(i % F);
        h[i] = from_float<floatX>(silu(to_float(up_row[j])) * to_float(up_row[F + j]));
    }
}

// grid-stride over the n·F elements of dh
static __global__ void swiglu_backward_kernel(floatX* dup, const floatX* dh, const floatX* up, int F, size_t total) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t row = (i / F) * 2 * F;
        const int j = (int)(i % F);
        const float a = to_float(up[row + j]), b = to_float(up[row + F + j]), g = to_float(dh[i]);
        dup[row + j] = from_float<floatX>(g * b * silu_grad(a));
        dup[row + F + j] = from_float<floatX>(g * silu(a));
    }
}

static inline int swiglu_grid(size_t total) {
    return (int)std::min<size_t>(ceil_div(total, (size_t)SWIGLU_THREADS), 65536);
}

// h (n, F) from up (n, 2F).
static inline void swiglu_forward(floatX* h, const floatX* up, int n, int F, cudaStream_t stream) {
    const size_t total = (size_t)n * F;
    swiglu_forward_kernel<<<swiglu_grid(total), SWIGLU_THREADS, 0, stream>>>(h, up, F, total);
    cudaCheckLaunch();
}

// dup (n, 2F) overwritten from dh (n, F) and up (n, 2F).
static inline void swiglu_backward(floatX* dup, const floatX* dh, const floatX* up, int n, int F,
                                   cudaStream_t stream) {
    const size_t total = (size_t)n * F;
    swiglu_backward_kernel<<<swiglu_grid(total), SWIGLU_THREADS, 0, stream>>>(dup, dh, up, F, total);
    cudaCheckLaunch();
}
