// The M²RNN layer's input stage: the short causal conv + silu on [q | k | v] and the forget gate, in one
// kernel each way. Fuses the reference steps causal_conv_silu_forward + forget_gate_forward (forward) and
// forget_gate_backward + causal_conv_silu_backward (backward).
//
// Shapes (B batch, T time, N heads, Cc = Nq·K + Nk·K + N·V conv channels, NV = N·V, Cp = Cc + N + NV):
//   proj     (B,T,Cp) floatX  in_proj output, rows [q | k | v | f_raw | g]: f_raw at column Cc, g at Cc + N
//   qkv      (B,T,Cc) floatX  silu(u) with u_t[c] = Σ_{j=0..3} conv[c,j] · x_{t-3+j}[c],  x = proj[..., c], x_{<0} = 0
//   f        (B,T,N)  fp32    f_t,n = exp(−a_n · softplus(f_raw_t,n + dt_bias[n])),  a_n = exp(A_log[n])
//   conv (Cc,4), A_log (N), dt_bias (N): fp32 parameters
// Backward, from dqkv (B,T,Cc) fp32 and df (B,T,N) fp32:
//   du_t = dqkv_t ⊙ silu'(u_t);  dx_s[c] = Σ_j conv[c,j] du_{s+3−j}[c];  dconv[c,j] += Σ_t du_t[c] x_{t−3+j}[c]
//   df_raw = −a · df · f · σ(f_raw + dt_bias);  ddt_bias += Σ df_raw;  dA_log += Σ −a · df · f · softplus(·)
//   dproj columns 0 … Cc+N−1 are overwritten (floatX); the g columns are left to m2rnn_gate_backward.
//   dconv, dA_log, ddt_bias accumulate (+=), as every parameter gradient does.
// The backward recomputes u and f from proj instead of keeping them: one more read of proj, no extra
// activation memory.
//
// Work split: one thread per column (coalesced across a warp) and a chunk of INPUT_TIME_CHUNK steps of one
// sequence, sliding a 4-step window over time in registers.
// Deterministic: the parameter-gradient partial sums of a (chunk, sequence) block, part p = b·n_chunks + chunk
// of n_parts = B·ceil(T/INPUT_TIME_CHUNK), go to scratch (m2rnn_input_backward_scratch_floats) as
// dconv (n_parts, Cc·4), then dA_log (n_parts, N), then ddt_bias (n_parts, N); sum_partials adds each into
// its gradient in a fixed order. No atomics.
#pragma once
#include "common.cuh"

static const int INPUT_TIME_CHUNK = 32;
static const int INPUT_THREADS = 128;

// grid (ceil((Cc+N)/INPUT_THREADS), ceil(T/INPUT_TIME_CHUNK), B)
static __global__ void m2rnn_input_forward_kernel(floatX* qkv, float* f, const floatX* proj, const float* conv,
                                                  const float* A_log, const float* dt_bias, int T, int Cc, int N,
                                                  int Cp) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= Cc + N) return;
    const int t0 = blockIdx.y * INPUT_TIME_CHUNK, t1 = min(t0 + INPUT_TIME_CHUNK, T);
    const size_t row0 = (size_t)blockIdx.z * T;  // first position of this sequence
    if (c < Cc) {
        const float w0 = conv[c * 4], w1 = conv[c * 4 + 1], w2 = conv[c * 4 + 2], w3 = conv[c * 4 + 3];
        // x_{t-3}, x_{t-2}, x_{t-1} before the first step of the chunk
        float xm3 = t0 >= 3 ? to_float(proj[(row0 + t0 - 3) * Cp + c]) : 0.0f;
        float xm2 = t0 >= 2 ? to_float(proj[(row0 + t0 - 2) * Cp + c]) : 0.0f;
        float xm1 = t0 >= 1 ? to_float(proj[(row0 + t0 - 1) * Cp + c]) : 0.0f;
        for (int t = t0; t < t1; t++) {
            const float x = to_float(proj[(row0 + t) * Cp + c]);
            const float u = w0 * xm3 + w1 * xm2 + w2 * xm1 + w3 * x;
            qkv[(row0 + t) * Cc + c] = from_float<floatX>(siluf(u));
            xm3 = xm2; xm2 = xm1; xm1 = x;
        }
    } else {
        const int n = c - Cc;
        const float a = expf(A_log[n]), bias = dt_bias[n];
        for (int t = t0; t < t1; t++)
            f[(row0 + t) * N + n] = expf(-a * softplusf(to_float(proj[(row0 + t) * Cp + c]) + bias));
    }
}

// Same grid as the forward. A chunk [t0, t1) writes dx_s for s in [t0, t1), which needs du_t for t up to
// t1+2, hence u_t for those t; its dconv partial counts du_t only for t in [t0, t1) (each t once overall).
static __global__ void m2rnn_input_backward_kernel(floatX* dproj, float* scratch, const float* dqkv, const float* df,
                                                   const floatX* proj, const float* conv, const float* A_log,
                                                   const float* dt_bias, int T, int Cc, int N, int Cp) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= Cc + N) return;
    const int t0 = blockIdx.y * INPUT_TIME_CHUNK, t1 = min(t0 + INPUT_TIME_CHUNK, T);
    const size_t row0 = (size_t)blockIdx.z * T;
    const size_t part = (size_t)blockIdx.z * gridDim.y + blockIdx.y, n_parts = (size_t)gridDim.y * gridDim.z;
    if (c < Cc) {
        const float w0 = conv[c * 4], w1 = conv[c * 4 + 1], w2 = conv[c * 4 + 2], w3 = conv[c * 4 + 3];
        float xm3 = t0 >= 3 ? to_float(proj[(row0 + t0 - 3) * Cp + c]) : 0.0f;
        float xm2 = t0 >= 2 ? to_float(proj[(row0 + t0 - 2) * Cp + c]) : 0.0f;
        float xm1 = t0 >= 1 ? to_float(proj[(row0 + t0 - 1) * Cp + c]) : 0.0f;
        float dum3 = 0.0f, dum2 = 0.0f, dum1 = 0.0f;  // du_{t-3}, du_{t-2}, du_{t-1}
        float dw0 = 0.0f, dw1 = 0.0f, dw2 = 0.0f, dw3 = 0.0f;
        const int t_end = min(t1 + 3, T);
        for (int t = t0; t < t_end; t++) {
            const float x = to_float(proj[(row0 + t) * Cp + c]);
            const float u = w0 * xm3 + w1 * xm2 + w2 * xm1 + w3 * x;
            const float du = dqkv[(row0 + t) * Cc + c] * silu_gradf(u);
            if (t < t1) {
                dw0 += du * xm3; dw1 += du * xm2; dw2 += du * xm1; dw3 += du * x;
            }
            if (t >= t0 + 3)  // dx_{t-3} is complete: it takes du_{t-3} … du_t
                dproj[(row0 + t - 3) * Cp + c] = from_float<floatX>(w0 * du + w1 * dum1 + w2 * dum2 + w3 * dum3);
            xm3 = xm2; xm2 = xm1; xm1 = x;
            dum3 = dum2; dum2 = dum1; dum1 = du;
        }
        // the last (up to 3) positions of the chunk, whose later du lie beyond the end of the sequence
        for (int s = max(t_end - 3, t0); s < t1; s++) {
            // here du_{t_end-1} = dum1, du_{t_end-2} = dum2, du_{t_end-3} = dum3; du_t = 0 for t >= T
            const int back = t_end - 1 - s;  // 0, 1 or 2: how many of du_{s+1..} exist
            const float dx = back == 2 ? w1 * dum1 + w2 * dum2 + w3 * dum3
                           : back == 1 ? w2 * dum1 + w3 * dum2
                                       : w3 * dum1;
            dproj[(row0 + s) * Cp + c] = from_float<floatX>(dx);
        }
        float* dconv_part = scratch + part * Cc * 4 + c * 4;
        dconv_part[0] = dw0; dconv_part[1] = dw1; dconv_part[2] = dw2; dconv_part[3] = dw3;
    } else {
        const int n = c - Cc;
        const float a = expf(A_log[n]), bias = dt_bias[n];
        float da = 0.0f, db = 0.0f;
        for (int t = t0; t < t1; t++) {
            const float x = to_float(proj[(row0 + t) * Cp + c]) + bias;
            const float sp = softplusf(x);
            const float g = -a * df[(row0 + t) * N + n] * expf(-a * sp);  // −a · df · f
            const float dr = g * sigmoidf_(x);
            dproj[(row0 + t) * Cp + c] = from_float<floatX>(dr);
            db += dr;
            da += g * sp;
        }
        float* dA_log_parts = scratch + n_parts * Cc * 4;
        dA_log_parts[part * N + n] = da;
        dA_log_parts[(n_parts + part) * N + n] = db;  // ddt_bias partials follow dA_log's
    }
}

// qkv (B,T,Cc) floatX and f (B,T,N) fp32 from proj (B,T,Cc+N+NV); NV = N·V fixes the row stride of proj.
static inline void m2rnn_input_forward(floatX* qkv, float* f, const floatX* proj, const float* conv,
                                       const float* A_log, const float* dt_bias, int B, int T, int Cc, int N, int NV,
                                       cudaStream_t stream) {
    const dim3 grid(ceil_div(Cc + N, INPUT_THREADS), ceil_div(T, INPUT_TIME_CHUNK), B);
    m2rnn_input_forward_kernel<<<grid, INPUT_THREADS, 0, stream>>>(qkv, f, proj, conv, A_log, dt_bias, T, Cc, N,
                                                                   Cc + N + NV);
    cudaCheckLaunch();
}

// Floats of scratch m2rnn_input_backward needs.
static inline size_t m2rnn_input_backward_scratch_floats(int B, int T, int Cc, int N) {
    return (size_t)B * ceil_div(T, INPUT_TIME_CHUNK) * ((size_t)Cc * 4 + 2 * N);
}

// dproj columns 0 … Cc+N−1 overwritten; dconv (Cc,4), dA_log (N), ddt_bias (N) accumulate;
// scratch m2rnn_input_backward_scratch_floats(B, T, Cc, N) floats.
static inline void m2rnn_input_backward(floatX* dproj, float* dconv, float* dA_log, float* ddt_bias, float* scratch,
                                        const float* dqkv, const float* df, const floatX* proj, const float* conv,
                                        const float* A_log, const float* dt_bias, int B, int T, int Cc, int N,
                                        int NV, cudaStream_t stream) {
    const dim3 grid(ceil_div(Cc + N, INPUT_THREADS), ceil_div(T, INPUT_TIME_CHUNK), B);
    m2rnn_input_backward_kernel<<<grid, INPUT_THREADS, 0, stream>>>(dproj, scratch, dqkv, df, proj, conv, A_log,
                                                                    dt_bias, T, Cc, N, Cc + N + NV);
    cudaCheckLaunch();
    const int n_parts = (int)(grid.y * grid.z);
    const float* dA_log_parts = scratch + (size_t)n_parts * Cc * 4;
    sum_partials(dconv, scratch, n_parts, (size_t)Cc * 4, stream);
    sum_partials(dA_log, dA_log_parts, n_parts, N, stream);
    sum_partials(ddt_bias, dA_log_parts + (size_t)n_parts * N, n_parts, N, stream);
}
