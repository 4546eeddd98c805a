// The model's math, written once for the CPU reference (double) and the GPU kernels (float): every formula
// that is applied element by element (the M²RNN step forward and backward, the causal conv, the forget gate, the
// output gate, silu, RMSNorm's row factor and input gradient, RoPE's rotation, AdamW) is a function here, and
// model/reference.cpp and kernels/*.cuh both call it; so are the M²RNN layer's channel layout, splitmix64's mix
// and the random initial state of --state-noise. docs/model.md has the math step by step with its shapes.
//
// A kernel that computes in another precision (the tensor-core scan's tanh.approx) passes its own function
// for that one operation; everything else is the same code on both sides.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MODEL_FN __host__ __device__ __forceinline__
#else
#define MODEL_FN inline
#endif

// ---------------------------------------------------------------- scalar functions, float or double

// e^x in float. On the GPU, expf. On the CPU (the float reference, model/cpu_model.h) a loop of glibc's expf is a call
// per element, and the classifier's softmax takes Vp of them per position, so this one is written to vectorise:
// e^x = 2^n e^r with n = round(x / ln 2) and r = x − n ln 2 (ln 2 in two parts, so r is exact), |r| <= ln2/2, e^r by
// its Taylor polynomial to r⁷/7! (truncation < 1e-8 relative, about 2 ulp in all), 2^n written into the exponent
// bits. x is clamped to [−87.3, 88.3] (results below 1.2e-38 become that, not 0); NaN stays NaN.
#if !defined(__CUDA_ARCH__)
inline float exp_vectorisable(float x) {
    const float xc = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    const float n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;  // rounded by 1.5·2²³: floorf does not vectorise
    const float r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int bits = ((int)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x != x ? x : p * scale;
}
#endif
MODEL_FN float math_exp(float x) {
#if defined(__CUDA_ARCH__)
    return expf(x);
#else
    return exp_vectorisable(x);
#endif
}
MODEL_FN double math_exp(double x) { return exp(x); }
MODEL_FN float math_log1p(float x) { return log1pf(x); }
MODEL_FN double math_log1p(double x) { return log1p(x); }
MODEL_FN float math_tanh(float x) { return tanhf(x); }
MODEL_FN double math_tanh(double x) { return tanh(x); }
MODEL_FN float math_sqrt(float x) { return sqrtf(x); }
MODEL_FN double math_sqrt(double x) { return sqrt(x); }
MODEL_FN float math_min(float a, float b) { return fminf(a, b); }
MODEL_FN double math_min(double a, double b) { return fmin(a, b); }
MODEL_FN float math_max(float a, float b) { return fmaxf(a, b); }
MODEL_FN double math_max(double a, double b) { return fmax(a, b); }
MODEL_FN float math_rsqrt(float x) {
#if defined(__CUDA_ARCH__)
    return rsqrtf(x);
#else
    return 1.0f / sqrtf(x);
#endif
}
MODEL_FN double math_rsqrt(double x) { return 1.0 / sqrt(x); }

template <typename T> MODEL_FN T sigmoid(T x) { return T(1) / (T(1) + math_exp(-x)); }
template <typename T> MODEL_FN T silu(T x) { return x * sigmoid(x); }
template <typename T> MODEL_FN T silu_grad(T x) {
    const T s = sigmoid(x);
    return s * (T(1) + x * (T(1) - s));
}
// log(1 + eˣ), without overflow for large x
template <typename T> MODEL_FN T softplus(T x) {
    return x > T(0) ? x + math_log1p(math_exp(-x)) : math_log1p(math_exp(x));
}

// ---------------------------------------------------------------- splitmix64

// The random numbers of the CPU reference, the GPU and the checks (model/random.h, the shard loader's order, the
// random initial states below): the n-th output, n >= 1, of the splitmix64 stream seeded with s is
// splitmix64_mix(s + n·SPLITMIX64_GAMMA). The mix is a bijection of 64-bit words that spreads every input bit over
// every output bit.
static constexpr uint64_t SPLITMIX64_GAMMA = 0x9E3779B97F4A7C15ull;
MODEL_FN uint64_t splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// ---------------------------------------------------------------- RMSNorm

static constexpr double RMSNORM_EPS = 1e-5;

// r = 1 / sqrt(mean(x²) + eps) of a row of C elements from its Σ x²; the norm's output is x·r ⊙ w.
template <typename T> MODEL_FN T rmsnorm_rstd(T sum_squares, int C) {
    return math_rsqrt(sum_squares / T(C) + T(RMSNORM_EPS));
}
// The backward: dx = r (dout ⊙ w) − (r³/C Σ_j dout_j w_j x_j) x. The factor in parentheses, from the row's sum:
template <typename T> MODEL_FN T rmsnorm_dx_factor(T r, T dot, int C) { return r * r * r / T(C) * dot; }
// and one element of dx
template <typename T> MODEL_FN T rmsnorm_dx(T r, T factor, T dout, T w, T x) { return r * dout * w - factor * x; }

// ---------------------------------------------------------------- the M²RNN layer

// Where an M²RNN layer keeps each head's channels. A row of in_proj's output is [q | k | v | f_raw | g] of widths
// Nq·K, Nk·K, N·V, N, N·V (head-major inside each part); the first Cc channels, [q | k | v], pass the causal
// conv (a row of its output is Cc wide). Head n reads query head n / (N/Nq) and key head n / (N/Nk).
// Rows of a 2-D parameter tensor (a GEMM weight) occupy a multiple of this many rows of the parameter arena, the
// extra rows zero (model/parameters.h), and in_proj's output has as many columns: cuBLASLt's Hopper kernels want a
// GEMM's output dimension a multiple of 8 (at in_proj's Cp = 2900 it fell back to Ampere kernels at a third of the
// speed: docs/perf.md).
static constexpr int WEIGHT_ROWS_MULTIPLE = 8;

struct M2RNNLayout {
    int N, K, V, Nq, Nk;
    MODEL_FN int NV() const { return N * V; }
    MODEL_FN int Cc() const { return (Nq + Nk) * K + N * V; }       // conv channels [q | k | v]
    MODEL_FN int Cp() const { return Cc() + N + N * V; }            // in_proj rows
    // The GPU's in_proj output width (proj, dproj): Cp rounded up to WEIGHT_ROWS_MULTIPLE, the rows of in_proj's
    // slot in the arena; the GEMM computes the extra columns from zero weight rows, and dproj's stay zero.
    MODEL_FN int Cp_stride() const {
        return (Cp() + WEIGHT_ROWS_MULTIPLE - 1) / WEIGHT_ROWS_MULTIPLE * WEIGHT_ROWS_MULTIPLE;
    }
    MODEL_FN int q_col(int n) const { return n / (N / Nq) * K; }
    MODEL_FN int k_col(int n) const { return Nq * K + n / (N / Nk) * K; }
    MODEL_FN int v_col(int n) const { return (Nq + Nk) * K + n * V; }
    MODEL_FN int f_col(int n) const { return Cc() + n; }            // columns of in_proj's output
    MODEL_FN int g_col(int n) const { return Cc() + N + n * V; }
};

// The causal conv's width: step t mixes x_{t−3} … x_t of each channel.
static constexpr int CONV_WIDTH = 4;

// u_t = Σ_j w[j] x_{t−3+j} of one channel, window[j] = x_{t−3+j} (zero before the sequence starts).
template <typename W, typename X> MODEL_FN X causal_conv(const W* w, const X* window) {
    X u = X(0);
    for (int j = 0; j < CONV_WIDTH; j++) u += w[j] * window[j];
    return u;
}
// Its input gradient at step s from the gradients du at its outputs: dx_s = Σ_j w[j] du_{s+3−j}, with
// ahead[k] = du_{s+k} (zero past the sequence's end).
template <typename W, typename X> MODEL_FN X causal_conv_input_grad(const W* w, const X* ahead) {
    X dx = X(0);
    for (int j = 0; j < CONV_WIDTH; j++) dx += w[j] * ahead[CONV_WIDTH - 1 - j];
    return dx;
}
// and its weight gradient from step t: dw[j] += du_t x_{t−3+j}
template <typename X> MODEL_FN void causal_conv_weight_grad(X* dw, X du, const X* window) {
    for (int j = 0; j < CONV_WIDTH; j++) dw[j] += du * window[j];
}

// The forget gate f = exp(−a · softplus(x)) ∈ (0, 1), with a = exp(A_log) the head's decay rate and
// x = f_raw + dt_bias.
template <typename T> MODEL_FN T forget_gate(T a, T x) { return math_exp(-a * softplus(x)); }

template <typename T> struct ForgetGateGrad {
    T dx;      // df · ∂f/∂x = −a f σ(x) df: the gradient of f_raw and of dt_bias
    T dA_log;  // df · ∂f/∂A_log = −a f softplus(x) df
};
template <typename T> MODEL_FN ForgetGateGrad<T> forget_gate_backward(T df, T a, T x) {
    const T sp = softplus(x), g = -a * df * math_exp(-a * sp);  // −a · f · df
    return {g * sigmoid(x), g * sp};
}

// One element (i, j) of the recurrence's step t, from its pre-activation a = (H_{t−1} W_n)_ij + k_i v_j:
//   Z_t = tanh(a),   H_t = f_t H_{t−1} + (1 − f_t) Z_t,   written Z_t + f_t (H_{t−1} − Z_t): two operations.
// `tanh_fn` is the caller's tanh: the exact one (the reference, the fp32 kernels) or tanh.approx (m2rnn_scan_tc).
template <typename T> struct M2RNNStep { T z, h; };

struct ExactTanh {
    template <typename T> MODEL_FN T operator()(T x) const { return math_tanh(x); }
};

template <typename T, typename Tanh = ExactTanh>
MODEL_FN M2RNNStep<T> m2rnn_step_forward(T a, T h_prev, T f, Tanh tanh_fn = Tanh()) {
    const T z = tanh_fn(a);
    return {z, z + f * (h_prev - z)};
}

// The state-gradient clip: the carried gradient C clamped to [−c, c]; c = 0 is no clip (the exact gradient).
template <typename T> MODEL_FN T m2rnn_clip_carry(T carry, T clip) {
    return clip > T(0) ? math_min(clip, math_max(-clip, carry)) : carry;
}

// The backward of one element at step t, from C_t (the gradient carried back from step t+1, before the clip),
// q_i and dy_j of step t, and the forward's Z_t and H_{t−1}:
//   G_t = q_i dy_j + clamp(C_t, −c, c)        ∂L/∂H_t
//   dA = (1 − f) G_t (1 − Z_t²)               the gradient at tanh's input: dk, dv, dW and the carry follow from it
//   df = G_t (H_{t−1} − Z_t)                  this element's share of ∂L/∂f_t
//   carry = f G_t                             C_{t−1} = f G_t + (dA W_nᵀ)_ij: the caller adds the product
template <typename T> struct M2RNNStepGrad { T dA, df, carry; };

template <typename T>
MODEL_FN M2RNNStepGrad<T> m2rnn_step_backward(T carry, T clip, T q_i, T dy_j, T z, T h_prev, T f) {
    const T G = q_i * dy_j + m2rnn_clip_carry(carry, clip);
    return {(T(1) - f) * G * (T(1) - z * z), G * (h_prev - z), f * G};
}

// The random initial state of --state-noise A (docs/model.md §2.2): a training forward may start each scan from
// an H_{−1} whose elements are uniform in [−A, A] instead of 0. A forward's draw is named by its key, which the
// trainer derives from (seed, step, micro-batch) so that a resumed run draws the same states; amplitude 0 (the
// default, and every evaluation) is the zero state.
struct StateNoise {
    float amplitude;  // A in [0, 1]: the recurrence's states lie in (−1, 1)
    uint64_t key;
};

// Element `index` of the initial states of the forward named `key`: output index + 1 of key's splitmix64 stream,
// its top 24 bits as u ∈ [0, 1), then A·(2u − 1) ∈ [−A, A). Counter-based, so any element is drawn on its own
// (a GPU thread per element), and in float (u and 2u − 1 exact, one rounding in the product), so the double
// reference, the float CPU trainer and the GPU get the same value. An M²RNN layer's H_{−1} (B,N,K,V) takes
// index = layer·B·N·K·V + ((b·N + n)·K + i)·V + j for element (i, j) of head n of batch row b.
MODEL_FN float m2rnn_initial_state(uint64_t key, uint64_t index, float amplitude) {
    const uint64_t bits = splitmix64_mix(key + (index + 1) * SPLITMIX64_GAMMA);
    const float u = (float)(bits >> 40) * (1.0f / 16777216.0f);
    return amplitude * (2.0f * u - 1.0f);
}

// The output gate of one element of a position's N·V vector, from the scan's output y, the head's v and g:
//   gated = (y + D_skip ⊙ v) ⊙ silu(g)      (an RMSNorm over the whole vector follows)
template <typename T> MODEL_FN T m2rnn_gated(T y, T skip, T v, T g) { return (y + skip * v) * silu(g); }

// Its backward from dgated: dy = dgated silu(g), which is also what the skip path sees (dv += dy D_skip,
// dD_skip += dy v), and dg = dgated (y + D_skip v) silu'(g).
template <typename T> struct M2RNNGatedGrad { T dy, dg; };
template <typename T> MODEL_FN M2RNNGatedGrad<T> m2rnn_gated_backward(T dgated, T y, T skip, T v, T g) {
    return {dgated * silu(g), dgated * (y + skip * v) * silu_grad(g)};
}

// ---------------------------------------------------------------- RoPE

// The angle t·ω_i of pair i at position t, ω_i = 10000^(−2i/hd), in double: in fp32 the angle's rounding alone
// would cost ~1e-4 at T ~ 1000.
MODEL_FN double rope_angle(int t, int i, int hd) { return t * pow(10000.0, -2.0 * i / hd); }

// The pair (x₁, x₂) = (x[i], x[i + hd/2]) of a head vector rotated by the angle of cosine c and sine s:
// [x₁ c − x₂ s, x₂ c + x₁ s] (the rotate-half convention); s → −s rotates back.
template <typename T> MODEL_FN void rope_rotate(T& x1, T& x2, T c, T s) {
    const T r1 = x1 * c - x2 * s;
    x2 = x2 * c + x1 * s;
    x1 = r1;
}

// ---------------------------------------------------------------- AdamW

// One AdamW update of parameter p with moments m, v from its gradient g (already scaled by the global-norm
// clip); bias_correction1 = 1 − β1^step, bias_correction2 = 1 − β2^step, step 1-based:
//   m = β1 m + (1−β1) g,  v = β2 v + (1−β2) g²,  p −= lr (m / bc1 / (sqrt(v / bc2) + ε) + weight_decay · p)
template <typename T>
MODEL_FN void adamw_element(T& p, T& m, T& v, T g, T lr, T beta1, T beta2, T eps, T weight_decay,
                            T bias_correction1, T bias_correction2) {
    m = beta1 * m + (T(1) - beta1) * g;
    v = beta2 * v + (T(1) - beta2) * g * g;
    p -= lr * ((m / bias_correction1) / (math_sqrt(v / bias_correction2) + eps) + weight_decay * p);
}
