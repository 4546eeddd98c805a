// The CPU reference: DESIGN.md's model as plain loops in double precision.
//
// Reading order: the small forward steps (embedding, RMSNorm, matmul, SwiGLU), the M²RNN mixer steps
// (causal conv + silu, forget gate, the scan, the output gate), the attention steps (RoPE, causal
// softmax attention), cross-entropy; then the same steps backward; then the model's forward and
// backward as straight sequences of those calls; last, the optimizer.
#include "reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>

static const double RMSNORM_EPS = 1e-5;

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }
static double silu(double x) { return x * sigmoid(x); }
static double silu_grad(double x) { double s = sigmoid(x); return s * (1.0 + x * (1.0 - s)); }
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

// ================================ forward steps ================================

// x[b,t,:] = wte[tokens[b,t], :]   (tokens of row b are tokens[b*(T+1) + t])
void encoder_forward(double* x, const double* wte, const int* tokens, int B, int T, int D) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            memcpy(x + ((size_t)b * T + t) * D, wte + (size_t)tokens[b * (T + 1) + t] * D, D * sizeof(double));
}

// out = x / sqrt(mean(x²) + eps) ⊙ w, over the last dimension C, for each of n rows; keeps 1/rms.
void rmsnorm_forward(double* out, double* rstd, const double* x, const double* w, int n, int C) {
    for (int i = 0; i < n; i++) {
        const double* xi = x + (size_t)i * C;
        double ss = 0;
        for (int j = 0; j < C; j++) ss += xi[j] * xi[j];
        double r = 1.0 / sqrt(ss / C + RMSNORM_EPS);
        rstd[i] = r;
        for (int j = 0; j < C; j++) out[(size_t)i * C + j] = xi[j] * r * w[j];
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

// out = a + b, elementwise (the residual connection).
void residual_forward(double* out, const double* a, const double* b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

// h = silu(a) ⊙ b where each row of up is [a (F) | b (F)].
void swiglu_forward(double* h, const double* up, int n, int F) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < F; j++)
            h[(size_t)i * F + j] = silu(up[(size_t)i * 2 * F + j]) * up[(size_t)i * 2 * F + F + j];
}

// M²RNN step 1, the short causal conv over time on the first Cc channels of proj (row stride Cp),
// depthwise with kernel 4 and no bias, then silu:
//   u_t[c] = Σ_{j=0..3} conv[c,j] · x_{t-3+j}[c]   (x before t = 0 is 0),   out_t[c] = silu(u_t[c])
void causal_conv_silu_forward(double* pre, double* out, const double* proj, const double* conv, int B, int T,
                                     int Cp, int Cc) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < Cc; c++) {
                double u = 0;
                for (int j = 0; j < 4; j++) {
                    int ts = t - 3 + j;
                    if (ts >= 0) u += conv[c * 4 + j] * proj[((size_t)b * T + ts) * Cp + c];
                }
                size_t o = ((size_t)b * T + t) * Cc + c;
                pre[o] = u;
                out[o] = silu(u);
            }
}

// M²RNN step 2, the forget gate: f_t,n = exp(-exp(A_log[n]) · softplus(f_raw_t,n + dt_bias[n])) in (0,1).
// f_raw is read from proj with row stride Cp; f is (n_pos, N).
void forget_gate_forward(double* f, const double* f_raw, int Cp, const double* A_log, const double* dt_bias,
                                int n_pos, int N) {
    for (int i = 0; i < n_pos; i++)
        for (int n = 0; n < N; n++)
            f[(size_t)i * N + n] = exp(-exp(A_log[n]) * softplus(f_raw[(size_t)i * Cp + n] + dt_bias[n]));
}

// M²RNN step 3, the recurrence of one head over one sequence, from H_{-1} = 0:
//   Z_t = tanh(H_{t-1} W + k_t v_tᵀ)          H (K×V), W (V×V), k_t v_tᵀ the outer product
//   H_t = f_t H_{t-1} + (1 - f_t) Z_t
//   y_t = H_tᵀ q_t                             (V)
void m2rnn_scan_forward(const ScanView& s, const double* W, double* H, double* Z, double* y, int sy) {
    const int K = s.K, V = s.V, KV = K * V;
    for (int t = 0; t < s.T; t++) {
        const double* Hprev = t > 0 ? H + (size_t)(t - 1) * KV : nullptr;
        double* Ht = H + (size_t)t * KV;
        double* Zt = Z + (size_t)t * KV;
        const double* q = s.q + (size_t)t * s.sq;
        const double* k = s.k + (size_t)t * s.sk;
        const double* v = s.v + (size_t)t * s.sv;
        const double f = s.f[(size_t)t * s.sf];
        for (int i = 0; i < K; i++)
            for (int j = 0; j < V; j++) {
                double a = k[i] * v[j];
                if (Hprev)
                    for (int m = 0; m < V; m++) a += Hprev[i * V + m] * W[m * V + j];
                Zt[i * V + j] = tanh(a);
                Ht[i * V + j] = (Hprev ? f * Hprev[i * V + j] : 0.0) + (1.0 - f) * Zt[i * V + j];
            }
        for (int j = 0; j < V; j++) {
            double acc = 0;
            for (int i = 0; i < K; i++) acc += Ht[i * V + j] * q[i];
            y[(size_t)t * sy + j] = acc;
        }
    }
}

// M²RNN step 4, the output gate: y ← y + D ⊙ v (per head), gated = y ⊙ silu(g). The RMSNorm with
// gnorm over the whole N·V vector follows as an ordinary rmsnorm_forward.
void m2rnn_gate_forward(double* gated, double* y, const double* v, int sv, const double* g, int sg,
                               const double* Dskip, int n_pos, int NV) {
    for (int i = 0; i < n_pos; i++)
        for (int j = 0; j < NV; j++) {
            double* yi = y + (size_t)i * NV + j;
            *yi += Dskip[j] * v[(size_t)i * sv + j];
            gated[(size_t)i * NV + j] = *yi * silu(g[(size_t)i * sg + j]);
        }
}

// RoPE, rotate-half convention, in place on one head vector x (hd) at position t:
//   x₁ = x[:hd/2], x₂ = x[hd/2:], ω_i = 10000^(-2i/hd):  [x₁ cos(tω) − x₂ sin(tω), x₂ cos(tω) + x₁ sin(tω)]
// sign = -1 applies the inverse rotation (used by the backward).
static void rope_rotate(double* x, int hd, int t, double sign) {
    for (int i = 0; i < hd / 2; i++) {
        double w = pow(10000.0, -2.0 * i / hd);
        double c = cos(t * w), s = sign * sin(t * w);
        double x1 = x[i], x2 = x[i + hd / 2];
        x[i] = x1 * c - x2 * s;
        x[i + hd / 2] = x2 * c + x1 * s;
    }
}

// Applies RoPE to the q and k parts of every row of qkv (B,T,3D), each head separately.
void rope_forward(double* qkv, int B, int T, int D, int heads) {
    const int hd = D / heads;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int part = 0; part < 2; part++)
                for (int h = 0; h < heads; h++)
                    rope_rotate(qkv + ((size_t)b * T + t) * 3 * D + part * D + h * hd, hd, t, +1.0);
}

// Causal softmax attention per head: p[t,s] = softmax_{s<=t}(q_t·k_s / sqrt(hd)), y_t = Σ_s p[t,s] v_s.
// qkv (B,T,3D) rows [q | k | v]; prob (B,heads,T,T), zero above the diagonal; y (B,T,D).
void attention_forward(double* y, double* prob, const double* qkv, int B, int T, int D, int heads) {
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

// ================================ backward steps ================================

// dlogits = (probs − onehot(target)) / (B·T) on the real columns, 0 on the padded ones.
void crossentropy_backward(double* dlogits, const double* probs, const int* tokens, int B, int T, int Vp) {
    const int n = B * T;
    for (int i = 0; i < n; i++) {
        const int target = tokens[i + i / T + 1];
        for (int j = 0; j < Vp; j++) dlogits[(size_t)i * Vp + j] = (probs[(size_t)i * Vp + j] - (j == target)) / n;
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

// For out = x r ⊙ w with r = 1/sqrt(mean(x²)+eps): dx (+= into the residual stream when accumulate),
// dw += Σ_rows dout ⊙ x r.
//   dx = r (dout ⊙ w) − r³/C · x · Σ_j (dout ⊙ w ⊙ x)_j
void rmsnorm_backward(double* dx, double* dw, const double* dout, const double* x, const double* w,
                             const double* rstd, int n, int C, bool accumulate) {
    for (int i = 0; i < n; i++) {
        const double* xi = x + (size_t)i * C;
        const double* di = dout + (size_t)i * C;
        double r = rstd[i];
        double dot = 0;
        for (int j = 0; j < C; j++) dot += di[j] * w[j] * xi[j];
        for (int j = 0; j < C; j++) {
            double g = r * di[j] * w[j] - r * r * r / C * xi[j] * dot;
            dx[(size_t)i * C + j] = (accumulate ? dx[(size_t)i * C + j] : 0.0) + g;
            dw[j] += di[j] * xi[j] * r;
        }
    }
}

// For h = silu(a) ⊙ b: dup = [dh ⊙ b ⊙ silu'(a) | dh ⊙ silu(a)].
void swiglu_backward(double* dup, const double* dh, const double* up, int n, int F) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < F; j++) {
            double a = up[(size_t)i * 2 * F + j], b = up[(size_t)i * 2 * F + F + j], g = dh[(size_t)i * F + j];
            dup[(size_t)i * 2 * F + j] = g * b * silu_grad(a);
            dup[(size_t)i * 2 * F + F + j] = g * silu(a);
        }
}

// Backward of the output gate. From dgated: dy = dgated ⊙ silu(g) (the gradient into the scan output and
// into the D skip), dg = dgated ⊙ y ⊙ silu'(g) (y here is y + D ⊙ v), dv += dy ⊙ D, dD += Σ dy ⊙ v.
void m2rnn_gate_backward(double* dy, double* dv, int sdv, double* dg, int sdg, double* dD,
                                const double* dgated, const double* y, const double* v, int sv, const double* g,
                                int sg, const double* Dskip, int n_pos, int NV) {
    for (int i = 0; i < n_pos; i++)
        for (int j = 0; j < NV; j++) {
            double gi = g[(size_t)i * sg + j], dgt = dgated[(size_t)i * NV + j];
            double d = dgt * silu(gi);
            dy[(size_t)i * NV + j] = d;
            dg[(size_t)i * sdg + j] = dgt * y[(size_t)i * NV + j] * silu_grad(gi);
            dv[(size_t)i * sdv + j] += d * Dskip[j];
            dD[j] += d * v[(size_t)i * sv + j];
        }
}

// Backward of the recurrence (see m2rnn_scan_forward), from t = T−1 down to 0. G_t = ∂L/∂H_t:
//   G_t = q_t dy_tᵀ + clamp(C_t, −c, c)            C_{T−1} = 0; no clamp when c = 0
//   dq_t = H_t dy_t
//   dA_t = ((1 − f_t) G_t) ⊙ (1 − Z_t²)            the gradient at the tanh's input
//   df_t = Σ G_t ⊙ (H_{t−1} − Z_t),   dW += H_{t−1}ᵀ dA_t,   dk_t = dA_t v_t,   dv_t = dA_tᵀ k_t
//   C_{t−1} = f_t G_t + dA_t Wᵀ                     the carry into the step before
void m2rnn_scan_backward(const ScanView& s, const double* W, const double* H, const double* Z, const double* dy,
                         int sdy, double clip, double* dq, double* dk, double* dv, double* df, double* dW) {
    const int K = s.K, V = s.V, KV = K * V;
    std::vector<double> C(KV, 0.0), G(KV), dA(KV);
    for (int t = s.T - 1; t >= 0; t--) {
        const double* Ht = H + (size_t)t * KV;
        const double* Hprev = t > 0 ? H + (size_t)(t - 1) * KV : nullptr;
        const double* Zt = Z + (size_t)t * KV;
        const double* q = s.q + (size_t)t * s.sq;
        const double* k = s.k + (size_t)t * s.sk;
        const double* v = s.v + (size_t)t * s.sv;
        const double f = s.f[(size_t)t * s.sf];
        const double* dyt = dy + (size_t)t * sdy;
        for (int i = 0; i < K; i++)
            for (int j = 0; j < V; j++) {
                double carry = clip > 0 ? std::min(clip, std::max(-clip, C[i * V + j])) : C[i * V + j];
                G[i * V + j] = q[i] * dyt[j] + carry;
            }
        double dft = 0;
        for (int i = 0; i < K; i++) {
            double acc = 0;
            for (int j = 0; j < V; j++) {
                acc += Ht[i * V + j] * dyt[j];
                double z = Zt[i * V + j];
                dA[i * V + j] = (1.0 - f) * G[i * V + j] * (1.0 - z * z);
                dft += G[i * V + j] * ((Hprev ? Hprev[i * V + j] : 0.0) - z);
            }
            dq[(size_t)t * s.sq + i] += acc;
        }
        df[(size_t)t * s.sf] += dft;
        if (Hprev)
            for (int m = 0; m < V; m++)
                for (int j = 0; j < V; j++) {
                    double acc = 0;
                    for (int i = 0; i < K; i++) acc += Hprev[i * V + m] * dA[i * V + j];
                    dW[m * V + j] += acc;
                }
        for (int i = 0; i < K; i++) {
            double acc = 0;
            for (int j = 0; j < V; j++) acc += dA[i * V + j] * v[j];
            dk[(size_t)t * s.sk + i] += acc;
        }
        for (int j = 0; j < V; j++) {
            double acc = 0;
            for (int i = 0; i < K; i++) acc += dA[i * V + j] * k[i];
            dv[(size_t)t * s.sv + j] += acc;
        }
        for (int i = 0; i < K; i++)
            for (int m = 0; m < V; m++) {
                double acc = f * G[i * V + m];
                for (int j = 0; j < V; j++) acc += dA[i * V + j] * W[m * V + j];
                C[i * V + m] = acc;
            }
    }
}

// For f = exp(−a · softplus(r + b)) with a = exp(A_log): ∂f/∂r = ∂f/∂b = −a · f · σ(r + b),
// ∂f/∂A_log = −a · f · softplus(r + b). df_raw is written into the f_raw columns of dproj.
void forget_gate_backward(double* df_raw, int sdf_raw, double* dA_log, double* ddt_bias, const double* df,
                                 const double* f, const double* f_raw, int Cp, const double* A_log,
                                 const double* dt_bias, int n_pos, int N) {
    for (int i = 0; i < n_pos; i++)
        for (int n = 0; n < N; n++) {
            double x = f_raw[(size_t)i * Cp + n] + dt_bias[n];
            double a = exp(A_log[n]);
            double g = df[(size_t)i * N + n] * f[(size_t)i * N + n];
            double dr = -a * g * sigmoid(x);
            df_raw[(size_t)i * sdf_raw + n] = dr;
            ddt_bias[n] += dr;
            dA_log[n] += -a * g * softplus(x);
        }
}

// Backward of silu(causal_conv(x)): du = dout ⊙ silu'(u); dx_{t−3+j} += conv[c,j] du_t; dconv[c,j] += du_t x_{t−3+j}.
// dproj's first Cc columns are overwritten.
void causal_conv_silu_backward(double* dproj, double* dconv, const double* dout, const double* pre,
                                      const double* proj, const double* conv, int B, int T, int Cp, int Cc) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++)
            for (int c = 0; c < Cc; c++) dproj[((size_t)b * T + t) * Cp + c] = 0;
        for (int t = 0; t < T; t++)
            for (int c = 0; c < Cc; c++) {
                size_t o = ((size_t)b * T + t) * Cc + c;
                double du = dout[o] * silu_grad(pre[o]);
                for (int j = 0; j < 4; j++) {
                    int ts = t - 3 + j;
                    if (ts < 0) continue;
                    dproj[((size_t)b * T + ts) * Cp + c] += conv[c * 4 + j] * du;
                    dconv[c * 4 + j] += du * proj[((size_t)b * T + ts) * Cp + c];
                }
            }
    }
}

// Backward of causal attention: dp[t,s] = dy_t·v_s, dv_s += p[t,s] dy_t,
// ds = p ⊙ (dp − Σ_s p dp), dq_t += Σ_s ds[t,s] k_s / sqrt(hd), dk_s += ds[t,s] q_t / sqrt(hd).
void attention_backward(double* dqkv, const double* dy, const double* qkv, const double* prob, int B, int T,
                               int D, int heads) {
    const int hd = D / heads;
    const double scale = 1.0 / sqrt((double)hd);
    std::vector<double> dp(T);
    memset(dqkv, 0, sizeof(double) * B * T * 3 * D);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < heads; h++)
            for (int t = 0; t < T; t++) {
                const double* p = prob + (((size_t)b * heads + h) * T + t) * T;
                const double* dyt = dy + ((size_t)b * T + t) * D + h * hd;
                double sum = 0;
                for (int s = 0; s <= t; s++) {
                    const double* v = qkv + ((size_t)b * T + s) * 3 * D + 2 * D + h * hd;
                    double* dv = dqkv + ((size_t)b * T + s) * 3 * D + 2 * D + h * hd;
                    double acc = 0;
                    for (int i = 0; i < hd; i++) { acc += dyt[i] * v[i]; dv[i] += p[s] * dyt[i]; }
                    dp[s] = acc;
                    sum += p[s] * acc;
                }
                const double* q = qkv + ((size_t)b * T + t) * 3 * D + h * hd;
                double* dq = dqkv + ((size_t)b * T + t) * 3 * D + h * hd;
                for (int s = 0; s <= t; s++) {
                    double ds = p[s] * (dp[s] - sum) * scale;
                    const double* k = qkv + ((size_t)b * T + s) * 3 * D + D + h * hd;
                    double* dk = dqkv + ((size_t)b * T + s) * 3 * D + D + h * hd;
                    for (int i = 0; i < hd; i++) { dq[i] += ds * k[i]; dk[i] += ds * q[i]; }
                }
            }
}

// RoPE is a rotation, so its backward rotates the gradients of q and k back by −tω.
void rope_backward(double* dqkv, int B, int T, int D, int heads) {
    const int hd = D / heads;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int part = 0; part < 2; part++)
                for (int h = 0; h < heads; h++)
                    rope_rotate(dqkv + ((size_t)b * T + t) * 3 * D + part * D + h * hd, hd, t, -1.0);
}

// dwte[tokens[b,t]] += dx[b,t].
void encoder_backward(double* dwte, const double* dx, const int* tokens, int B, int T, int D) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            double* row = dwte + (size_t)tokens[b * (T + 1) + t] * D;
            for (int i = 0; i < D; i++) row[i] += dx[((size_t)b * T + t) * D + i];
        }
}

// ================================ the model ================================

void reference_init(Reference& m, const Config& c, int B, int T) {
    m.c = c;
    m.table = parameter_table_build(c);
    m.B = B;
    m.T = T;
    const size_t BT = (size_t)B * T;
    const int Cp = config_inproj_rows(c), Cc = config_conv_channels(c), NV = c.N * c.V;
    m.tokens.assign((size_t)B * (T + 1), 0);
    m.layers.assign(c.L, ReferenceLayer());
    for (int l = 0; l < c.L; l++) {
        ReferenceLayer& a = m.layers[l];
        a.residual.assign(BT * c.D, 0);
        a.ln1.assign(BT * c.D, 0);
        a.ln1_rstd.assign(BT, 0);
        if (c.pattern[l] == 'M') {
            a.proj.assign(BT * Cp, 0);
            a.conv_pre.assign(BT * Cc, 0);
            a.qkv.assign(BT * Cc, 0);
            a.forget.assign(BT * c.N, 0);
            a.state.assign(BT * c.N * c.K * c.V, 0);
            a.tanh_z.assign(BT * c.N * c.K * c.V, 0);
            a.scan_y.assign(BT * NV, 0);
            a.gated.assign(BT * NV, 0);
            a.gnorm_out.assign(BT * NV, 0);
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

// The view of head n of batch row b onto a layer's activations: q, k of the head's group, its v, its f.
static ScanView scan_view(const Config& c, const ReferenceLayer& a, int T, int b, int n) {
    const int Cc = config_conv_channels(c);
    const double* row = a.qkv.data() + (size_t)b * T * Cc;
    ScanView s;
    s.T = T; s.K = c.K; s.V = c.V;
    s.q = row + config_q_channel(c, n);
    s.k = row + config_k_channel(c, n);
    s.v = row + config_v_channel(c, n);
    s.f = a.forget.data() + (size_t)b * T * c.N + n;
    s.sq = s.sk = s.sv = Cc;
    s.sf = c.N;
    return s;
}

double reference_forward(Reference& m, const double* params, const int* tokens) {
    const Config& c = m.c;
    const int B = m.B, T = m.T, BT = B * T, D = c.D;
    const int Cp = config_inproj_rows(c), Cc = config_conv_channels(c), NV = c.N * c.V, KV = c.K * c.V;
    const ParameterTable& pt = m.table;
    m.tokens.assign(tokens, tokens + (size_t)B * (T + 1));
    auto P = [&](int l, ParamKind kind) { return params + param_offset(pt, l, kind); };

    std::vector<double> x((size_t)BT * D);
    encoder_forward(x.data(), params + pt.tensors[pt.wte].offset, tokens, B, T, D);
    for (int l = 0; l < c.L; l++) {
        ReferenceLayer& a = m.layers[l];
        a.residual = x;
        rmsnorm_forward(a.ln1.data(), a.ln1_rstd.data(), x.data(), P(l, P_LN1), BT, D);
        if (c.pattern[l] == 'M') {
            matmul_forward(a.proj.data(), a.ln1.data(), P(l, P_IN_PROJ), BT, D, Cp);
            causal_conv_silu_forward(a.conv_pre.data(), a.qkv.data(), a.proj.data(), P(l, P_CONV), B, T, Cp, Cc);
            forget_gate_forward(a.forget.data(), a.proj.data() + Cc, Cp, P(l, P_A_LOG), P(l, P_DT_BIAS), BT, c.N);
            for (int b = 0; b < B; b++)
                for (int n = 0; n < c.N; n++) {
                    size_t chain = ((size_t)b * c.N + n) * T * KV;
                    m2rnn_scan_forward(scan_view(c, a, T, b, n), P(l, P_W) + (size_t)n * c.V * c.V,
                                       a.state.data() + chain, a.tanh_z.data() + chain,
                                       a.scan_y.data() + (size_t)b * T * NV + n * c.V, NV);
                }
            const double* v = a.qkv.data() + config_v_channel(c, 0);
            m2rnn_gate_forward(a.gated.data(), a.scan_y.data(), v, Cc, a.proj.data() + Cc + c.N, Cp, P(l, P_D), BT, NV);
            rmsnorm_forward(a.gnorm_out.data(), a.gnorm_rstd.data(), a.gated.data(), P(l, P_GNORM), BT, NV);
            matmul_forward(a.mixer_out.data(), a.gnorm_out.data(), P(l, P_OUT_PROJ), BT, NV, D);
        } else {
            matmul_forward(a.attn_qkv.data(), a.ln1.data(), P(l, P_QKV), BT, D, 3 * D);
            if (c.rope) rope_forward(a.attn_qkv.data(), B, T, D, c.heads);
            attention_forward(a.attn_y.data(), a.attn_prob.data(), a.attn_qkv.data(), B, T, D, c.heads);
            matmul_forward(a.mixer_out.data(), a.attn_y.data(), P(l, P_ATTN_OUT), BT, D, D);
        }
        residual_forward(a.residual2.data(), x.data(), a.mixer_out.data(), x.size());
        rmsnorm_forward(a.ln2.data(), a.ln2_rstd.data(), a.residual2.data(), P(l, P_LN2), BT, D);
        matmul_forward(a.up.data(), a.ln2.data(), P(l, P_UP), BT, D, 2 * c.F);
        swiglu_forward(a.swiglu.data(), a.up.data(), BT, c.F);
        std::vector<double> mlp_out((size_t)BT * D);
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
    const int Cp = config_inproj_rows(c), Cc = config_conv_channels(c), NV = c.N * c.V, KV = c.K * c.V;
    const ParameterTable& pt = m.table;
    auto P = [&](int l, ParamKind kind) { return params + param_offset(pt, l, kind); };
    auto G = [&](int l, ParamKind kind) { return grads + param_offset(pt, l, kind); };

    std::vector<double> dlogits((size_t)BT * c.Vp), dlnf((size_t)BT * D), dx((size_t)BT * D);
    crossentropy_backward(dlogits.data(), m.probs.data(), m.tokens.data(), B, T, c.Vp);
    matmul_backward(dlnf.data(), grads + pt.tensors[pt.lm_head].offset, dlogits.data(), m.lnf.data(),
                    params + pt.tensors[pt.lm_head].offset, BT, D, c.Vp);
    rmsnorm_backward(dx.data(), grads + pt.tensors[pt.lnf].offset, dlnf.data(), m.final_residual.data(),
                     params + pt.tensors[pt.lnf].offset, m.lnf_rstd.data(), BT, D, false);

    // dx is the gradient of the residual stream; each block adds its branch's gradient to it.
    std::vector<double> dln((size_t)BT * D), dmixer((size_t)BT * D);
    for (int l = c.L - 1; l >= 0; l--) {
        ReferenceLayer& a = m.layers[l];
        std::vector<double> dswiglu((size_t)BT * c.F), dup((size_t)BT * 2 * c.F);
        matmul_backward(dswiglu.data(), G(l, P_DOWN), dx.data(), a.swiglu.data(), P(l, P_DOWN), BT, c.F, D);
        swiglu_backward(dup.data(), dswiglu.data(), a.up.data(), BT, c.F);
        matmul_backward(dln.data(), G(l, P_UP), dup.data(), a.ln2.data(), P(l, P_UP), BT, D, 2 * c.F);
        rmsnorm_backward(dx.data(), G(l, P_LN2), dln.data(), a.residual2.data(), P(l, P_LN2), a.ln2_rstd.data(), BT, D,
                         true);
        dmixer = dx;  // the mixer's output joins the residual stream unchanged
        if (c.pattern[l] == 'M') {
            std::vector<double> dgnorm((size_t)BT * NV), dgated((size_t)BT * NV), dscan_y((size_t)BT * NV);
            std::vector<double> dproj((size_t)BT * Cp), dqkv((size_t)BT * Cc, 0.0), dforget((size_t)BT * c.N, 0.0);
            matmul_backward(dgnorm.data(), G(l, P_OUT_PROJ), dmixer.data(), a.gnorm_out.data(), P(l, P_OUT_PROJ), BT, NV, D);
            rmsnorm_backward(dgated.data(), G(l, P_GNORM), dgnorm.data(), a.gated.data(), P(l, P_GNORM),
                             a.gnorm_rstd.data(), BT, NV, false);
            const double* v = a.qkv.data() + config_v_channel(c, 0);
            m2rnn_gate_backward(dscan_y.data(), dqkv.data() + config_v_channel(c, 0), Cc, dproj.data() + Cc + c.N, Cp,
                                G(l, P_D), dgated.data(), a.scan_y.data(), v, Cc, a.proj.data() + Cc + c.N, Cp,
                                P(l, P_D), BT, NV);
            for (int b = 0; b < B; b++)
                for (int n = 0; n < c.N; n++) {
                    size_t chain = ((size_t)b * c.N + n) * T * KV;
                    double* drow = dqkv.data() + (size_t)b * T * Cc;
                    m2rnn_scan_backward(scan_view(c, a, T, b, n), P(l, P_W) + (size_t)n * c.V * c.V,
                                        a.state.data() + chain, a.tanh_z.data() + chain,
                                        dscan_y.data() + (size_t)b * T * NV + n * c.V, NV, c.clip,
                                        drow + config_q_channel(c, n), drow + config_k_channel(c, n),
                                        drow + config_v_channel(c, n), dforget.data() + (size_t)b * T * c.N + n,
                                        G(l, P_W) + (size_t)n * c.V * c.V);
                }
            forget_gate_backward(dproj.data() + Cc, Cp, G(l, P_A_LOG), G(l, P_DT_BIAS), dforget.data(),
                                 a.forget.data(), a.proj.data() + Cc, Cp, P(l, P_A_LOG), P(l, P_DT_BIAS), BT, c.N);
            causal_conv_silu_backward(dproj.data(), G(l, P_CONV), dqkv.data(), a.conv_pre.data(), a.proj.data(),
                                      P(l, P_CONV), B, T, Cp, Cc);
            matmul_backward(dln.data(), G(l, P_IN_PROJ), dproj.data(), a.ln1.data(), P(l, P_IN_PROJ), BT, D, Cp);
        } else {
            std::vector<double> dattn_y((size_t)BT * D), dattn_qkv((size_t)BT * 3 * D);
            matmul_backward(dattn_y.data(), G(l, P_ATTN_OUT), dmixer.data(), a.attn_y.data(), P(l, P_ATTN_OUT), BT, D, D);
            attention_backward(dattn_qkv.data(), dattn_y.data(), a.attn_qkv.data(), a.attn_prob.data(), B, T, D,
                               c.heads);
            if (c.rope) rope_backward(dattn_qkv.data(), B, T, D, c.heads);
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

// m = β1 m + (1−β1) g,  v = β2 v + (1−β2) g²,  p −= lr · (m̂ / (sqrt(v̂) + ε) + wd · p)
// with m̂ = m / (1 − β1^step), v̂ = v / (1 − β2^step), g = grad_scale · grad, and wd only on decayed tensors.
void reference_adamw(const ParameterTable& t, double* params, const double* grads, double* m, double* v, int step,
                     double lr, double beta1, double beta2, double eps, double weight_decay, double grad_scale) {
    const double bc1 = 1.0 - pow(beta1, step), bc2 = 1.0 - pow(beta2, step);
    for (const ParamTensor& p : t.tensors) {
        const double wd = p.decay ? weight_decay : 0.0;
        for (size_t i = p.offset; i < p.offset + p.numel; i++) {
            double g = grad_scale * grads[i];
            m[i] = beta1 * m[i] + (1.0 - beta1) * g;
            v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
            params[i] -= lr * ((m[i] / bc1) / (sqrt(v[i] / bc2) + eps) + wd * params[i]);
        }
    }
}
