// The token embedding: the reference steps encoder_forward and encoder_backward.
//
// Shapes: tokens (B, T+1) int, the input of position (b, t) is tokens[b·(T+1) + t] (the last column is only
// a target); wte (Vp, D) floatX, the GEMM copy of the embedding; x, dx (B, T, D) floatX; dwte (Vp, D) fp32.
//   forward:   x[b,t,:] = wte[tokens[b,t], :]          (no positional embedding: the model is NoPE)
//   backward:  dwte[tokens[b,t], :] += dx[b,t,:]        (a parameter gradient: it accumulates)
// Forward: each thread owns one element of x. Backward, deterministic: the host groups the positions by token
// (encoder_group_positions, from the tokens it uploads anyway), then one thread per (group, column) adds its
// positions' dx in increasing position order into that row of dwte: every element of dwte has one writer and
// a fixed order of additions.
//
// Groups, one int array of encoder_groups_ints(B, T) = 3·B·T + 1 on host and device, P = B·T:
//   [0, P)              positions b·T + t, grouped by token id, increasing within a group
//   [P, P + G)          token id of each of the G groups
//   [2P, 2P + G + 1)    group g holds positions [start[g], start[g+1])
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

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

// grid (n_groups, ceil(D / ENCODER_THREADS)): one thread per (group, column)
static __global__ void encoder_backward_kernel(float* dwte, const floatX* dx, const int* groups, int P, int D) {
    const int g = blockIdx.x, d = blockIdx.y * blockDim.x + threadIdx.x;
    if (d >= D) return;
    const int* positions = groups;
    const int token = groups[P + g], begin = groups[2 * P + g], end = groups[2 * P + g + 1];
    float acc = 0.0f;
    for (int i = begin; i < end; i++) acc += to_float(dx[(size_t)positions[i] * D + d]);
    dwte[(size_t)token * D + d] += acc;
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

// Ints of the position groups of B·T positions (layout above).
static inline size_t encoder_groups_ints(int B, int T) { return 3 * (size_t)B * T + 1; }

// Fills groups (encoder_groups_ints(B, T) ints, host memory) from tokens (B, T+1); returns the number of groups.
static inline int encoder_group_positions(int* groups, const int* tokens, int B, int T) {
    const int P = B * T;
    std::vector<uint64_t> keyed(P);  // token id above, position below: sorting groups by token, then position
    for (int pos = 0; pos < P; pos++) keyed[pos] = (uint64_t)(uint32_t)tokens[pos + pos / T] << 32 | (uint32_t)pos;
    std::sort(keyed.begin(), keyed.end());
    int n_groups = 0;
    for (int i = 0; i < P; i++) {
        const int token = (int)(keyed[i] >> 32);
        groups[i] = (int)(uint32_t)keyed[i];
        if (i == 0 || token != groups[P + n_groups - 1]) {
            groups[P + n_groups] = token;
            groups[2 * P + n_groups] = i;
            n_groups++;
        }
    }
    groups[2 * P + n_groups] = P;
    return n_groups;
}

// dwte (Vp, D) += dx (B, T, D) gathered by the device copy of encoder_group_positions' groups (n_groups of them).
static inline void encoder_backward(float* dwte, const floatX* dx, const int* groups, int n_groups, int B, int T,
                                    int D, cudaStream_t stream) {
    if (n_groups == 0) return;
    const dim3 grid(n_groups, ceil_div(D, ENCODER_THREADS));
    encoder_backward_kernel<<<grid, ENCODER_THREADS, 0, stream>>>(dwte, dx, groups, B * T, D);
    cudaCheckLaunch();
}
