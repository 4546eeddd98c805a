// The CPU reference: docs/model.md's model as plain loops in double precision.
//
// Reading order: the small steps (embedding, RMSNorm, matmul, residual, SwiGLU), the M²RNN mixer's steps (its
// input, the scan, its output gate), attention, cross-entropy, each backward beside its forward; then the
// model's forward and backward as straight sequences of those calls; last, the optimizer. The element-wise
// formulas (silu, the conv, the forget gate, the recurrence's step, RoPE, AdamW) come from model/model_math.h,
// which the GPU kernels call too.
#include "reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>

// ================================ embedding, RMSNorm, matmul, residual, SwiGLU ================================

// x[b,t,:] = wte[tokens[b,t], :]   (tokens of row b are tokens[b*(T+1) + t]; no positional embedding)
void encoder_forward(double* x, const double* wte, const int* tokens, int B, int T, int D) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            memcpy(x + ((size_t)b * T + t) * D, wte + (size_t)tokens[b * (T + 1) + t] * D, D * sizeof(double));
}

// dwte[tokens[b,t]] += dx[b,t].
void encoder_backward(double* dwte, const double* dx, const int* tokens, int B, int T, int D) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            double* row = dwte + (size_t)tokens[b * (T + 1) + t] * D;
            for (int i = 0; i < D; i++) row[i] += dx[((size_t)b * T + t) * D + i];
        }
}

// out = x·r ⊙ w with r = 1/sqrt(mean(x²) + eps), over the last dimension C, for each of n rows; keeps r.
void rmsnorm_forward(double* out, double* rstd, const double* x, const double* w, int n, int C) {
    for (int i = 0; i < n; i++) {
        const double* xi = x + (size_t)i * C;
        double ss = 0;
        for (int j = 0; j < C; j++) ss += xi[j] * xi[j];
        const double r = rmsnorm_rstd(ss, C);
        rstd[i] = r;
        for (int j = 0; j < C; j++) out[(size_t)i * C + j] = xi[j] * r * w[j];
    }
}

// dx = r (dout ⊙ w) − r³/C · x · Σ_j (dout ⊙ w ⊙ x)_j (+= into the residual stream when accumulate),
// dw += Σ_rows dout ⊙ x·r.
void rmsnorm_backward(double* dx, double* dw, const double* dout, const double* x, const double* w,
                      const double* rstd, int n, int C, bool accumulate) {
    for (int i = 0; i < n; i++) {
        const double* xi = x + (size_t)i * C;
        const double* di = dout + (size_t)i * C;
        const double r = rstd[i];
        double dot = 0;
        for (int j = 0; j < C; j++) dot += di[j] * w[j] * xi[j];
        const double factor = rmsnorm_dx_factor(r, dot, C);
        for (int j = 0; j < C; j++) {
            const double g = rmsnorm_dx(r, factor, di[j], w[j], xi[j]);
            dx[(size_t)i * C + j] = (accumulate ? dx[(size_t)i * C + j] : 0.0) + g;
            dw[j] += di[j] * xi[j] * r;
        }
    }
}

// out (n, O) = x (n, I) Wᵀ with W stored (O, I), PyTorch-style.
void matmul_forward(double* out, const double* x, const double* W, int n, int I, int O) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < O; o++) {
            double acc = 0;
            for (int j = 0; j < I; j++) acc += x[(size_t)i * I + j] * W[(size_t)o * I + j];
            out[(size_t)i * O + o] = acc;
        }
}

// For out = x Wᵀ: dx (n, I) = dout W (overwritten), dW (O, I) += doutᵀ x.
void matmul_backward(double* dx, double* dW, const double* dout, const double* x, const double* W, int n, int I,
                     int O) {
    // loops ordered so the innermost one walks memory contiguously
    for (int i = 0; i < n; i++) {
        double* dxi = dx + (size_t)i * I;
        for (int j = 0; j < I; j++) dxi[j] = 0;
        for (int o = 0; o < O; o++) {
            const double g = dout[(size_t)i * O + o];
            const double* Wo = W + (size_t)o * I;
            double* dWo = dW + (size_t)o * I;
            const double* xi = x + (size_t)i * I;
            for (int j = 0; j < I; j++) {
                dxi[j] += g * Wo[j];
                dWo[j] += g * xi[j];
            }
        }
    }
}

// out = a + b, elementwise (the residual connection). Its backward is the identity: the branch's gradient is the
// residual stream's, which is why the stream's gradient is accumulated rather than overwritten.
void residual_forward(double* out, const double* a, const double* b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// h = silu(a) ⊙ b where each row of up is [a (F) | b (F)].
void swiglu_forward(double* h, const double* up, int n, int F) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < F; j++)
            h[(size_t)i * F + j] = silu(up[(size_t)i * 2 * F + j]) * up[(size_t)i * 2 * F + F + j];
}

// dup = [dh ⊙ b ⊙ silu'(a) | dh ⊙ silu(a)].
void swiglu_backward(double* dup, const double* dh, const double* up, int n, int F) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < F; j++) {
            double a = up[(size_t)i * 2 * F + j], b = up[(size_t)i * 2 * F + F + j], g = dh[(size_t)i * F + j];
            dup[(size_t)i * 2 * F + j] = g * b * silu_grad(a);
            dup[(size_t)i * 2 * F + F + j] = g * silu(a);
        }
}

// ================================ the M²RNN mixer ================================

// x_{t−3} … x_t of channel c of sequence b (zero before t = 0): the conv's window at step t.
static void conv_window(double* window, const double* proj, int b, int T, int t, int c, int Cp) {
    for (int j = 0; j < CONV_WIDTH; j++) {
        const int s = t - (CONV_WIDTH - 1) + j;
        window[j] = s >= 0 ? proj[((size_t)b * T + s) * Cp + c] : 0.0;
    }
}

// The scan's inputs from in_proj's output: the causal conv + silu on the Cc channels [q | k | v], and the forget
// gates:
//   u_t[c] = Σ_j conv[c,j] x_{t−3+j}[c],   qkv = silu(u)
//   f_t,n = exp(−exp(A_log[n]) · softplus(f_raw_t,n + dt_bias[n]))
void m2rnn_input_forward(double* qkv, double* conv_pre, double* f, const double* proj, const double* conv,
                         const double* A_log, const double* dt_bias, const M2RNNLayout& L, int B, int T) {
    const int Cc = L.Cc(), Cp = L.Cp();
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const size_t pos = (size_t)b * T + t;
            for (int c = 0; c < Cc; c++) {
                double window[CONV_WIDTH];
                conv_window(window, proj, b, T, t, c, Cp);
                const double u = causal_conv(conv + c * CONV_WIDTH, window);
                conv_pre[pos * Cc + c] = u;
                qkv[pos * Cc + c] = silu(u);
            }
            for (int n = 0; n < L.N; n++)
                f[pos * L.N + n] = forget_gate(exp(A_log[n]), proj[pos * Cp + L.f_col(n)] + dt_bias[n]);
        }
}

// Backward: du_t = dqkv_t ⊙ silu'(u_t), then the conv's input gradient dx_s = Σ_j conv[c,j] du_{s+3−j} into dproj's
// q|k|v columns and dconv[c,j] += Σ_t du_t x_{t−3+j}; the forget gate's gradient into dproj's f_raw columns,
// ddt_bias and dA_log.
void m2rnn_input_backward(double* dproj, double* dconv, double* dA_log, double* ddt_bias, const double* dqkv,
                          const double* df, const double* conv_pre, const double* proj, const double* conv,
                          const double* A_log, const double* dt_bias, const M2RNNLayout& L, int B, int T) {
    const int Cc = L.Cc(), Cp = L.Cp();
    std::vector<double> du(T + CONV_WIDTH - 1);  // du_t of one channel, zero past the end
    for (int b = 0; b < B; b++)
        for (int c = 0; c < Cc; c++) {
            std::fill(du.begin(), du.end(), 0.0);
            for (int t = 0; t < T; t++) {
                const size_t o = ((size_t)b * T + t) * Cc + c;
                du[t] = dqkv[o] * silu_grad(conv_pre[o]);
            }
            for (int t = 0; t < T; t++) {
                double window[CONV_WIDTH];
                conv_window(window, proj, b, T, t, c, Cp);
                causal_conv_weight_grad(dconv + c * CONV_WIDTH, du[t], window);
                dproj[((size_t)b * T + t) * Cp + c] = causal_conv_input_grad(conv + c * CONV_WIDTH, &du[t]);
            }
        }
    for (size_t pos = 0; pos < (size_t)B * T; pos++)
        for (int n = 0; n < L.N; n++) {
            const ForgetGateGrad<double> g = forget_gate_backward(df[pos * L.N + n], exp(A_log[n]),
                                                                  proj[pos * Cp + L.f_col(n)] + dt_bias[n]);
            dproj[pos * Cp + L.f_col(n)] = g.dx;
            ddt_bias[n] += g.dx;
            dA_log[n] += g.dA_log;
        }
}

// The recurrence, for every batch row b and head n (q, k of the head's group), from H_{−1} = 0:
//   Z_t = tanh(H_{t−1} W_n + k_t v_tᵀ)          H (K×V), W_n (V×V), k_t v_tᵀ the outer product
//   H_t = f_t H_{t−1} + (1 − f_t) Z_t
//   y_t = H_tᵀ q_t                               (V), head n at columns n·V … of y
// H and Z are kept for the backward.
void m2rnn_scan_forward(double* y, double* H, double* Z, const double* qkv, const double* f, const double* W,
                        const M2RNNLayout& L, int B, int T) {
    const int K = L.K, V = L.V, KV = K * V, Cc = L.Cc();
    const std::vector<double> zero(KV, 0.0);
    for (int b = 0; b < B; b++)
        for (int n = 0; n < L.N; n++) {
            const double* Wn = W + (size_t)n * V * V;
            for (int t = 0; t < T; t++) {
                const size_t pos = (size_t)b * T + t, at = (((size_t)b * L.N + n) * T + t) * KV;
                const double *q = qkv + pos * Cc + L.q_col(n), *k = qkv + pos * Cc + L.k_col(n);
                const double* v = qkv + pos * Cc + L.v_col(n);
                const double* Hprev = t > 0 ? H + at - KV : zero.data();
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < V; j++) {
                        double a = k[i] * v[j];
                        for (int m = 0; m < V; m++) a += Hprev[i * V + m] * Wn[m * V + j];
                        const M2RNNStep<double> s = m2rnn_step_forward(a, Hprev[i * V + j], f[pos * L.N + n]);
                        Z[at + i * V + j] = s.z;
                        H[at + i * V + j] = s.h;
                    }
                for (int j = 0; j < V; j++) {
                    double acc = 0;
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
// dq and dk of a shared q/k head sum over the heads of its group.
void m2rnn_scan_backward(double* dqkv, double* df, double* dW, const double* dy, const double* qkv, const double* f,
                         const double* W, const double* H, const double* Z, double clip, const M2RNNLayout& L, int B,
                         int T) {
    const int K = L.K, V = L.V, KV = K * V, Cc = L.Cc();
    const std::vector<double> zero(KV, 0.0);
    std::vector<double> carry(KV), dA(KV);
    for (int b = 0; b < B; b++)
        for (int n = 0; n < L.N; n++) {
            const double* Wn = W + (size_t)n * V * V;
            double* dWn = dW + (size_t)n * V * V;
            std::fill(carry.begin(), carry.end(), 0.0);
            for (int t = T - 1; t >= 0; t--) {
                const size_t pos = (size_t)b * T + t, at = (((size_t)b * L.N + n) * T + t) * KV;
                const double *q = qkv + pos * Cc + L.q_col(n), *k = qkv + pos * Cc + L.k_col(n);
                const double* v = qkv + pos * Cc + L.v_col(n);
                double *dq = dqkv + pos * Cc + L.q_col(n), *dk = dqkv + pos * Cc + L.k_col(n);
                double* dv = dqkv + pos * Cc + L.v_col(n);
                const double *Ht = H + at, *Zt = Z + at, *Hprev = t > 0 ? H + at - KV : zero.data();
                const double* dyt = dy + pos * L.NV() + n * V;
                double dft = 0;
                for (int e = 0; e < KV; e++) {
                    const M2RNNStepGrad<double> g = m2rnn_step_backward(carry[e], clip, q[e / V], dyt[e % V], Zt[e],
                                                                        Hprev[e], f[pos * L.N + n]);
                    dA[e] = g.dA;
                    dft += g.df;
                    carry[e] = g.carry;
                }
                df[pos * L.N + n] = dft;
                for (int i = 0; i < K; i++) {
                    double acc_q = 0, acc_k = 0;
                    for (int j = 0; j < V; j++) {
                        acc_q += Ht[i * V + j] * dyt[j];
                        acc_k += dA[i * V + j] * v[j];
                    }
                    dq[i] += acc_q;
                    dk[i] += acc_k;
                }
                for (int j = 0; j < V; j++) {
                    double acc = 0;
                    for (int i = 0; i < K; i++) acc += dA[i * V + j] * k[i];
                    dv[j] += acc;
                }
                for (int m = 0; m < V; m++)
                    for (int j = 0; j < V; j++) {
                        double acc = 0;
                        for (int i = 0; i < K; i++) acc += Hprev[i * V + m] * dA[i * V + j];
                        dWn[m * V + j] += acc;
                    }
                for (int i = 0; i < K; i++)  // C_{t−1} = f_t G_t (in carry) + dA_t W_nᵀ
                    for (int m = 0; m < V; m++) {
                        double acc = 0;
                        for (int j = 0; j < V; j++) acc += dA[i * V + j] * Wn[m * V + j];
                        carry[i * V + m] += acc;
                    }
            }
        }
}

// The output gate and its norm, per position over the whole N·V vector (v and g read from qkv and proj):
//   gated = (y + D_skip ⊙ v) ⊙ silu(g),   out = gated·r ⊙ gnorm (rmsnorm_forward)
void m2rnn_gate_forward(double* out, double* rstd, double* gated, const double* y, const double* qkv,
                        const double* proj, const double* skip, const double* gnorm, const M2RNNLayout& L, int n_pos) {
    const int NV = L.NV(), Cc = L.Cc(), Cp = L.Cp(), v0 = L.v_col(0), g0 = L.g_col(0);
    for (int i = 0; i < n_pos; i++)
        for (int j = 0; j < NV; j++)
            gated[(size_t)i * NV + j] = m2rnn_gated(y[(size_t)i * NV + j], skip[j], qkv[(size_t)i * Cc + v0 + j],
                                                    proj[(size_t)i * Cp + g0 + j]);
    rmsnorm_forward(out, rstd, gated, gnorm, n_pos, NV);
}

// Backward: dgated from the norm (dgnorm +=), then with y2 = y + D_skip ⊙ v:
//   dy = dgated ⊙ silu(g),  dg = dgated ⊙ y2 ⊙ silu'(g),  dv += dy ⊙ D_skip,  dD_skip += Σ dy ⊙ v
void m2rnn_gate_backward(double* dy, double* dqkv, double* dproj, double* dskip, double* dgnorm, const double* dout,
                         const double* y, const double* qkv, const double* proj, const double* skip,
                         const double* gnorm, const double* gated, const double* rstd, const M2RNNLayout& L,
                         int n_pos) {
    const int NV = L.NV(), Cc = L.Cc(), Cp = L.Cp(), v0 = L.v_col(0), g0 = L.g_col(0);
    std::vector<double> dgated((size_t)n_pos * NV);
    rmsnorm_backward(dgated.data(), dgnorm, dout, gated, gnorm, rstd, n_pos, NV, false);
    for (int i = 0; i < n_pos; i++)
        for (int j = 0; j < NV; j++) {
            const double v = qkv[(size_t)i * Cc + v0 + j];
            const M2RNNGatedGrad<double> d = m2rnn_gated_backward(dgated[(size_t)i * NV + j], y[(size_t)i * NV + j],
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
void rope_rotate_heads(double* qkv, int B, int T, int D, int heads, double sign) {
    const int hd = D / heads;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int part = 0; part < 2; part++)
                for (int h = 0; h < heads; h++) {
                    double* x = qkv + ((size_t)b * T + t) * 3 * D + part * D + h * hd;
                    for (int i = 0; i < hd / 2; i++) {
                        const double angle = rope_angle(t, i, hd);
                        rope_rotate(x[i], x[i + hd / 2], cos(angle), sign * sin(angle));
                    }
                }
}

// Causal softmax attention per head, after RoPE on q and k when `rope`:
//   p[t,s] = softmax_{s<=t}(q_t·k_s / sqrt(hd)),   y_t = Σ_s p[t,s] v_s
// qkv (B,T,3D) rows [q | k | v], unrotated; prob (B,heads,T,T), zero above the diagonal; y (B,T,D).
void attention_forward(double* y, double* prob, const double* qkv_in, int B, int T, int D, int heads, bool rope) {
    std::vector<double> rotated(qkv_in, qkv_in + (size_t)B * T * 3 * D);
    if (rope) rope_rotate_heads(rotated.data(), B, T, D, heads, +1.0);
    const double* qkv = rotated.data();
    const int hd = D / heads;
    const double scale = 1.0 / sqrt((double)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < heads; h++)
            for (int t = 0; t < T; t++) {
                const double* q = qkv + ((size_t)b * T + t) * 3 * D + h * hd;
                double* p = prob + (((size_t)b * heads + h) * T + t) * T;
                double maxv = -INFINITY;
                for (int s = 0; s <= t; s++) {
                    const double* k = qkv + ((size_t)b * T + s) * 3 * D + D + h * hd;
                    double dot = 0;
                    for (int i = 0; i < hd; i++) dot += q[i] * k[i];
                    p[s] = dot * scale;
                    maxv = std::max(maxv, p[s]);
                }
                double sum = 0;
                for (int s = 0; s <= t; s++) { p[s] = exp(p[s] - maxv); sum += p[s]; }
                for (int s = 0; s <= t; s++) p[s] /= sum;
                for (int s = t + 1; s < T; s++) p[s] = 0;
                double* yt = y + ((size_t)b * T + t) * D + h * hd;
                for (int i = 0; i < hd; i++) {
                    double acc = 0;
                    for (int s = 0; s <= t; s++) acc += p[s] * qkv[((size_t)b * T + s) * 3 * D + 2 * D + h * hd + i];
                    yt[i] = acc;
                }
            }
}

// Backward, on q and k rotated again as the forward rotated them: dp[t,s] = dy_t·v_s, dv_s += p[t,s] dy_t,
// δ_t = Σ_s p[t,s] dp[t,s], ds = p ⊙ (dp − δ_t), dq_t += Σ_s ds[t,s] k_s / sqrt(hd), dk_s += ds[t,s] q_t / sqrt(hd);
// then dq and dk rotated back (RoPE is a rotation: its backward is the inverse rotation).
void attention_backward(double* dqkv, const double* dy, const double* qkv_in, const double* prob, int B, int T, int D,
                        int heads, bool rope) {
    std::vector<double> rotated(qkv_in, qkv_in + (size_t)B * T * 3 * D);
    if (rope) rope_rotate_heads(rotated.data(), B, T, D, heads, +1.0);
    const double* qkv = rotated.data();
    const int hd = D / heads;
    const double scale = 1.0 / sqrt((double)hd);
    std::vector<double> dp(T);
    memset(dqkv, 0, sizeof(double) * B * T * 3 * D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < heads; h++)
            for (int t = 0; t < T; t++) {
                const double* p = prob + (((size_t)b * heads + h) * T + t) * T;
                const double* dyt = dy + ((size_t)b * T + t) * D + h * hd;
                double delta = 0;
                for (int s = 0; s <= t; s++) {
                    const double* v = qkv + ((size_t)b * T + s) * 3 * D + 2 * D + h * hd;
                    double* dv = dqkv + ((size_t)b * T + s) * 3 * D + 2 * D + h * hd;
                    double acc = 0;
                    for (int i = 0; i < hd; i++) { acc += dyt[i] * v[i]; dv[i] += p[s] * dyt[i]; }
                    dp[s] = acc;
                    delta += p[s] * acc;
                }
                const double* q = qkv + ((size_t)b * T + t) * 3 * D + h * hd;
                double* dq = dqkv + ((size_t)b * T + t) * 3 * D + h * hd;
                for (int s = 0; s <= t; s++) {
                    double ds = p[s] * (dp[s] - delta) * scale;
                    const double* k = qkv + ((size_t)b * T + s) * 3 * D + D + h * hd;
                    double* dk = dqkv + ((size_t)b * T + s) * 3 * D + D + h * hd;
                    for (int i = 0; i < hd; i++) { dq[i] += ds * k[i]; dk[i] += ds * q[i]; }
                }
            }
    if (rope) rope_rotate_heads(dqkv, B, T, D, heads, -1.0);
}

// ================================ the loss ================================

// Softmax over the first `vocab` of Vp columns (padded columns get probability 0) and the mean
// cross-entropy over all B·T positions; the target of position (b, t) is tokens[b·(T+1) + t + 1].
double crossentropy_forward(double* probs, const double* logits, const int* tokens, int B, int T, int vocab, int Vp) {
    const int n = B * T;
    double loss = 0;
    for (int i = 0; i < n; i++) {
        const double* z = logits + (size_t)i * Vp;
        double* p = probs + (size_t)i * Vp;
        double maxv = -INFINITY;
        for (int j = 0; j < vocab; j++) maxv = std::max(maxv, z[j]);
        double sum = 0;
        for (int j = 0; j < vocab; j++) { p[j] = exp(z[j] - maxv); sum += p[j]; }
        for (int j = 0; j < vocab; j++) p[j] /= sum;
        for (int j = vocab; j < Vp; j++) p[j] = 0;
        loss -= log(p[tokens[i + i / T + 1]]);  // i = b·T + t → b·(T+1) + t + 1
    }
    return loss / n;
}

// dlogits = (probs − onehot(target)) / (B·T) on the real columns, 0 on the padded ones.
void crossentropy_backward(double* dlogits, const double* probs, const int* tokens, int B, int T, int Vp) {
    const int n = B * T;
    for (int i = 0; i < n; i++) {
        const int target = tokens[i + i / T + 1];
        for (int j = 0; j < Vp; j++) dlogits[(size_t)i * Vp + j] = (probs[(size_t)i * Vp + j] - (j == target)) / n;
    }
}

// ================================ the model ================================

void reference_init(Reference& m, const Config& c, int B, int T) {
    m.c = c;
    m.table = parameter_table_build(c);
    m.B = B;
    m.T = T;
    const size_t BT = (size_t)B * T;
    const M2RNNLayout L = config_m2rnn_layout(c);
    m.tokens.assign((size_t)B * (T + 1), 0);
    m.layers.assign(c.L, ReferenceLayer());
    for (int l = 0; l < c.L; l++) {
        ReferenceLayer& a = m.layers[l];
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
    m.logits.assign(BT * c.Vp, 0);
    m.probs.assign(BT * c.Vp, 0);
    m.loss = 0;
}

double reference_forward(Reference& m, const double* params, const int* tokens) {
    const Config& c = m.c;
    const int B = m.B, T = m.T, BT = B * T, D = c.D;
    const M2RNNLayout L = config_m2rnn_layout(c);
    const ParameterTable& pt = m.table;
    m.tokens.assign(tokens, tokens + (size_t)B * (T + 1));
    auto P = [&](int l, ParamKind kind) { return params + param_offset(pt, l, kind); };

    std::vector<double> x((size_t)BT * D), mlp_out((size_t)BT * D);
    encoder_forward(x.data(), params + pt.tensors[pt.wte].offset, tokens, B, T, D);
    for (int l = 0; l < c.L; l++) {
        ReferenceLayer& a = m.layers[l];
        a.residual = x;
        rmsnorm_forward(a.ln1.data(), a.ln1_rstd.data(), x.data(), P(l, P_LN1), BT, D);
        if (c.pattern[l] == 'M') {
            matmul_forward(a.proj.data(), a.ln1.data(), P(l, P_IN_PROJ), BT, D, L.Cp());
            m2rnn_input_forward(a.qkv.data(), a.conv_pre.data(), a.forget.data(), a.proj.data(), P(l, P_CONV),
                                P(l, P_A_LOG), P(l, P_DT_BIAS), L, B, T);
            m2rnn_scan_forward(a.scan_y.data(), a.state.data(), a.tanh_z.data(), a.qkv.data(), a.forget.data(),
                               P(l, P_W), L, B, T);
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
    matmul_forward(m.logits.data(), m.lnf.data(), params + pt.tensors[pt.lm_head].offset, BT, D, c.Vp);
    m.loss = crossentropy_forward(m.probs.data(), m.logits.data(), tokens, B, T, c.vocab, c.Vp);
    return m.loss;
}

void reference_backward(Reference& m, const double* params, double* grads) {
    const Config& c = m.c;
    const int B = m.B, T = m.T, BT = B * T, D = c.D;
    const M2RNNLayout L = config_m2rnn_layout(c);
    const ParameterTable& pt = m.table;
    auto P = [&](int l, ParamKind kind) { return params + param_offset(pt, l, kind); };
    auto G = [&](int l, ParamKind kind) { return grads + param_offset(pt, l, kind); };

    std::vector<double> dlogits((size_t)BT * c.Vp), dlnf((size_t)BT * D), dx((size_t)BT * D);
    crossentropy_backward(dlogits.data(), m.probs.data(), m.tokens.data(), B, T, c.Vp);
    matmul_backward(dlnf.data(), grads + pt.tensors[pt.lm_head].offset, dlogits.data(), m.lnf.data(),
                    params + pt.tensors[pt.lm_head].offset, BT, D, c.Vp);
    rmsnorm_backward(dx.data(), grads + pt.tensors[pt.lnf].offset, dlnf.data(), m.final_residual.data(),
                     params + pt.tensors[pt.lnf].offset, m.lnf_rstd.data(), BT, D, false);

    // dx is the gradient of the residual stream; each block adds its branch's gradient to it, and a branch's
    // output joined the stream unchanged, so dx is also the gradient of the branch's output.
    std::vector<double> dln((size_t)BT * D), dswiglu((size_t)BT * c.F), dup((size_t)BT * 2 * c.F);
    for (int l = c.L - 1; l >= 0; l--) {
        ReferenceLayer& a = m.layers[l];
        matmul_backward(dswiglu.data(), G(l, P_DOWN), dx.data(), a.swiglu.data(), P(l, P_DOWN), BT, c.F, D);
        swiglu_backward(dup.data(), dswiglu.data(), a.up.data(), BT, c.F);
        matmul_backward(dln.data(), G(l, P_UP), dup.data(), a.ln2.data(), P(l, P_UP), BT, D, 2 * c.F);
        rmsnorm_backward(dx.data(), G(l, P_LN2), dln.data(), a.residual2.data(), P(l, P_LN2), a.ln2_rstd.data(), BT, D,
                         true);
        if (c.pattern[l] == 'M') {
            std::vector<double> dgnorm_out((size_t)BT * L.NV()), dscan_y((size_t)BT * L.NV());
            std::vector<double> dproj((size_t)BT * L.Cp()), dqkv((size_t)BT * L.Cc(), 0.0), dforget((size_t)BT * c.N);
            matmul_backward(dgnorm_out.data(), G(l, P_OUT_PROJ), dx.data(), a.gnorm_out.data(), P(l, P_OUT_PROJ), BT,
                            L.NV(), D);
            m2rnn_gate_backward(dscan_y.data(), dqkv.data(), dproj.data(), G(l, P_SKIP), G(l, P_GNORM),
                                dgnorm_out.data(), a.scan_y.data(), a.qkv.data(), a.proj.data(), P(l, P_SKIP),
                                P(l, P_GNORM), a.gated.data(), a.gnorm_rstd.data(), L, BT);
            m2rnn_scan_backward(dqkv.data(), dforget.data(), G(l, P_W), dscan_y.data(), a.qkv.data(), a.forget.data(),
                                P(l, P_W), a.state.data(), a.tanh_z.data(), c.clip, L, B, T);
            m2rnn_input_backward(dproj.data(), G(l, P_CONV), G(l, P_A_LOG), G(l, P_DT_BIAS), dqkv.data(),
                                 dforget.data(), a.conv_pre.data(), a.proj.data(), P(l, P_CONV), P(l, P_A_LOG),
                                 P(l, P_DT_BIAS), L, B, T);
            matmul_backward(dln.data(), G(l, P_IN_PROJ), dproj.data(), a.ln1.data(), P(l, P_IN_PROJ), BT, D, L.Cp());
        } else {
            std::vector<double> dattn_y((size_t)BT * D), dattn_qkv((size_t)BT * 3 * D);
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

// ================================ the optimizer ================================

double reference_grad_norm(const double* grads, size_t n) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += grads[i] * grads[i];
    return sqrt(ss);
}

// AdamW (model_math.h: adamw_element) on every element, g = grad_scale · grad, weight decay only on the tensors
// the table flags.
void reference_adamw(const ParameterTable& t, double* params, const double* grads, double* m, double* v, int step,
                     double lr, double beta1, double beta2, double eps, double weight_decay, double grad_scale) {
    const double bc1 = 1.0 - pow(beta1, step), bc2 = 1.0 - pow(beta2, step);
    for (const ParamTensor& p : t.tensors) {
        const double wd = p.decay ? weight_decay : 0.0;
        for (size_t i = p.offset; i < p.offset + p.numel; i++)
            adamw_element(params[i], m[i], v[i], grad_scale * grads[i], lr, beta1, beta2, eps, wd, bc1, bc2);
    }
}
