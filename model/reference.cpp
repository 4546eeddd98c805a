// The CPU reference: docs/model.md's model as plain loops, in double for the checks and float for CPU training.
//
// Reading order: the small steps (embedding, RMSNorm, matmul, residual, SwiGLU), the M²RNN mixer's steps (its
// input, the random initial state of --state-noise, the scan, its output gate), attention, cross-entropy, each
// backward beside its forward; then the model's forward and backward as straight sequences of those calls; last,
// the optimizer. The element-wise formulas (silu, the conv, the forget gate, the initial state's draw, the
// recurrence's step, RoPE, AdamW) come from model/model_math.h, which the GPU kernels call too. Every step is a
// template on the scalar type S; the list of the types each is built for closes the file.
#include "reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "parallel.h"

// The tasks (model/parallel.h) of a loop over n items in blocks of `block`.
static int task_count(size_t n, size_t block) { return (int)((n + block - 1) / block); }

// ================================ embedding, RMSNorm, matmul, residual, SwiGLU ================================

// x[b,t,:] = wte[tokens[b,t], :]   (tokens of row b are tokens[b*(T+1) + t]; no positional embedding)
template <typename S>
void encoder_forward(S* x, const S* wte, const int* tokens, int B, int T, int D) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            memcpy(x + ((size_t)b * T + t) * D, wte + (size_t)tokens[b * (T + 1) + t] * D, D * sizeof(S));
}

// dwte[tokens[b,t]] += dx[b,t].
template <typename S>
void encoder_backward(S* dwte, const S* dx, const int* tokens, int B, int T, int D) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            S* row = dwte + (size_t)tokens[b * (T + 1) + t] * D;
            for (int i = 0; i < D; i++) row[i] += dx[((size_t)b * T + t) * D + i];
        }
}

// out = x·r ⊙ w with r = 1/sqrt(mean(x²) + eps), over the last dimension C, for each of n rows; keeps r.
template <typename S>
void rmsnorm_forward(S* out, S* rstd, const S* x, const S* w, int n, int C) {
    for (int i = 0; i < n; i++) {
        const S* xi = x + (size_t)i * C;
        S ss = 0;
        for (int j = 0; j < C; j++) ss += xi[j] * xi[j];
        const S r = rmsnorm_rstd(ss, C);
        rstd[i] = r;
        for (int j = 0; j < C; j++) out[(size_t)i * C + j] = xi[j] * r * w[j];
    }
}

// dx = r (dout ⊙ w) − r³/C · x · Σ_j (dout ⊙ w ⊙ x)_j (+= into the residual stream when accumulate),
// dw += Σ_rows dout ⊙ x·r.
template <typename S>
void rmsnorm_backward(S* dx, S* dw, const S* dout, const S* x, const S* w,
                      const S* rstd, int n, int C, bool accumulate) {
    for (int i = 0; i < n; i++) {
        const S* xi = x + (size_t)i * C;
        const S* di = dout + (size_t)i * C;
        const S r = rstd[i];
        S dot = 0;
        for (int j = 0; j < C; j++) dot += di[j] * w[j] * xi[j];
        const S factor = rmsnorm_dx_factor(r, dot, C);
        for (int j = 0; j < C; j++) {
            const S g = rmsnorm_dx(r, factor, di[j], w[j], xi[j]);
            dx[(size_t)i * C + j] = (accumulate ? dx[(size_t)i * C + j] : 0.0) + g;
            dw[j] += di[j] * xi[j] * r;
        }
    }
}

// out (n, O) = x (n, I) Wᵀ with W stored (O, I), PyTorch-style.
// The three products of a matmul step (out = x Wᵀ, dx = dout W, dW += doutᵀ x) are one routine,
//   out[i, c] = start + Σ_r A(i, r) Bm(r, c),   A(i, r) = a[i·a_i + r·a_r],  Bm(r, c) = b[r·b_r + c·b_c],
// start = out[i, c] (accumulate) or 0, the terms added in order of r: the order of the plain triple loop, so the
// tiling below changes no bit of the result. A task computes a tile of MATMUL_ROWS × MATMUL_COLS outputs; it copies
// MATMUL_DEPTH rows of Bm's columns at a time into a panel that stays in L1, then sweeps its rows four at a time,
// so that 4 × MATMUL_COLS independent sums (independent lanes, which the compiler vectorises without reordering
// any sum) hide the latency of each multiply-add.
static constexpr int MATMUL_ROWS = 256, MATMUL_COLS = 32, MATMUL_DEPTH = 256;

template <typename S>
static void matmul_product(S* out, size_t out_i, const S* a, size_t a_i, size_t a_r, const S* b, size_t b_r,
                           size_t b_c, int rows, int R, int cols, bool accumulate) {
    const int col_tiles = task_count(cols, MATMUL_COLS);
    parallel_for(task_count(rows, MATMUL_ROWS) * col_tiles, [&](int task) {
        const int i0 = task / col_tiles * MATMUL_ROWS, i1 = std::min(rows, i0 + MATMUL_ROWS);
        const int c0 = task % col_tiles * MATMUL_COLS, nc = std::min(MATMUL_COLS, cols - c0);
        std::vector<S> panel((size_t)MATMUL_DEPTH * MATMUL_COLS, S(0));  // Bm(r0 + r, c0 + k), zero past `cols`
        for (int r0 = 0; r0 < R; r0 += MATMUL_DEPTH) {
            const int nr = std::min(MATMUL_DEPTH, R - r0);
            for (int r = 0; r < nr; r++)
                for (int k = 0; k < nc; k++) panel[(size_t)r * MATMUL_COLS + k] = b[(r0 + r) * b_r + (c0 + k) * b_c];
            const bool from_out = accumulate || r0 > 0;
            for (int i = i0; i < i1; i += 4) {
                const size_t row[4] = {(size_t)i, (size_t)std::min(i + 1, i1 - 1), (size_t)std::min(i + 2, i1 - 1),
                                       (size_t)std::min(i + 3, i1 - 1)};  // past the tile's end: repeats, not stored
                S acc[4][MATMUL_COLS] = {};
                if (from_out)
                    for (int q = 0; q < 4; q++)
                        for (int k = 0; k < nc; k++) acc[q][k] = out[row[q] * out_i + c0 + k];
                for (int r = 0; r < nr; r++) {
                    const S* p = panel.data() + (size_t)r * MATMUL_COLS;
                    for (int q = 0; q < 4; q++) {
                        const S av = a[row[q] * a_i + (size_t)(r0 + r) * a_r];
                        for (int k = 0; k < MATMUL_COLS; k++) acc[q][k] += av * p[k];
                    }
                }
                for (int q = 0; q < std::min(4, i1 - i); q++)
                    for (int k = 0; k < nc; k++) out[row[q] * out_i + c0 + k] = acc[q][k];
            }
        }
    });
}

// out (n, O) = x (n, I) Wᵀ with W stored (O, I), PyTorch-style: out[i,o] = Σ_j x[i,j] W[o,j].
template <typename S>
void matmul_forward(S* out, const S* x, const S* W, int n, int I, int O) {
    matmul_product(out, O, x, I, 1, W, 1, I, n, I, O, false);
}

// For out = x Wᵀ: dx (n, I) = dout W (overwritten), dW (O, I) += doutᵀ x.
template <typename S>
void matmul_backward(S* dx, S* dW, const S* dout, const S* x, const S* W, int n, int I,
                     int O) {
    matmul_product(dx, I, dout, O, 1, W, I, 1, n, O, I, false);
    matmul_product(dW, I, dout, 1, O, x, I, 1, O, n, I, true);
}

// out = a + b, elementwise (the residual connection). Its backward is the identity: the branch's gradient is the
// residual stream's, which is why the stream's gradient is accumulated rather than overwritten.
template <typename S>
void residual_forward(S* out, const S* a, const S* b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// h = silu(a) ⊙ b where each row of up is [a (F) | b (F)].
template <typename S>
void swiglu_forward(S* h, const S* up, int n, int F) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < F; j++)
            h[(size_t)i * F + j] = silu(up[(size_t)i * 2 * F + j]) * up[(size_t)i * 2 * F + F + j];
}

// dup = [dh ⊙ b ⊙ silu'(a) | dh ⊙ silu(a)].
template <typename S>
void swiglu_backward(S* dup, const S* dh, const S* up, int n, int F) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < F; j++) {
            S a = up[(size_t)i * 2 * F + j], b = up[(size_t)i * 2 * F + F + j], g = dh[(size_t)i * F + j];
            dup[(size_t)i * 2 * F + j] = g * b * silu_grad(a);
            dup[(size_t)i * 2 * F + F + j] = g * silu(a);
        }
}

// ================================ the M²RNN mixer ================================

// x_{t−3} … x_t of channel c of sequence b (zero before t = 0): the conv's window at step t.
template <typename S>
static void conv_window(S* window, const S* proj, int b, int T, int t, int c, int Cp) {
    for (int j = 0; j < CONV_WIDTH; j++) {
        const int s = t - (CONV_WIDTH - 1) + j;
        window[j] = s >= 0 ? proj[((size_t)b * T + s) * Cp + c] : 0.0;
    }
}

// The scan's inputs from in_proj's output: the causal conv + silu on the Cc channels [q | k | v], and the forget
// gates:
//   u_t[c] = Σ_j conv[c,j] x_{t−3+j}[c],   qkv = silu(u)
//   f_t,n = exp(−exp(A_log[n]) · softplus(f_raw_t,n + dt_bias[n]))
template <typename S>
void m2rnn_input_forward(S* qkv, S* conv_pre, S* f, const S* proj, const S* conv,
                         const S* A_log, const S* dt_bias, const M2RNNLayout& L, int B, int T) {
    const int Cc = L.Cc(), Cp = L.Cp();
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const size_t pos = (size_t)b * T + t;
            for (int c = 0; c < Cc; c++) {
                S window[CONV_WIDTH];
                conv_window(window, proj, b, T, t, c, Cp);
                const S u = causal_conv(conv + c * CONV_WIDTH, window);
                conv_pre[pos * Cc + c] = u;
                qkv[pos * Cc + c] = silu(u);
            }
            for (int n = 0; n < L.N; n++)
                f[pos * L.N + n] = forget_gate(math_exp(A_log[n]), proj[pos * Cp + L.f_col(n)] + dt_bias[n]);
        }
}

// Backward: du_t = dqkv_t ⊙ silu'(u_t), then the conv's input gradient dx_s = Σ_j conv[c,j] du_{s+3−j} into dproj's
// q|k|v columns and dconv[c,j] += Σ_t du_t x_{t−3+j}; the forget gate's gradient into dproj's f_raw columns,
// ddt_bias and dA_log.
template <typename S>
void m2rnn_input_backward(S* dproj, S* dconv, S* dA_log, S* ddt_bias, const S* dqkv,
                          const S* df, const S* conv_pre, const S* proj, const S* conv,
                          const S* A_log, const S* dt_bias, const M2RNNLayout& L, int B, int T) {
    const int Cc = L.Cc(), Cp = L.Cp();
    std::vector<S> du(T + CONV_WIDTH - 1);  // du_t of one channel, zero past the end
    for (int b = 0; b < B; b++)
        for (int c = 0; c < Cc; c++) {
            std::fill(du.begin(), du.end(), 0.0);
            for (int t = 0; t < T; t++) {
                const size_t o = ((size_t)b * T + t) * Cc + c;
                du[t] = dqkv[o] * silu_grad(conv_pre[o]);
            }
            for (int t = 0; t < T; t++) {
                S window[CONV_WIDTH];
                conv_window(window, proj, b, T, t, c, Cp);
                causal_conv_weight_grad(dconv + c * CONV_WIDTH, du[t], window);
                dproj[((size_t)b * T + t) * Cp + c] = causal_conv_input_grad(conv + c * CONV_WIDTH, &du[t]);
            }
        }
    for (size_t pos = 0; pos < (size_t)B * T; pos++)
        for (int n = 0; n < L.N; n++) {
            const ForgetGateGrad<S> g = forget_gate_backward(df[pos * L.N + n], math_exp(A_log[n]),
                                                                  proj[pos * Cp + L.f_col(n)] + dt_bias[n]);
            dproj[pos * Cp + L.f_col(n)] = g.dx;
            ddt_bias[n] += g.dx;
            dA_log[n] += g.dA_log;
        }
}

// The initial state of a training forward under --state-noise A (docs/model.md §2.2), layer `layer`'s:
//   H0[b,n,i,j] = m2rnn_initial_state(key, layer·B·N·K·V + ((b·N + n)·K + i)·V + j, A)   uniform in [−A, A)
// (model_math.h: a counter-based draw, the same values in float and double and on the GPU).
template <typename S>
void m2rnn_initial_state_fill(S* H0, StateNoise noise, int layer, const M2RNNLayout& L, int B) {
    const size_t n = (size_t)B * L.N * L.K * L.V;
    for (size_t e = 0; e < n; e++) H0[e] = m2rnn_initial_state(noise.key, (uint64_t)layer * n + e, noise.amplitude);
}

// The recurrence, for every batch row b and head n (q, k of the head's group), from H_{−1} = H0[b,n] (zero when H0
// is null):
//   Z_t = tanh(H_{t−1} W_n + k_t v_tᵀ)          H (K×V), W_n (V×V), k_t v_tᵀ the outer product
//   H_t = f_t H_{t−1} + (1 − f_t) Z_t
//   y_t = H_tᵀ q_t                               (V), head n at columns n·V … of y
// H and Z are kept for the backward.
template <typename S>
void m2rnn_scan_forward(S* y, S* H, S* Z, const S* qkv, const S* f, const S* W, const S* H0,
                        const M2RNNLayout& L, int B, int T) {
    const int K = L.K, V = L.V, KV = K * V, Cc = L.Cc();
    const std::vector<S> zero(KV, 0.0);
    for (int b = 0; b < B; b++)
        for (int n = 0; n < L.N; n++) {
            const S* Wn = W + (size_t)n * V * V;
            const S* Hinit = H0 ? H0 + ((size_t)b * L.N + n) * KV : zero.data();
            for (int t = 0; t < T; t++) {
                const size_t pos = (size_t)b * T + t, at = (((size_t)b * L.N + n) * T + t) * KV;
                const S *q = qkv + pos * Cc + L.q_col(n), *k = qkv + pos * Cc + L.k_col(n);
                const S* v = qkv + pos * Cc + L.v_col(n);
                const S* Hprev = t > 0 ? H + at - KV : Hinit;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < V; j++) {
                        S a = k[i] * v[j];
                        for (int m = 0; m < V; m++) a += Hprev[i * V + m] * Wn[m * V + j];
                        const M2RNNStep<S> s = m2rnn_step_forward(a, Hprev[i * V + j], f[pos * L.N + n]);
                        Z[at + i * V + j] = s.z;
                        H[at + i * V + j] = s.h;
                    }
                for (int j = 0; j < V; j++) {
                    S acc = 0;
                    for (int i = 0; i < K; i++) acc += H[at + i * V + j] * q[i];
                    y[pos * L.NV() + n * V + j] = acc;
                }
            }
        }
}

// Backward, from t = T−1 down to 0 per (b, n), with the carry C_{T−1} = 0 and G_t = ∂L/∂H_t:
//   G_t = q_t dy_tᵀ + clamp(C_t, −c, c)            no clamp when c = 0 (model_math.h: m2rnn_step_backward)
//   dA_t = ((1 − f_t) G_t) ⊙ (1 − Z_t²)            the gradient at the tanh's input
//   dq_t = H_t dy_t,  dk_t = dA_t v_t,  dv_t = dA_tᵀ k_t,  df_t = Σ G_t ⊙ (H_{t−1} − Z_t),  dW_n += H_{t−1}ᵀ dA_t
//   C_{t−1} = f_t G_t + dA_t W_nᵀ                   the carry into the step before
// At t = 0, H_{t−1} is the forward's H0 (zero when null: then dW gets nothing from step 0 and df_0 = −Σ G_0 ⊙ Z_0).
// dq and dk of a shared q/k head sum over the heads of its group.
template <typename S>
void m2rnn_scan_backward(S* dqkv, S* df, S* dW, const S* dy, const S* qkv, const S* f,
                         const S* W, const S* H0, const S* H, const S* Z, double clip, const M2RNNLayout& L,
                         int B, int T) {
    const int K = L.K, V = L.V, KV = K * V, Cc = L.Cc();
    const std::vector<S> zero(KV, 0.0);
    std::vector<S> carry(KV), dA(KV);
    for (int b = 0; b < B; b++)
        for (int n = 0; n < L.N; n++) {
            const S* Wn = W + (size_t)n * V * V;
            S* dWn = dW + (size_t)n * V * V;
            const S* Hinit = H0 ? H0 + ((size_t)b * L.N + n) * KV : zero.data();
            std::fill(carry.begin(), carry.end(), 0.0);
            for (int t = T - 1; t >= 0; t--) {
                const size_t pos = (size_t)b * T + t, at = (((size_t)b * L.N + n) * T + t) * KV;
                const S *q = qkv + pos * Cc + L.q_col(n), *k = qkv + pos * Cc + L.k_col(n);
                const S* v = qkv + pos * Cc + L.v_col(n);
                S *dq = dqkv + pos * Cc + L.q_col(n), *dk = dqkv + pos * Cc + L.k_col(n);
                S* dv = dqkv + pos * Cc + L.v_col(n);
                const S *Ht = H + at, *Zt = Z + at, *Hprev = t > 0 ? H + at - KV : Hinit;
                const S* dyt = dy + pos * L.NV() + n * V;
                S dft = 0;
                for (int e = 0; e < KV; e++) {
                    const M2RNNStepGrad<S> g = m2rnn_step_backward(carry[e], S(clip), q[e / V], dyt[e % V], Zt[e],
                                                                        Hprev[e], f[pos * L.N + n]);
                    dA[e] = g.dA;
                    dft += g.df;
                    carry[e] = g.carry;
                }
                df[pos * L.N + n] = dft;
                for (int i = 0; i < K; i++) {
                    S acc_q = 0, acc_k = 0;
                    for (int j = 0; j < V; j++) {
                        acc_q += Ht[i * V + j] * dyt[j];
                        acc_k += dA[i * V + j] * v[j];
                    }
                    dq[i] += acc_q;
                    dk[i] += acc_k;
                }
                for (int j = 0; j < V; j++) {
                    S acc = 0;
                    for (int i = 0; i < K; i++) acc += dA[i * V + j] * k[i];
                    dv[j] += acc;
                }
                for (int m = 0; m < V; m++)
                    for (int j = 0; j < V; j++) {
                        S acc = 0;
                        for (int i = 0; i < K; i++) acc += Hprev[i * V + m] * dA[i * V + j];
                        dWn[m * V + j] += acc;
                    }
                for (int i = 0; i < K; i++)  // C_{t−1} = f_t G_t (in carry) + dA_t W_nᵀ
                    for (int m = 0; m < V; m++) {
                        S acc = 0;
                        for (int j = 0; j < V; j++) acc += dA[i * V + j] * Wn[m * V + j];
                        carry[i * V + m] += acc;
                    }
            }
        }
}

// The output gate and its norm, per position over the whole N·V vector (v and g read from qkv and proj):
//   gated = (y + D_skip ⊙ v) ⊙ silu(g),   out = gated·r ⊙ gnorm (rmsnorm_forward)
template <typename S>
void m2rnn_gate_forward(S* out, S* rstd, S* gated, const S* y, const S* qkv,
                        const S* proj, const S* skip, const S* gnorm, const M2RNNLayout& L, int n_pos) {
    const int NV = L.NV(), Cc = L.Cc(), Cp = L.Cp(), v0 = L.v_col(0), g0 = L.g_col(0);
    for (int i = 0; i < n_pos; i++)
        for (int j = 0; j < NV; j++)
            gated[(size_t)i * NV + j] = m2rnn_gated(y[(size_t)i * NV + j], skip[j], qkv[(size_t)i * Cc + v0 + j],
                                                    proj[(size_t)i * Cp + g0 + j]);
    rmsnorm_forward(out, rstd, gated, gnorm, n_pos, NV);
}

// Backward: dgated from the norm (dgnorm +=), then with y2 = y + D_skip ⊙ v:
//   dy = dgated ⊙ silu(g),  dg = dgated ⊙ y2 ⊙ silu'(g),  dv += dy ⊙ D_skip,  dD_skip += Σ dy ⊙ v
template <typename S>
void m2rnn_gate_backward(S* dy, S* dqkv, S* dproj, S* dskip, S* dgnorm, const S* dout,
                         const S* y, const S* qkv, const S* proj, const S* skip,
                         const S* gnorm, const S* gated, const S* rstd, const M2RNNLayout& L,
                         int n_pos) {
    const int NV = L.NV(), Cc = L.Cc(), Cp = L.Cp(), v0 = L.v_col(0), g0 = L.g_col(0);
    std::vector<S> dgated((size_t)n_pos * NV);
    rmsnorm_backward(dgated.data(), dgnorm, dout, gated, gnorm, rstd, n_pos, NV, false);
    for (int i = 0; i < n_pos; i++)
        for (int j = 0; j < NV; j++) {
            const S v = qkv[(size_t)i * Cc + v0 + j];
            const M2RNNGatedGrad<S> d = m2rnn_gated_backward(dgated[(size_t)i * NV + j], y[(size_t)i * NV + j],
                                                                  skip[j], v, proj[(size_t)i * Cp + g0 + j]);
            dy[(size_t)i * NV + j] = d.dy;
            dproj[(size_t)i * Cp + g0 + j] = d.dg;
            dqkv[(size_t)i * Cc + v0 + j] += d.dy * skip[j];
            dskip[j] += d.dy * v;
        }
}

// ================================ attention ================================

// RoPE on the q and k parts of every head of qkv (B,T,3D), in place: each pair (x[i], x[i + hd/2]) of a head
// vector at position t turned by the angle t·ω_i, or back by −t·ω_i (sign −1).
template <typename S>
void rope_rotate_heads(S* qkv, int B, int T, int D, int heads, double sign) {
    const int hd = D / heads;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int part = 0; part < 2; part++)
                for (int h = 0; h < heads; h++) {
                    S* x = qkv + ((size_t)b * T + t) * 3 * D + part * D + h * hd;
                    for (int i = 0; i < hd / 2; i++) {
                        const double angle = rope_angle(t, i, hd);
                        rope_rotate(x[i], x[i + hd / 2], S(cos(angle)), S(sign * sin(angle)));
                    }
                }
}

// Causal softmax attention per head, after RoPE on q and k when `rope`:
//   p[t,s] = softmax_{s<=t}(q_t·k_s / sqrt(hd)),   y_t = Σ_s p[t,s] v_s
// qkv (B,T,3D) rows [q | k | v], unrotated; prob (B,heads,T,T), zero above the diagonal; y (B,T,D).
template <typename S>
void attention_forward(S* y, S* prob, const S* qkv_in, int B, int T, int D, int heads, bool rope) {
    std::vector<S> rotated(qkv_in, qkv_in + (size_t)B * T * 3 * D);
    if (rope) rope_rotate_heads(rotated.data(), B, T, D, heads, +1.0);
    const S* qkv = rotated.data();
    const int hd = D / heads;
    const S scale = S(1) / math_sqrt(S(hd));
    parallel_for(B * heads, [&](int task) {  // one (b, h) pair a task: it writes that head's columns of row b
        const int b = task / heads, h = task % heads;
        for (int t = 0; t < T; t++) {
            const S* q = qkv + ((size_t)b * T + t) * 3 * D + h * hd;
            S* p = prob + (((size_t)b * heads + h) * T + t) * T;
            S maxv = -INFINITY;
            for (int s = 0; s <= t; s++) {
                const S* k = qkv + ((size_t)b * T + s) * 3 * D + D + h * hd;
                S dot = 0;
                for (int i = 0; i < hd; i++) dot += q[i] * k[i];
                p[s] = dot * scale;
                maxv = std::max(maxv, p[s]);
            }
            S sum = 0;
            for (int s = 0; s <= t; s++) { p[s] = math_exp(p[s] - maxv); sum += p[s]; }
            for (int s = 0; s <= t; s++) p[s] /= sum;
            for (int s = t + 1; s < T; s++) p[s] = 0;
            S* yt = y + ((size_t)b * T + t) * D + h * hd;
            for (int i = 0; i < hd; i++) {
                S acc = 0;
                for (int s = 0; s <= t; s++) acc += p[s] * qkv[((size_t)b * T + s) * 3 * D + 2 * D + h * hd + i];
                yt[i] = acc;
            }
        }
    });
}

// Backward, on q and k rotated again as the forward rotated them: dp[t,s] = dy_t·v_s, dv_s += p[t,s] dy_t,
// δ_t = Σ_s p[t,s] dp[t,s], ds = p ⊙ (dp − δ_t), dq_t += Σ_s ds[t,s] k_s / sqrt(hd), dk_s += ds[t,s] q_t / sqrt(hd);
// then dq and dk rotated back (RoPE is a rotation: its backward is the inverse rotation).
template <typename S>
void attention_backward(S* dqkv, const S* dy, const S* qkv_in, const S* prob, int B, int T, int D,
                        int heads, bool rope) {
    std::vector<S> rotated(qkv_in, qkv_in + (size_t)B * T * 3 * D);
    if (rope) rope_rotate_heads(rotated.data(), B, T, D, heads, +1.0);
    const S* qkv = rotated.data();
    const int hd = D / heads;
    const S scale = S(1) / math_sqrt(S(hd));
    memset(dqkv, 0, sizeof(S) * B * T * 3 * D);
    parallel_for(B * heads, [&](int task) {  // as the forward: a (b, h) pair writes its own columns of dqkv
        const int b = task / heads, h = task % heads;
        std::vector<S> dp(T);
        for (int t = 0; t < T; t++) {
            const S* p = prob + (((size_t)b * heads + h) * T + t) * T;
            const S* dyt = dy + ((size_t)b * T + t) * D + h * hd;
            S delta = 0;
            for (int s = 0; s <= t; s++) {
                const S* v = qkv + ((size_t)b * T + s) * 3 * D + 2 * D + h * hd;
                S* dv = dqkv + ((size_t)b * T + s) * 3 * D + 2 * D + h * hd;
                S acc = 0;
                for (int i = 0; i < hd; i++) { acc += dyt[i] * v[i]; dv[i] += p[s] * dyt[i]; }
                dp[s] = acc;
                delta += p[s] * acc;
            }
            const S* q = qkv + ((size_t)b * T + t) * 3 * D + h * hd;
            S* dq = dqkv + ((size_t)b * T + t) * 3 * D + h * hd;
            for (int s = 0; s <= t; s++) {
                S ds = p[s] * (dp[s] - delta) * scale;
                const S* k = qkv + ((size_t)b * T + s) * 3 * D + D + h * hd;
                S* dk = dqkv + ((size_t)b * T + s) * 3 * D + D + h * hd;
                for (int i = 0; i < hd; i++) { dq[i] += ds * k[i]; dk[i] += ds * q[i]; }
            }
        }
    });
    if (rope) rope_rotate_heads(dqkv, B, T, D, heads, -1.0);
}

// ================================ the loss ================================

// Rows of the classifier's (B·T, Vp) buffers per task of the loss's steps.
static constexpr int CROSSENTROPY_ROWS = 16;

// A row of Vp values is reduced in SOFTMAX_LANES interleaved partial results (element j into lane j mod
// SOFTMAX_LANES), then across the lanes in order: a fixed order, which the compiler vectorises as it stands.
static constexpr int SOFTMAX_LANES = 16;

template <typename S> static S lane_sum(const S* x, int n) {
    S lanes[SOFTMAX_LANES] = {};
    int j = 0;
    for (; j + SOFTMAX_LANES <= n; j += SOFTMAX_LANES)
        for (int k = 0; k < SOFTMAX_LANES; k++) lanes[k] += x[j + k];
    for (; j < n; j++) lanes[j % SOFTMAX_LANES] += x[j];
    S sum = 0;
    for (S l : lanes) sum += l;
    return sum;
}

template <typename S> static S lane_max(const S* x, int n) {
    S lanes[SOFTMAX_LANES];
    std::fill(lanes, lanes + SOFTMAX_LANES, S(-INFINITY));
    int j = 0;
    for (; j + SOFTMAX_LANES <= n; j += SOFTMAX_LANES)
        for (int k = 0; k < SOFTMAX_LANES; k++) lanes[k] = x[j + k] > lanes[k] ? x[j + k] : lanes[k];
    for (; j < n; j++) lanes[j % SOFTMAX_LANES] = std::max(lanes[j % SOFTMAX_LANES], x[j]);
    return *std::max_element(lanes, lanes + SOFTMAX_LANES);
}

// Softmax over the first `vocab` of Vp columns (padded columns get probability 0) and the mean
// cross-entropy over all B·T positions; the target of position (b, t) is tokens[b·(T+1) + t + 1]. The loss is
// summed per task, then over the tasks in order.
template <typename S>
double crossentropy_forward(S* probs, const S* logits, const int* tokens, int B, int T, int vocab, int Vp) {
    const int n = B * T, tasks = task_count(n, CROSSENTROPY_ROWS);
    std::vector<double> partial(tasks, 0.0);
    parallel_for(tasks, [&](int task) {
        for (int i = task * CROSSENTROPY_ROWS; i < std::min(n, (task + 1) * CROSSENTROPY_ROWS); i++) {
            const S* z = logits + (size_t)i * Vp;
            S* p = probs + (size_t)i * Vp;
            const S maxv = lane_max(z, vocab);
            for (int j = 0; j < vocab; j++) p[j] = math_exp(z[j] - maxv);
            const S sum = lane_sum(p, vocab);
            for (int j = 0; j < vocab; j++) p[j] /= sum;
            for (int j = vocab; j < Vp; j++) p[j] = 0;
            partial[task] -= log((double)p[tokens[i + i / T + 1]]);  // i = b·T + t → b·(T+1) + t + 1
        }
    });
    double loss = 0;
    for (double l : partial) loss += l;
    return loss / n;
}

// dlogits = (probs − onehot(target)) / (B·T) on the real columns, 0 on the padded ones.
template <typename S>
void crossentropy_backward(S* dlogits, const S* probs, const int* tokens, int B, int T, int Vp) {
    const int n = B * T;
    parallel_for(task_count(n, CROSSENTROPY_ROWS), [&](int task) {
        for (int i = task * CROSSENTROPY_ROWS; i < std::min(n, (task + 1) * CROSSENTROPY_ROWS); i++) {
            const int target = tokens[i + i / T + 1];
            for (int j = 0; j < Vp; j++)
                dlogits[(size_t)i * Vp + j] = (probs[(size_t)i * Vp + j] - S(j == target)) / S(n);
        }
    });
}

// ================================ the model ================================

template <typename S>
void reference_init(Reference<S>& m, const Config& c, int B, int T) {
    m.c = c;
    m.table = parameter_table_build(c);
    m.B = B;
    m.T = T;
    const size_t BT = (size_t)B * T;
    const M2RNNLayout L = config_m2rnn_layout(c);
    m.tokens.assign((size_t)B * (T + 1), 0);
    m.layers.assign(c.L, ReferenceLayer<S>());
    for (int l = 0; l < c.L; l++) {
        ReferenceLayer<S>& a = m.layers[l];
        a.residual.assign(BT * c.D, 0);
        a.ln1.assign(BT * c.D, 0);
        a.ln1_rstd.assign(BT, 0);
        if (c.pattern[l] == 'M') {
            a.proj.assign(BT * L.Cp(), 0);
            a.conv_pre.assign(BT * L.Cc(), 0);
            a.qkv.assign(BT * L.Cc(), 0);
            a.forget.assign(BT * c.N, 0);
            a.state.assign(BT * c.N * c.K * c.V, 0);
            a.tanh_z.assign(BT * c.N * c.K * c.V, 0);
            a.scan_y.assign(BT * L.NV(), 0);
            a.gated.assign(BT * L.NV(), 0);
            a.gnorm_out.assign(BT * L.NV(), 0);
            a.gnorm_rstd.assign(BT, 0);
        } else {
            a.attn_qkv.assign(BT * 3 * c.D, 0);
            a.attn_prob.assign((size_t)B * c.heads * T * T, 0);
            a.attn_y.assign(BT * c.D, 0);
        }
        a.mixer_out.assign(BT * c.D, 0);
        a.residual2.assign(BT * c.D, 0);
        a.ln2.assign(BT * c.D, 0);
        a.ln2_rstd.assign(BT, 0);
        a.up.assign(BT * 2 * c.F, 0);
        a.swiglu.assign(BT * c.F, 0);
    }
    m.final_residual.assign(BT * c.D, 0);
    m.lnf.assign(BT * c.D, 0);
    m.lnf_rstd.assign(BT, 0);
    m.loss = 0;
}

template <typename S>
void reference_layers_forward(Reference<S>& m, const S* params, const int* tokens, int T, StateNoise noise) {
    const Config& c = m.c;
    const int B = m.B, BT = B * T, D = c.D;
    const M2RNNLayout L = config_m2rnn_layout(c);
    const ParameterTable& pt = m.table;
    m.tokens.assign(tokens, tokens + (size_t)B * (T + 1));
    auto P = [&](int l, ParamKind kind) { return params + param_offset(pt, l, kind); };

    std::vector<S> x((size_t)BT * D), mlp_out((size_t)BT * D);
    encoder_forward(x.data(), params + pt.tensors[pt.wte].offset, tokens, B, T, D);
    for (int l = 0; l < c.L; l++) {
        ReferenceLayer<S>& a = m.layers[l];
        a.residual = x;
        rmsnorm_forward(a.ln1.data(), a.ln1_rstd.data(), x.data(), P(l, P_LN1), BT, D);
        if (c.pattern[l] == 'M') {
            matmul_forward(a.proj.data(), a.ln1.data(), P(l, P_IN_PROJ), BT, D, L.Cp());
            m2rnn_input_forward(a.qkv.data(), a.conv_pre.data(), a.forget.data(), a.proj.data(), P(l, P_CONV),
                                P(l, P_A_LOG), P(l, P_DT_BIAS), L, B, T);
            a.h0.resize(noise.amplitude > 0 ? (size_t)B * c.N * c.K * c.V : 0);
            if (noise.amplitude > 0) m2rnn_initial_state_fill(a.h0.data(), noise, l, L, B);
            m2rnn_scan_forward(a.scan_y.data(), a.state.data(), a.tanh_z.data(), a.qkv.data(), a.forget.data(),
                               P(l, P_W), a.h0.empty() ? nullptr : a.h0.data(), L, B, T);
            m2rnn_gate_forward(a.gnorm_out.data(), a.gnorm_rstd.data(), a.gated.data(), a.scan_y.data(), a.qkv.data(),
                               a.proj.data(), P(l, P_SKIP), P(l, P_GNORM), L, BT);
            matmul_forward(a.mixer_out.data(), a.gnorm_out.data(), P(l, P_OUT_PROJ), BT, L.NV(), D);
        } else {
            matmul_forward(a.attn_qkv.data(), a.ln1.data(), P(l, P_QKV), BT, D, 3 * D);
            attention_forward(a.attn_y.data(), a.attn_prob.data(), a.attn_qkv.data(), B, T, D, c.heads, c.rope);
            matmul_forward(a.mixer_out.data(), a.attn_y.data(), P(l, P_ATTN_OUT), BT, D, D);
        }
        residual_forward(a.residual2.data(), x.data(), a.mixer_out.data(), x.size());
        rmsnorm_forward(a.ln2.data(), a.ln2_rstd.data(), a.residual2.data(), P(l, P_LN2), BT, D);
        matmul_forward(a.up.data(), a.ln2.data(), P(l, P_UP), BT, D, 2 * c.F);
        swiglu_forward(a.swiglu.data(), a.up.data(), BT, c.F);
        matmul_forward(mlp_out.data(), a.swiglu.data(), P(l, P_DOWN), BT, c.F, D);
        residual_forward(x.data(), a.residual2.data(), mlp_out.data(), x.size());
    }
    m.final_residual = x;
    rmsnorm_forward(m.lnf.data(), m.lnf_rstd.data(), x.data(), params + pt.tensors[pt.lnf].offset, BT, D);
}

template <typename S>
double reference_forward(Reference<S>& m, const S* params, const int* tokens, StateNoise noise) {
    const Config& c = m.c;
    const size_t rows = (size_t)m.B * m.T;
    reference_layers_forward(m, params, tokens, m.T, noise);
    m.logits.resize(rows * c.Vp);
    m.probs.resize(rows * c.Vp);
    const size_t lm_head = m.table.tensors[m.table.lm_head].offset;
    matmul_forward(m.logits.data(), m.lnf.data(), params + lm_head, (int)rows, c.D, c.Vp);
    m.loss = crossentropy_forward(m.probs.data(), m.logits.data(), tokens, m.B, m.T, c.vocab, c.Vp);
    return m.loss;
}

template <typename S>
void reference_backward(Reference<S>& m, const S* params, S* grads) {
    const Config& c = m.c;
    const int B = m.B, T = m.T, BT = B * T, D = c.D;
    const M2RNNLayout L = config_m2rnn_layout(c);
    const ParameterTable& pt = m.table;
    auto P = [&](int l, ParamKind kind) { return params + param_offset(pt, l, kind); };
    auto G = [&](int l, ParamKind kind) { return grads + param_offset(pt, l, kind); };

    std::vector<S>& dlogits = m.dlogits;
    dlogits.resize((size_t)BT * c.Vp);
    std::vector<S> dlnf((size_t)BT * D), dx((size_t)BT * D);
    crossentropy_backward(dlogits.data(), m.probs.data(), m.tokens.data(), B, T, c.Vp);
    matmul_backward(dlnf.data(), grads + pt.tensors[pt.lm_head].offset, dlogits.data(), m.lnf.data(),
                    params + pt.tensors[pt.lm_head].offset, BT, D, c.Vp);
    rmsnorm_backward(dx.data(), grads + pt.tensors[pt.lnf].offset, dlnf.data(), m.final_residual.data(),
                     params + pt.tensors[pt.lnf].offset, m.lnf_rstd.data(), BT, D, false);

    // dx is the gradient of the residual stream; each block adds its branch's gradient to it, and a branch's
    // output joined the stream unchanged, so dx is also the gradient of the branch's output.
    std::vector<S> dln((size_t)BT * D), dswiglu((size_t)BT * c.F), dup((size_t)BT * 2 * c.F);
    for (int l = c.L - 1; l >= 0; l--) {
        ReferenceLayer<S>& a = m.layers[l];
        matmul_backward(dswiglu.data(), G(l, P_DOWN), dx.data(), a.swiglu.data(), P(l, P_DOWN), BT, c.F, D);
        swiglu_backward(dup.data(), dswiglu.data(), a.up.data(), BT, c.F);
        matmul_backward(dln.data(), G(l, P_UP), dup.data(), a.ln2.data(), P(l, P_UP), BT, D, 2 * c.F);
        rmsnorm_backward(dx.data(), G(l, P_LN2), dln.data(), a.residual2.data(), P(l, P_LN2), a.ln2_rstd.data(), BT, D,
                         true);
        if (c.pattern[l] == 'M') {
            std::vector<S> dgnorm_out((size_t)BT * L.NV()), dscan_y((size_t)BT * L.NV());
            std::vector<S> dproj((size_t)BT * L.Cp()), dqkv((size_t)BT * L.Cc(), 0.0), dforget((size_t)BT * c.N);
            matmul_backward(dgnorm_out.data(), G(l, P_OUT_PROJ), dx.data(), a.gnorm_out.data(), P(l, P_OUT_PROJ), BT,
                            L.NV(), D);
            m2rnn_gate_backward(dscan_y.data(), dqkv.data(), dproj.data(), G(l, P_SKIP), G(l, P_GNORM),
                                dgnorm_out.data(), a.scan_y.data(), a.qkv.data(), a.proj.data(), P(l, P_SKIP),
                                P(l, P_GNORM), a.gated.data(), a.gnorm_rstd.data(), L, BT);
            m2rnn_scan_backward(dqkv.data(), dforget.data(), G(l, P_W), dscan_y.data(), a.qkv.data(), a.forget.data(),
                                P(l, P_W), a.h0.empty() ? nullptr : a.h0.data(), a.state.data(), a.tanh_z.data(),
                                c.clip, L, B, T);
            m2rnn_input_backward(dproj.data(), G(l, P_CONV), G(l, P_A_LOG), G(l, P_DT_BIAS), dqkv.data(),
                                 dforget.data(), a.conv_pre.data(), a.proj.data(), P(l, P_CONV), P(l, P_A_LOG),
                                 P(l, P_DT_BIAS), L, B, T);
            matmul_backward(dln.data(), G(l, P_IN_PROJ), dproj.data(), a.ln1.data(), P(l, P_IN_PROJ), BT, D, L.Cp());
        } else {
            std::vector<S> dattn_y((size_t)BT * D), dattn_qkv((size_t)BT * 3 * D);
            matmul_backward(dattn_y.data(), G(l, P_ATTN_OUT), dx.data(), a.attn_y.data(), P(l, P_ATTN_OUT), BT, D, D);
            attention_backward(dattn_qkv.data(), dattn_y.data(), a.attn_qkv.data(), a.attn_prob.data(), B, T, D,
                               c.heads, c.rope);
            matmul_backward(dln.data(), G(l, P_QKV), dattn_qkv.data(), a.ln1.data(), P(l, P_QKV), BT, D, 3 * D);
        }
        rmsnorm_backward(dx.data(), G(l, P_LN1), dln.data(), a.residual.data(), P(l, P_LN1), a.ln1_rstd.data(), BT, D,
                         true);
    }
    encoder_backward(grads + pt.tensors[pt.wte].offset, dx.data(), m.tokens.data(), B, T, D);
}

// ================================ the optimizer

// Elements of the parameter arena per task of the optimizer's loops.
static constexpr size_t OPTIMIZER_BLOCK = 1 << 16;

// sqrt(Σ g²), the squares summed in double per block of the arena, then over the blocks in order.
template <typename S>
double reference_grad_norm(const S* grads, size_t n) {
    const int tasks = task_count(n, OPTIMIZER_BLOCK);
    std::vector<double> partial(tasks, 0.0);
    parallel_for(tasks, [&](int task) {
        for (size_t i = task * OPTIMIZER_BLOCK; i < std::min(n, (task + 1) * OPTIMIZER_BLOCK); i++)
            partial[task] += (double)grads[i] * grads[i];
    });
    double ss = 0;
    for (double p : partial) ss += p;
    return sqrt(ss);
}

// AdamW (model_math.h: adamw_element) on every element, g = grad_scale · grad, weight decay only on the tensors
// the table flags; the hyperparameters rounded to S, as the GPU rounds them to float.
template <typename S>
void reference_adamw(const ParameterTable& t, S* params, const S* grads, S* m, S* v, int step,
                     double lr, double beta1, double beta2, double eps, double weight_decay, double grad_scale) {
    const S bc1 = S(1.0 - pow(beta1, step)), bc2 = S(1.0 - pow(beta2, step));
    for (const ParamTensor& p : t.tensors) {
        const S wd = S(p.decay ? weight_decay : 0.0);
        parallel_for(task_count(p.numel, OPTIMIZER_BLOCK), [&](int task) {
            const size_t i0 = p.offset + task * OPTIMIZER_BLOCK;
            const size_t i1 = std::min(p.offset + p.numel, i0 + OPTIMIZER_BLOCK);
            for (size_t i = i0; i < i1; i++)
                adamw_element(params[i], m[i], v[i], S(grad_scale) * grads[i], S(lr), S(beta1), S(beta2), S(eps), wd,
                              bc1, bc2);
        });
    }
}

// ================================ the types each step is built for

// The whole model in both types (double: the checks; float: training on the CPU) ...
#define REFERENCE_MODEL(S)                                                                                             \
    template void reference_init(Reference<S>&, const Config&, int, int);                                             \
    template void reference_layers_forward(Reference<S>&, const S*, const int*, int, StateNoise);                     \
    template double reference_forward(Reference<S>&, const S*, const int*, StateNoise);                               \
    template void reference_backward(Reference<S>&, const S*, S*);                                                    \
    template double reference_grad_norm(const S*, size_t);                                                            \
    template void reference_adamw(const ParameterTable&, S*, const S*, S*, S*, int, double, double, double, double,  \
                                  double, double);
REFERENCE_MODEL(float)
REFERENCE_MODEL(double)
// the classifier of one position, for generation on the CPU (model/cpu_model.cpp)
template void matmul_forward(float*, const float*, const float*, int, int, int);
// the initial states of --state-noise as the CPU trainer draws them (the checks compare them with double's)
template void m2rnn_initial_state_fill(float*, StateNoise, int, const M2RNNLayout&, int);

// ... and each step alone in double, for the checks of the GPU kernels against it.
template void encoder_forward(double*, const double*, const int*, int, int, int);
template void encoder_backward(double*, const double*, const int*, int, int, int);
template void rmsnorm_forward(double*, double*, const double*, const double*, int, int);
template void rmsnorm_backward(double*, double*, const double*, const double*, const double*, const double*, int, int,
                               bool);
template void matmul_forward(double*, const double*, const double*, int, int, int);
template void matmul_backward(double*, double*, const double*, const double*, const double*, int, int, int);
template void residual_forward(double*, const double*, const double*, size_t);
template void swiglu_forward(double*, const double*, int, int);
template void swiglu_backward(double*, const double*, const double*, int, int);
template void m2rnn_input_forward(double*, double*, double*, const double*, const double*, const double*, const double*,
                                  const M2RNNLayout&, int, int);
template void m2rnn_input_backward(double*, double*, double*, double*, const double*, const double*, const double*,
                                   const double*, const double*, const double*, const double*, const M2RNNLayout&, int,
                                   int);
template void m2rnn_initial_state_fill(double*, StateNoise, int, const M2RNNLayout&, int);
template void m2rnn_scan_forward(double*, double*, double*, const double*, const double*, const double*, const double*,
                                 const M2RNNLayout&, int, int);
template void m2rnn_scan_backward(double*, double*, double*, const double*, const double*, const double*, const double*,
                                  const double*, const double*, const double*, double, const M2RNNLayout&, int, int);
template void m2rnn_gate_forward(double*, double*, double*, const double*, const double*, const double*, const double*,
                                 const double*, const M2RNNLayout&, int);
template void m2rnn_gate_backward(double*, double*, double*, double*, double*, const double*, const double*,
                                  const double*, const double*, const double*, const double*, const double*,
                                  const double*, const M2RNNLayout&, int);
template void rope_rotate_heads(double*, int, int, int, int, double);
template void attention_forward(double*, double*, const double*, int, int, int, int, bool);
template void attention_backward(double*, const double*, const double*, const double*, int, int, int, int, bool);
template double crossentropy_forward(double*, const double*, const int*, int, int, int, int);
template void crossentropy_backward(double*, const double*, const int*, int, int, int);
