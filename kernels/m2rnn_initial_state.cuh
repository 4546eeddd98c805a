// The random initial state of an M²RNN layer's scan in a training forward under --state-noise A (docs/model.md
// §2.2): the reference step m2rnn_initial_state_fill. Layer `layer`'s H_{-1}, every element drawn uniformly from
// [-A, A) by model_math.h's m2rnn_initial_state from the forward's key and the element's index:
//   H0[b,n,i,j] = m2rnn_initial_state(key, layer·B·N·K·V + ((b·N + n)·K + i)·V + j, A)
// The draw is counter-based, so every element is computed on its own, and in float: the reference (double or
// float) and this kernel write the same values, bit for bit.
//
// Shapes: H0 (B,N,K,V) fp32 written, row-major: each (b, n) chain's (K, V) state as m2rnn_scan_forward's `state`
// takes it, which the scan then starts from (and overwrites with its last state).
#pragma once
#include "common.cuh"

static const int M2RNN_INITIAL_STATE_THREADS = 256;

// grid ceil(n / M2RNN_INITIAL_STATE_THREADS), one thread per element; n = B·N·K·V
static __global__ void m2rnn_initial_state_fill_kernel(float* H0, StateNoise noise, uint64_t first, size_t n) {
    const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e < n) H0[e] = m2rnn_initial_state(noise.key, first + e, noise.amplitude);
}

static inline void m2rnn_initial_state_fill(float* H0, StateNoise noise, int layer, const M2RNNLayout& L, int B,
                                            cudaStream_t stream) {
    const size_t n = (size_t)B * L.N * L.K * L.V;
    m2rnn_initial_state_fill_kernel<<<(unsigned)ceil_div(n, (size_t)M2RNN_INITIAL_STATE_THREADS),
                                      M2RNN_INITIAL_STATE_THREADS, 0, stream>>>(H0, noise, (uint64_t)layer * n, n);
    cudaCheckLaunch();
}
