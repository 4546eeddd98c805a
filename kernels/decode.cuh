// One new position per sequence, for generation: the model's forward at step t given what the earlier steps
// left behind, instead of over a whole sequence. The M²RNN layers carry their state and the last three conv
// inputs, the attention layers a KV cache, so each new token costs O(1) in M layers and O(t) in A layers.
// Each kernel is the one-step form of a training forward kernel, computing the same values in the same order.
//
// Shapes: n_seq sequences generated side by side; Cc = Nq·K + Nk·K + N·V, Cp = Cc + N + N·V, NV = N·V.
//   m2rnn_input_step (m2rnn_input_forward at one step):
//     proj (n_seq,Cp) floatX, history (n_seq,Cc,3) fp32 = x_{t-3}, x_{t-2}, x_{t-1} of each conv channel (zero
//     before the first step), updated in place; qkv (n_seq,Cc) floatX = silu(Σ_j conv[c,j] · x_{t-3+j});
//     f (n_seq,N) fp32 = exp(−exp(A_log) · softplus(f_raw + dt_bias))
//   m2rnn_scan_step (m2rnn_scan_forward at one step), per (sequence b, head n):
//     state (n_seq,N,K,V) fp32, H_{t-1} in, H_t out:  H_t = f H_{t-1} + (1 − f) tanh(H_{t-1} W_n + k vᵀ)
//     y (n_seq,NV) floatX = H_tᵀ q  (the D skip is added by m2rnn_gate_forward, as in training)
//   attention_step (rope_forward + attention_forward at one step), per (sequence b, head h), hd = D/heads:
//     qkv (n_seq,3D) floatX of position t; q and k rotated by RoPE at angle t·ω when `rope`; k and v appended to
//     k_cache, v_cache (n_seq,max_len,D) floatX at row t;  y (n_seq,D) = Σ_{s≤t} softmax_s(q·k_s/sqrt(hd)) v_s
//     Rotated q and k are rounded to floatX, as the training forward stages them.
#pragma once
#include "attention.cuh"
#include "common.cuh"
#include "m2rnn_scan.cuh"

static const int DECODE_THREADS = 128;

// grid (ceil((Cc+N)/DECODE_THREADS), n_seq): one thread per conv channel or forget gate of a sequence
static __global__ void m2rnn_input_step_kernel(floatX* qkv, float* f, float* history, const floatX* proj,
                                               const float* conv, const float* A_log, const float* dt_bias, int Cc,
                                               int N, int Cp) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x, b = blockIdx.y;
    if (c >= Cc + N) return;
    const float x = to_float(proj[(size_t)b * Cp + c]);
    if (c < Cc) {
        float* h = history + ((size_t)b * Cc + c) * 3;
        const float* w = conv + c * 4;
        const float u = w[0] * h[0] + w[1] * h[1] + w[2] * h[2] + w[3] * x;
        qkv[(size_t)b * Cc + c] = from_float<floatX>(siluf(u));
        h[0] = h[1]; h[1] = h[2]; h[2] = x;
    } else {
        const int n = c - Cc;
        f[(size_t)b * N + n] = expf(-expf(A_log[n]) * softplusf(x + dt_bias[n]));
    }
}

// grid n_seq·N, block K·V rounded up to a warp; shared W (V·V), H (K·V), q, k (K), v (V), f (1) floats
static __global__ void __launch_bounds__(M2RNN_SCAN_MAX_STATE)
    m2rnn_scan_step_kernel(floatX* y, float* state, const floatX* qkv, const float* f, const float* W, int N, int K,
                           int V, int Nq, int Nk) {
    extern __shared__ float smem[];
    const int KV = K * V, e = threadIdx.x, i = e / V, j = e % V, Cc = (Nq + Nk) * K + N * V;
    float *Ws = smem, *H = Ws + V * V, *qs = H + KV, *ks = qs + K, *vs = ks + K, *fs = vs + V;
    const ScanHead hd = scan_head(blockIdx.x / N, blockIdx.x % N, 1, N, K, V, Nq, Nk);
    float* Hg = state + (size_t)blockIdx.x * KV;
    scan_stage_W(Ws, W + (size_t)hd.n * V * V, V);
    if (e < KV) H[e] = Hg[e];
    scan_stage_rows(qs, qkv, hd.row0, 1, K, Cc, hd.q_col);
    scan_stage_rows(ks, qkv, hd.row0, 1, K, Cc, hd.k_col);
    scan_stage_rows(vs, qkv, hd.row0, 1, V, Cc, hd.v_col);
    scan_stage_rows(fs, f, hd.row0, 1, 1, N, hd.n);
    __syncthreads();
    float h = 0.0f;
    if (e < KV) {
        float a = ks[i] * vs[j];
        for (int m = 0; m < V; m++) a += H[i * V + m] * Ws[m * V + j];
        h = fs[0] * H[e] + (1.0f - fs[0]) * tanhf(a);
    }
    __syncthreads();  // every thread has read H_{t-1}
    if (e < KV) { H[e] = h; Hg[e] = h; }
    __syncthreads();
    if (e < V) {
        float acc = 0.0f;
        for (int r = 0; r < K; r++) acc += H[r * V + e] * qs[r];
        y[hd.row0 * N * V + hd.n * V + e] = from_float<floatX>(acc);
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
        const float q1 = to_float(q[p]), q2 = to_float(q[p + half]), k1 = to_float(k[p]), k2 = to_float(k[p + half]);
        qs[p] = to_float(from_float<floatX>(q1 * c - q2 * s));
        qs[p + half] = to_float(from_float<floatX>(q2 * c + q1 * s));
        k_row[p] = from_float<floatX>(k1 * c - k2 * s);
        k_row[p + half] = from_float<floatX>(k2 * c + k1 * s);
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

static inline void m2rnn_input_step(floatX* qkv, float* f, float* history, const floatX* proj, const float* conv,
                                    const float* A_log, const float* dt_bias, int n_seq, int Cc, int N, int NV,
                                    cudaStream_t stream) {
    const dim3 grid(ceil_div(Cc + N, DECODE_THREADS), n_seq);
    m2rnn_input_step_kernel<<<grid, DECODE_THREADS, 0, stream>>>(qkv, f, history, proj, conv, A_log, dt_bias, Cc, N,
                                                                 Cc + N + NV);
    cudaCheckLaunch();
}

static inline size_t m2rnn_scan_step_shared_bytes(int K, int V) {
    return ((size_t)V * V + (size_t)K * V + 2 * K + V + 1) * sizeof(float);
}

static inline void m2rnn_scan_step(floatX* y, float* state, const floatX* qkv, const float* f, const float* W,
                                   int n_seq, int N, int K, int V, int Nq, int Nk, cudaStream_t stream) {
    const size_t smem = m2rnn_scan_step_shared_bytes(K, V);
    const int block = m2rnn_scan_prepare(m2rnn_scan_step_kernel, smem, N, K, V, Nq, Nk, 1, "m2rnn_scan_step");
    m2rnn_scan_step_kernel<<<n_seq * N, block, smem, stream>>>(y, state, qkv, f, W, N, K, V, Nq, Nk);
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
