// One new position per sequence, for generation: what the model's forward needs at step t, given what the earlier
// steps left behind, where a training kernel cannot simply run at T = 1. The M²RNN layers carry their state (the
// scan itself runs at T = 1 from it: m2rnn_scan_forward's `state`) and the last three conv inputs, the attention
// layers a KV cache, so each new token costs O(1) in M layers and O(t) in A layers. The element-wise math is the
// training kernels' (model/model_math.h: causal_conv, forget_gate, silu, rope_rotate).
//
// Shapes: n_seq sequences generated side by side; Cc, Cp, N of the M2RNNLayout L.
//   m2rnn_input_step (m2rnn_input_forward at one step):
//     proj (n_seq,Cp) floatX, history (n_seq,Cc,3) fp32 = x_{t-3}, x_{t-2}, x_{t-1} of each conv channel (zero
//     before the first step), updated in place; qkv (n_seq,Cc) floatX = silu(Σ_j conv[c,j] · x_{t-3+j});
//     f (n_seq,N) fp32 = exp(−exp(A_log) · softplus(f_raw + dt_bias))
//   attention_step (attention_forward at one step), per (sequence b, head h), hd = D/heads:
//     qkv (n_seq,3D) floatX of position t; q and k rotated by RoPE at angle t·ω when `rope`; k and v appended to
//     k_cache, v_cache (n_seq,max_len,D) floatX at row t;  y (n_seq,D) = Σ_{s≤t} softmax_s(q·k_s/sqrt(hd)) v_s
//     Rotated q and k are rounded to floatX, as the training forward stages them.
#pragma once
#include "attention.cuh"
#include "common.cuh"

static const int DECODE_THREADS = 128;

// grid (ceil((Cc+N)/DECODE_THREADS), n_seq): one thread per conv channel or forget gate of a sequence
static __global__ void m2rnn_input_step_kernel(floatX* qkv, float* f, float* history, const floatX* proj,
                                               const float* conv, const float* A_log, const float* dt_bias,
                                               M2RNNLayout L) {
    const int Cc = L.Cc(), c = blockIdx.x * blockDim.x + threadIdx.x, b = blockIdx.y;
    if (c >= Cc + L.N) return;
    const float x = to_float(proj[(size_t)b * L.Cp_stride() + c]);
    if (c < Cc) {
        float* h = history + ((size_t)b * Cc + c) * (CONV_WIDTH - 1);
        float window[CONV_WIDTH];
#pragma unroll
        for (int j = 0; j + 1 < CONV_WIDTH; j++) window[j] = h[j];
        window[CONV_WIDTH - 1] = x;
        qkv[(size_t)b * Cc + c] = from_float<floatX>(silu(causal_conv(conv + c * CONV_WIDTH, window)));
#pragma unroll
        for (int j = 0; j + 1 < CONV_WIDTH; j++) h[j] = window[j + 1];
    } else {
        const int n = c - Cc;
        f[(size_t)b * L.N + n] = forget_gate(expf(A_log[n]), x + dt_bias[n]);
    }
}

// grid n_seq·heads, block DECODE_THREADS; shared q (hd) and the scores of positions 0..t (t + 1) floats
static __global__ void attention_step_kernel(floatX* y, floatX* k_cache, floatX* v_cache, const floatX* qkv, int t,
                                             int max_len, int D, int heads, int rope) {
    extern __shared__ float smem[];
    __shared__ float scratch[32];
    const int b = blockIdx.x / heads, h = blockIdx.x % heads, hd = D / heads, half = hd / 2;
    float *qs = smem, *score = smem + hd;
    const floatX* q = qkv + (size_t)b * 3 * D + h * hd;
    const floatX *k = q + D, *v = q + 2 * D;
    floatX* k_row = k_cache + ((size_t)b * max_len + t) * D + h * hd;
    floatX* v_row = v_cache + ((size_t)b * max_len + t) * D + h * hd;
    for (int p = threadIdx.x; p < half; p += blockDim.x) {
        float s = 0.0f, c = 1.0f;
        if (rope) rope_sincos(t, p, hd, &s, &c);
        float q1 = to_float(q[p]), q2 = to_float(q[p + half]), k1 = to_float(k[p]), k2 = to_float(k[p + half]);
        rope_rotate(q1, q2, c, s);
        rope_rotate(k1, k2, c, s);
        qs[p] = to_float(from_float<floatX>(q1));
        qs[p + half] = to_float(from_float<floatX>(q2));
        k_row[p] = from_float<floatX>(k1);
        k_row[p + half] = from_float<floatX>(k2);
    }
    for (int d = threadIdx.x; d < hd; d += blockDim.x) v_row[d] = v[d];
    __syncthreads();  // q staged, and this step's k and v are in the cache for every thread
    const float scale = 1.0f / sqrtf((float)hd);
    const floatX* k_seq = k_cache + (size_t)b * max_len * D + h * hd;
    const floatX* v_seq = v_cache + (size_t)b * max_len * D + h * hd;
    float local_max = -INFINITY;
    for (int s = threadIdx.x; s <= t; s += blockDim.x) {
        float dot = 0.0f;
        for (int d = 0; d < hd; d++) dot += qs[d] * to_float(k_seq[(size_t)s * D + d]);
        score[s] = dot * scale;
        local_max = fmaxf(local_max, score[s]);
    }
    const float max_score = block_max(local_max, scratch);
    float local_sum = 0.0f;
    for (int s = threadIdx.x; s <= t; s += blockDim.x) {
        score[s] = expf(score[s] - max_score);
        local_sum += score[s];
    }
    const float inv_sum = 1.0f / block_sum(local_sum, scratch);  // also the barrier before reading every score
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int s = 0; s <= t; s++) acc += score[s] * to_float(v_seq[(size_t)s * D + d]);
        y[(size_t)b * D + h * hd + d] = from_float<floatX>(acc * inv_sum);
    }
}

// ---------------------------------------------------------------- launchers

// qkv, f and the conv history of one position, history (n_seq, Cc, CONV_WIDTH−1) fp32.
static inline void m2rnn_input_step(floatX* qkv, float* f, float* history, const floatX* proj, const float* conv,
                                    const float* A_log, const float* dt_bias, const M2RNNLayout& L, int n_seq,
                                    cudaStream_t stream) {
    const dim3 grid(ceil_div(L.Cc() + L.N, DECODE_THREADS), n_seq);
    m2rnn_input_step_kernel<<<grid, DECODE_THREADS, 0, stream>>>(qkv, f, history, proj, conv, A_log, dt_bias, L);
    cudaCheckLaunch();
}

// Positions a KV cache may hold: the scores of one row live in the kernel's shared memory.
static inline int attention_step_max_len(int D, int heads) {
    int device = 0, smem_max = 0;
    cudaCheck(cudaGetDevice(&device));
    cudaCheck(cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    return smem_max / (int)sizeof(float) - 64 - D / heads;  // 64: room for the kernel's static scratch
}

static inline void attention_step(floatX* y, floatX* k_cache, floatX* v_cache, const floatX* qkv, int t, int max_len,
                                  int n_seq, int D, int heads, int rope, cudaStream_t stream) {
    const size_t smem = (size_t)(D / heads + t + 1) * sizeof(float);
    if (smem > 48 * 1024)
        cudaCheck(cudaFuncSetAttribute(attention_step_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attention_step_kernel<<<n_seq * heads, DECODE_THREADS, smem, stream>>>(y, k_cache, v_cache, qkv, t, max_len, D,
                                                                          heads, rope);
    cudaCheckLaunch();
}
