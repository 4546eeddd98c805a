// The token embedding: the reference steps encoder_forward and encoder_backward.
//
// Shapes: tokens (B, T+1) int, the input of position (b, t) is tokens[b·(T+1) + t] (the last column is only
// a target); wte (Vp, D) floatX, the GEMM copy of the embedding; x, dx (B, T, D) floatX; dwte (Vp, D) fp32.
//   forward:   x[b,t,:] = wte[tokens[b,t], :]          (no positional embedding: the model is NoPE)
//   backward:  dwte[tokens[b,t], :] += dx[b,t,:]        (a parameter gradient: it accumulates)
// Each thread owns one element of x; in the backward, positions holding the same token add into the same
// row of dwte, so the additions are atomic (their order, hence the last bits of dwte, varies between runs).
#pragma once
#include "common.cuh"

static const int ENCODER_THREADS = 256;

// grid-stride over the B·T·D elements of x
static __global__ void encoder_forward_kernel(floatX* x, const floatX* wte, const int* tokens, int T, int D,
                                              size_t total) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int pos = (int)(i / D), d = (int)(i % D);
        const int token = tokens[pos + pos / T];  // pos = b·T + t  →  b·(T+1) + t
        x[i] = wte[(size_t)token * D + d];
    }
}

// grid-stride over the B·T·D elements of dx
static __global__ void encoder_backward_kernel(float* dwte, const floatX* dx, const int* tokens, int T, int D,
                                               size_t total) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int pos = (int)(i / D), d = (int)(i % D);
        const int token = tokens[pos + pos / T];
        atomicAdd(&dwte[(size_t)token * D + d], to_float(dx[i]));
    }
}

static inline int encoder_grid(size_t total) {
    return (int)std::min<size_t>(ceil_div(total, (size_t)ENCODER_THREADS), 65536);
}

// x (B, T, D) overwritten from the rows of wte (Vp, D) named by tokens (B, T+1).
static inline void encoder_forward(floatX* x, const floatX* wte, const int* tokens, int B, int T, int D,
                                   cudaStream_t stream) {
    const size_t total = (size_t)B * T * D;
    encoder_forward_kernel<<<encoder_grid(total), ENCODER_THREADS, 0, stream>>>(x, wte, tokens, T, D, total);
    cudaCheckLaunch();
}

// dwte (Vp, D) += dx (B, T, D) scattered to the rows named by tokens (B, T+1).
static inline void encoder_backward(float* dwte, const floatX* dx, const int* tokens, int B, int T, int D,
                                    cudaStream_t stream) {
    const size_t total = (size_t)B * T * D;
    encoder_backward_kernel<<<encoder_grid(total), ENCODER_THREADS, 0, stream>>>(dwte, dx, tokens, T, D, total);
    cudaCheckLaunch();
}
