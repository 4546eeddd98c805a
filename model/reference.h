// The CPU reference of the hybrid M²RNN GPT: plain loops, one function per step. This is the oracle the GPU code
// is checked against and the place to learn the algorithm; read reference.cpp top to bottom (docs/model.md has
// the same math with its reasons). The GPU path (model/gpu_model.h) launches kernels with the same step names in
// the same order; the element-wise formulas both call are in model/model_math.h.
//
// One copy of the math, two scalar types: double for the checks (golden vectors, finite differences, the GPU
// against the reference), float for training on the CPU (model/cpu_model.h). The hot loops (the matmuls, the
// classifier's softmax, attention's heads, AdamW, the gradient norm) run as tasks of model/parallel.h, each task
// writing its own outputs and every sum taken in a fixed order, so the result is bitwise the same for any thread
// count; with one thread (the default, and the checks') everything runs on the caller.
//
// Conventions (as llm.c): parameter gradients accumulate with +=, so gradient accumulation over micro-batches
// is free (zero the gradients once per step); activation gradients overwrite, except the residual stream,
// where each layer adds its branch's gradient, and dqkv of an M²RNN layer, which its gate and its scan both add into.
#pragma once
#include <vector>

#include "config.h"
#include "parameters.h"

// What one layer's forward keeps for its backward (shapes with B, T of the model; Cp, Cc, NV of
// M2RNNLayout).
template <typename S> struct ReferenceLayer {
    std::vector<S> residual;   // (B,T,D) input of the layer
    std::vector<S> ln1, ln1_rstd;       // (B,T,D), (B,T)
    // M²RNN mixer
    std::vector<S> proj;       // (B,T,Cp) in_proj output [q | k | v | f_raw | g]
    std::vector<S> conv_pre;   // (B,T,Cc) causal conv output before silu
    std::vector<S> qkv;        // (B,T,Cc) silu(conv): [q | k | v]
    std::vector<S> forget;     // (B,T,N)  f_t
    std::vector<S> h0;         // (B,N,K,V) H_{−1} of a forward with state noise; empty: H_{−1} = 0
    std::vector<S> state;      // (B,N,T,K,V) H_t
    std::vector<S> tanh_z;     // (B,N,T,K,V) Z_t
    std::vector<S> scan_y;     // (B,T,N·V) y_t = H_tᵀ q_t
    std::vector<S> gated;      // (B,T,N·V) (y + D_skip ⊙ v) ⊙ silu(g)
    std::vector<S> gnorm_out, gnorm_rstd;  // (B,T,N·V), (B,T)
    // attention mixer
    std::vector<S> attn_qkv;   // (B,T,3D) [q | k | v], q and k not rotated (attention_forward applies RoPE)
    std::vector<S> attn_prob;  // (B,heads,T,T) causal softmax
    std::vector<S> attn_y;     // (B,T,D) heads concatenated
    // both
    std::vector<S> mixer_out;  // (B,T,D)
    std::vector<S> residual2;  // (B,T,D) residual + mixer_out
    std::vector<S> ln2, ln2_rstd;
    std::vector<S> up;         // (B,T,2F) [a | b]
    std::vector<S> swiglu;     // (B,T,F) silu(a) ⊙ b
};

template <typename S> struct Reference {
    Config c;
    ParameterTable table;
    int B, T;
    std::vector<int> tokens;        // (B,T+1): inputs row[0..T-1], targets row[1..T]
    std::vector<ReferenceLayer<S>> layers;
    std::vector<S> final_residual, lnf, lnf_rstd;  // (B,T,D), (B,T,D), (B,T)
    // the classifier's (B,T,Vp) buffers, allocated by the first reference_forward (reference_layers_forward alone,
    // as sampling runs it, needs none of them)
    std::vector<S> logits;
    std::vector<S> probs;      // softmax over the first vocab columns, 0 beyond
    std::vector<S> dlogits;    // reference_backward's
    double loss;
};

template <typename S> void reference_init(Reference<S>& m, const Config& c, int B, int T);

// Forward over tokens[B*(T+1)]; returns the mean cross-entropy loss. With noise.amplitude > 0 (a training forward
// under --state-noise) every M²RNN layer's scan starts from m2rnn_initial_state_fill's H_{−1}, else from zero.
template <typename S>
double reference_forward(Reference<S>& m, const S* params, const int* tokens, StateNoise noise = StateNoise());

// The part of the forward between the embedding and the classifier, over the first T <= m.T positions of the m.B
// sequences of tokens[B*(T+1)]: from the embedding to m.lnf (B,T,D), the activations laid out as at that T. Being
// causal, position t's output depends on tokens 0..t alone: sampling runs it on a growing prefix.
template <typename S>
void reference_layers_forward(Reference<S>& m, const S* params, const int* tokens, int T,
                              StateNoise noise = StateNoise());

// Backward of the last forward: adds d loss / d params into grads[table.total].
template <typename S> void reference_backward(Reference<S>& m, const S* params, S* grads);

// ---- The steps, each backward beside its forward (the math is in reference.cpp) ----
// Shapes: n rows (positions) of width C; B, T batch and time; activations row-major (B, T, ...).
template <typename S> void encoder_forward(S* x, const S* wte, const int* tokens, int B, int T, int D);
template <typename S> void encoder_backward(S* dwte, const S* dx, const int* tokens, int B, int T, int D);
template <typename S> void rmsnorm_forward(S* out, S* rstd, const S* x, const S* w, int n, int C);
// dx overwritten, or added into when `accumulate` (the residual stream); dw +=
template <typename S> void rmsnorm_backward(S* dx, S* dw, const S* dout, const S* x, const S* w,
                      const S* rstd, int n, int C, bool accumulate);
template <typename S> void matmul_forward(S* out, const S* x, const S* W, int n, int I, int O);
template <typename S> void matmul_backward(S* dx, S* dW, const S* dout, const S* x, const S* W, int n, int I,
                     int O);
template <typename S> void residual_forward(S* out, const S* a, const S* b, size_t n);
template <typename S> void swiglu_forward(S* h, const S* up, int n, int F);
template <typename S> void swiglu_backward(S* dup, const S* dh, const S* up, int n, int F);

// M²RNN mixer. proj (B,T,Cp), qkv and conv_pre (B,T,Cc), f (B,T,N), y (B,T,N·V); H, Z (B,N,T,K,V).
template <typename S> void m2rnn_input_forward(S* qkv, S* conv_pre, S* f, const S* proj, const S* conv,
                         const S* A_log, const S* dt_bias, const M2RNNLayout& L, int B, int T);
// dproj's q|k|v and f_raw columns overwritten; dconv, dA_log, ddt_bias +=
template <typename S> void m2rnn_input_backward(S* dproj, S* dconv, S* dA_log, S* ddt_bias, const S* dqkv,
                          const S* df, const S* conv_pre, const S* proj, const S* conv,
                          const S* A_log, const S* dt_bias, const M2RNNLayout& L, int B, int T);
// H0 (B,N,K,V): the state before step 0, H_{−1}; null = zero. Layer `layer`'s H0 under state noise:
template <typename S> void m2rnn_initial_state_fill(S* H0, StateNoise noise, int layer, const M2RNNLayout& L, int B);
template <typename S> void m2rnn_scan_forward(S* y, S* H, S* Z, const S* qkv, const S* f, const S* W, const S* H0,
                        const M2RNNLayout& L, int B, int T);
// dqkv += (q, k and v columns), df overwritten, dW +=; clip 0 = no state-gradient clipping; H0 the forward's
template <typename S> void m2rnn_scan_backward(S* dqkv, S* df, S* dW, const S* dy, const S* qkv, const S* f,
                         const S* W, const S* H0, const S* H, const S* Z, double clip, const M2RNNLayout& L,
                         int B, int T);
template <typename S> void m2rnn_gate_forward(S* out, S* rstd, S* gated, const S* y, const S* qkv,
                        const S* proj, const S* skip, const S* gnorm, const M2RNNLayout& L, int n_pos);
// dy overwritten, dqkv's v columns +=, dproj's g columns overwritten, dskip and dgnorm +=
template <typename S> void m2rnn_gate_backward(S* dy, S* dqkv, S* dproj, S* dskip, S* dgnorm, const S* dout,
                         const S* y, const S* qkv, const S* proj, const S* skip,
                         const S* gnorm, const S* gated, const S* rstd, const M2RNNLayout& L,
                         int n_pos);

// attention mixer: qkv (B,T,3D) unrotated, y (B,T,D), prob (B,heads,T,T); dqkv overwritten. RoPE (when `rope`) is
// rope_rotate_heads on q and k, in place, sign −1 rotating back.
template <typename S> void rope_rotate_heads(S* qkv, int B, int T, int D, int heads, double sign);
template <typename S> void attention_forward(S* y, S* prob, const S* qkv, int B, int T, int D, int heads, bool rope);
template <typename S> void attention_backward(S* dqkv, const S* dy, const S* qkv, const S* prob, int B, int T, int D,
                        int heads, bool rope);

template <typename S>
double crossentropy_forward(S* probs, const S* logits, const int* tokens, int B, int T, int vocab, int Vp);
template <typename S> void crossentropy_backward(S* dlogits, const S* probs, const int* tokens, int B, int T, int Vp);

// ---- Training step pieces ----
template <typename S> double reference_grad_norm(const S* grads, size_t n);
// AdamW (decoupled decay on tensors flagged in the table) with grads scaled by grad_scale first
// (global-norm clipping); step is 1-based for bias correction.
template <typename S> void reference_adamw(const ParameterTable& t, S* params, const S* grads, S* m, S* v, int step,
                     double lr, double beta1, double beta2, double eps, double weight_decay, double grad_scale);
