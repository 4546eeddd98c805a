// The M²RNN layer's input stage: the short causal conv + silu on [q | k | v] and the forget gate, in one
// kernel each way: the reference steps m2rnn_input_forward and m2rnn_input_backward, with the element-wise math
// of model/model_math.h (causal_conv, forget_gate and their gradients).
//
// Shapes (B batch, T time; Cc, Cp, N of the M2RNNLayout L):
//   proj     (B,T,Cp) floatX  in_proj output, rows [q | k | v | f_raw | g]: f_raw of head n at column L.f_col(n);
//                             rows L.Cp_stride() apart (as dproj's)
//   qkv      (B,T,Cc) floatX  silu(u) with u_t[c] = Σ_j conv[c,j] · x_{t−3+j}[c],  x = proj[..., c], x_{<0} = 0
//   f        (B,T,N)  fp32    f_t,n = exp(−a_n · softplus(f_raw_t,n + dt_bias[n])),  a_n = exp(A_log[n])
//   conv (Cc,CONV_WIDTH), A_log (N), dt_bias (N): fp32 parameters
// Backward, from dqkv (B,T,Cc) fp32 and df (B,T,N) fp32:
//   du_t = dqkv_t ⊙ silu'(u_t);  dx_s[c] = Σ_j conv[c,j] du_{s+3−j}[c];  dconv[c,j] += Σ_t du_t[c] x_{t−3+j}[c]
//   df_raw = −a · df · f · σ(f_raw + dt_bias);  ddt_bias += Σ df_raw;  dA_log += Σ −a · df · f · softplus(·)
//   dproj columns 0 … Cc+N−1 are overwritten (floatX); the g columns are left to m2rnn_gate_backward.
//   dconv, dA_log, ddt_bias accumulate (+=), as every parameter gradient does.
// The backward recomputes u and f from proj instead of keeping them: one more read of proj, no extra
// activation memory.
//
// Work split: one thread per column (coalesced across a warp) and a chunk of INPUT_TIME_CHUNK steps of one
// sequence, sliding the conv's window over time in registers.
// Deterministic: the parameter-gradient partial sums of a (chunk, sequence) block, part p = b·n_chunks + chunk
// of n_parts = B·ceil(T/INPUT_TIME_CHUNK), go to scratch (m2rnn_input_backward_scratch_floats) as
// dconv (n_parts, Cc·CONV_WIDTH), then dA_log (n_parts, N), then ddt_bias (n_parts, N); sum_partials adds each
// into its gradient in a fixed order. No atomics.
#pragma once
#include "common.cuh"

static const int INPUT_TIME_CHUNK = 32;
static const int INPUT_THREADS = 128;

// Shifts x into the newest end of a window of CONV_WIDTH consecutive steps (window[CONV_WIDTH − 1] is the newest).
static __device__ __forceinline__ void slide_window(float (&window)[CONV_WIDTH], float x) {
#pragma unroll
    for (int j = 0; j + 1 < CONV_WIDTH; j++) window[j] = window[j + 1];
    window[CONV_WIDTH - 1] = x;
}

// Channel c's conv weights and the window before step t0 (x_{t0−3} … x_{t0−1} in window[1 …]; zero before the
// sequence starts) of the sequence whose first position is row0.
static __device__ __forceinline__ void conv_start(float (&w)[CONV_WIDTH], float (&window)[CONV_WIDTH],
                                                  const float* conv, const floatX* proj, size_t row0, int t0, int c,
                                                  int Cp) {
#pragma unroll
    for (int j = 0; j < CONV_WIDTH; j++) {
        w[j] = conv[c * CONV_WIDTH + j];
        const int s = t0 - CONV_WIDTH + j;
        window[j] = j > 0 && s >= 0 ? to_float(proj[(row0 + s) * Cp + c]) : 0.0f;
    }
}

// grid (ceil((Cc+N)/INPUT_THREADS), ceil(T/INPUT_TIME_CHUNK), B)
static __global__ void m2rnn_input_forward_kernel(floatX* qkv, float* f, const floatX* proj, const float* conv,
                                                  const float* A_log, const float* dt_bias, M2RNNLayout L, int T) {
    const int Cc = L.Cc(), Cp = L.Cp_stride(), c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= Cc + L.N) return;
    const int t0 = blockIdx.y * INPUT_TIME_CHUNK, t1 = min(t0 + INPUT_TIME_CHUNK, T);
    const size_t row0 = (size_t)blockIdx.z * T;  // first position of this sequence
    if (c < Cc) {
        float w[CONV_WIDTH], window[CONV_WIDTH];
        conv_start(w, window, conv, proj, row0, t0, c, Cp);
        for (int t = t0; t < t1; t++) {
            slide_window(window, to_float(proj[(row0 + t) * Cp + c]));
            qkv[(row0 + t) * Cc + c] = from_float<floatX>(silu(causal_conv(w, window)));
        }
    } else {
        const int n = c - Cc;
        const float a = expf(A_log[n]), bias = dt_bias[n];
        for (int t = t0; t < t1; t++)
            f[(row0 + t) * L.N + n] = forget_gate(a, to_float(proj[(row0 + t) * Cp + c]) + bias);
    }
}

// Same grid as the forward. A chunk [t0, t1) writes dx_s for s in [t0, t1), which needs du_t for t up to
// t1+2 (zero past the end of the sequence), hence u_t for those t; its dconv partial counts du_t only for t in
// [t0, t1) (each t once overall).
static __global__ void m2rnn_input_backward_kernel(floatX* dproj, float* scratch, const float* dqkv, const float* df,
                                                   const floatX* proj, const float* conv, const float* A_log,
                                                   const float* dt_bias, M2RNNLayout L, int T) {
    const int Cc = L.Cc(), Cp = L.Cp_stride(), c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= Cc + L.N) return;
    const int t0 = blockIdx.y * INPUT_TIME_CHUNK, t1 = min(t0 + INPUT_TIME_CHUNK, T);
    const size_t row0 = (size_t)blockIdx.z * T;
    const size_t part = (size_t)blockIdx.z * gridDim.y + blockIdx.y, n_parts = (size_t)gridDim.y * gridDim.z;
    if (c < Cc) {
        float w[CONV_WIDTH], window[CONV_WIDTH], ahead[CONV_WIDTH] = {}, dw[CONV_WIDTH] = {};
        conv_start(w, window, conv, proj, row0, t0, c, Cp);
        for (int t = t0; t < t1 + CONV_WIDTH - 1; t++) {
            float du = 0.0f;
            if (t < T) {
                slide_window(window, to_float(proj[(row0 + t) * Cp + c]));
                du = dqkv[(row0 + t) * Cc + c] * silu_grad(causal_conv(w, window));
                if (t < t1) causal_conv_weight_grad(dw, du, window);
            }
            slide_window(ahead, du);
            const int s = t - (CONV_WIDTH - 1);  // dx_s is complete: it takes du_s … du_{s+3}
            if (s >= t0) dproj[(row0 + s) * Cp + c] = from_float<floatX>(causal_conv_input_grad(w, ahead));
        }
        float* dconv_part = scratch + (part * Cc + c) * CONV_WIDTH;
#pragma unroll
        for (int j = 0; j < CONV_WIDTH; j++) dconv_part[j] = dw[j];
    } else {
        const int n = c - Cc;
        const float a = expf(A_log[n]), bias = dt_bias[n];
        float da = 0.0f, db = 0.0f;
        for (int t = t0; t < t1; t++) {
            const ForgetGateGrad<float> g =
                forget_gate_backward(df[(row0 + t) * L.N + n], a, to_float(proj[(row0 + t) * Cp + c]) + bias);
            dproj[(row0 + t) * Cp + c] = from_float<floatX>(g.dx);
            db += g.dx;
            da += g.dA_log;
        }
        float* dA_log_parts = scratch + n_parts * Cc * CONV_WIDTH;
        dA_log_parts[part * L.N + n] = da;
        dA_log_parts[(n_parts + part) * L.N + n] = db;  // ddt_bias partials follow dA_log's
    }
}

static inline dim3 m2rnn_input_grid(const M2RNNLayout& L, int B, int T) {
    return dim3(ceil_div(L.Cc() + L.N, INPUT_THREADS), ceil_div(T, INPUT_TIME_CHUNK), B);
}

// qkv (B,T,Cc) floatX and f (B,T,N) fp32 from proj (B,T,Cp).
static inline void m2rnn_input_forward(floatX* qkv, float* f, const floatX* proj, const float* conv,
                                       const float* A_log, const float* dt_bias, const M2RNNLayout& L, int B, int T,
                                       cudaStream_t stream) {
    m2rnn_input_forward_kernel<<<m2rnn_input_grid(L, B, T), INPUT_THREADS, 0, stream>>>(qkv, f, proj, conv, A_log,
                                                                                        dt_bias, L, T);
    cudaCheckLaunch();
}

// Floats of scratch m2rnn_input_backward needs.
static inline size_t m2rnn_input_backward_scratch_floats(const M2RNNLayout& L, int B, int T) {
    return (size_t)B * ceil_div(T, INPUT_TIME_CHUNK) * ((size_t)L.Cc() * CONV_WIDTH + 2 * L.N);
}

// dproj columns 0 … Cc+N−1 overwritten; dconv (Cc,CONV_WIDTH), dA_log (N), ddt_bias (N) accumulate;
// scratch m2rnn_input_backward_scratch_floats(L, B, T) floats.
static inline void m2rnn_input_backward(floatX* dproj, float* dconv, float* dA_log, float* ddt_bias, float* scratch,
                                        const float* dqkv, const float* df, const floatX* proj, const float* conv,
                                        const float* A_log, const float* dt_bias, const M2RNNLayout& L, int B, int T,
                                        cudaStream_t stream) {
    const dim3 grid = m2rnn_input_grid(L, B, T);
    m2rnn_input_backward_kernel<<<grid, INPUT_THREADS, 0, stream>>>(dproj, scratch, dqkv, df, proj, conv, A_log,
                                                                    dt_bias, L, T);
    cudaCheckLaunch();
    const int n_parts = (int)(grid.y * grid.z);
    const float* dA_log_parts = scratch + (size_t)n_parts * L.Cc() * CONV_WIDTH;
    sum_partials(dconv, scratch, n_parts, (size_t)L.Cc() * CONV_WIDTH, stream);
    sum_partials(dA_log, dA_log_parts, n_parts, L.N, stream);
    sum_partials(ddt_bias, dA_log_parts + (size_t)n_parts * L.N, n_parts, L.N, stream);
}
