// The CPU reference of the hybrid M²RNN GPT: double precision, plain loops, one function per step. This is the
// oracle the GPU code is checked against and the place to learn the algorithm; read reference.cpp top to
// bottom (docs/model.md has the same math with its reasons). The GPU path (model/gpu_model.h) launches kernels
// with the same step names in the same order; the element-wise formulas both call are in model/model_math.h.
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
struct ReferenceLayer {
    std::vector<double> residual;   // (B,T,D) input of the layer
    std::vector<double> ln1, ln1_rstd;       // (B,T,D), (B,T)
    // M²RNN mixer
    std::vector<double> proj;       // (B,T,Cp) in_proj output [q | k | v | f_raw | g]
    std::vector<double> conv_pre;   // (B,T,Cc) causal conv output before silu
    std::vector<double> qkv;        // (B,T,Cc) silu(conv): [q | k | v]
    std::vector<double> forget;     // (B,T,N)  f_t
    std::vector<double> state;      // (B,N,T,K,V) H_t
    std::vector<double> tanh_z;     // (B,N,T,K,V) Z_t
    std::vector<double> scan_y;     // (B,T,N·V) y_t = H_tᵀ q_t
    std::vector<double> gated;      // (B,T,N·V) (y + D_skip ⊙ v) ⊙ silu(g)
    std::vector<double> gnorm_out, gnorm_rstd;  // (B,T,N·V), (B,T)
    // attention mixer
    std::vector<double> attn_qkv;   // (B,T,3D) [q | k | v], q and k not rotated (attention_forward applies RoPE)
    std::vector<double> attn_prob;  // (B,heads,T,T) causal softmax
    std::vector<double> attn_y;     // (B,T,D) heads concatenated
    // both
    std::vector<double> mixer_out;  // (B,T,D)
    std::vector<double> residual2;  // (B,T,D) residual + mixer_out
    std::vector<double> ln2, ln2_rstd;
    std::vector<double> up;         // (B,T,2F) [a | b]
    std::vector<double> swiglu;     // (B,T,F) silu(a) ⊙ b
};

struct Reference {
    Config c;
    ParameterTable table;
    int B, T;
    std::vector<int> tokens;        // (B,T+1): inputs row[0..T-1], targets row[1..T]
    std::vector<ReferenceLayer> layers;
    std::vector<double> final_residual, lnf, lnf_rstd;  // (B,T,D), (B,T,D), (B,T)
    std::vector<double> logits;     // (B,T,Vp)
    std::vector<double> probs;      // (B,T,Vp) softmax over the first vocab columns, 0 beyond
    double loss;
};

void reference_init(Reference& m, const Config& c, int B, int T);

// Forward over tokens[B*(T+1)]; returns the mean cross-entropy loss.
double reference_forward(Reference& m, const double* params, const int* tokens);

// Backward of the last forward: adds d loss / d params into grads[table.total].
void reference_backward(Reference& m, const double* params, double* grads);

// ---- The steps, each backward beside its forward (the math is in reference.cpp) ----
// Shapes: n rows (positions) of width C; B, T batch and time; activations row-major (B, T, ...).
void encoder_forward(double* x, const double* wte, const int* tokens, int B, int T, int D);
void encoder_backward(double* dwte, const double* dx, const int* tokens, int B, int T, int D);
void rmsnorm_forward(double* out, double* rstd, const double* x, const double* w, int n, int C);
// dx overwritten, or added into when `accumulate` (the residual stream); dw +=
void rmsnorm_backward(double* dx, double* dw, const double* dout, const double* x, const double* w,
                      const double* rstd, int n, int C, bool accumulate);
void matmul_forward(double* out, const double* x, const double* W, int n, int I, int O);
void matmul_backward(double* dx, double* dW, const double* dout, const double* x, const double* W, int n, int I,
                     int O);
void residual_forward(double* out, const double* a, const double* b, size_t n);
void swiglu_forward(double* h, const double* up, int n, int F);
void swiglu_backward(double* dup, const double* dh, const double* up, int n, int F);

// M²RNN mixer. proj (B,T,Cp), qkv and conv_pre (B,T,Cc), f (B,T,N), y (B,T,N·V); H, Z (B,N,T,K,V).
void m2rnn_input_forward(double* qkv, double* conv_pre, double* f, const double* proj, const double* conv,
                         const double* A_log, const double* dt_bias, const M2RNNLayout& L, int B, int T);
// dproj's q|k|v and f_raw columns overwritten; dconv, dA_log, ddt_bias +=
void m2rnn_input_backward(double* dproj, double* dconv, double* dA_log, double* ddt_bias, const double* dqkv,
                          const double* df, const double* conv_pre, const double* proj, const double* conv,
                          const double* A_log, const double* dt_bias, const M2RNNLayout& L, int B, int T);
void m2rnn_scan_forward(double* y, double* H, double* Z, const double* qkv, const double* f, const double* W,
                        const M2RNNLayout& L, int B, int T);
// dqkv += (q, k and v columns), df overwritten, dW +=; clip 0 = no state-gradient clipping
void m2rnn_scan_backward(double* dqkv, double* df, double* dW, const double* dy, const double* qkv, const double* f,
                         const double* W, const double* H, const double* Z, double clip, const M2RNNLayout& L, int B,
                         int T);
void m2rnn_gate_forward(double* out, double* rstd, double* gated, const double* y, const double* qkv,
                        const double* proj, const double* skip, const double* gnorm, const M2RNNLayout& L, int n_pos);
// dy overwritten, dqkv's v columns +=, dproj's g columns overwritten, dskip and dgnorm +=
void m2rnn_gate_backward(double* dy, double* dqkv, double* dproj, double* dskip, double* dgnorm, const double* dout,
                         const double* y, const double* qkv, const double* proj, const double* skip,
                         const double* gnorm, const double* gated, const double* rstd, const M2RNNLayout& L,
                         int n_pos);

// attention mixer: qkv (B,T,3D) unrotated, y (B,T,D), prob (B,heads,T,T); dqkv overwritten. RoPE (when `rope`) is
// rope_rotate_heads on q and k, in place, sign −1 rotating back.
void rope_rotate_heads(double* qkv, int B, int T, int D, int heads, double sign);
void attention_forward(double* y, double* prob, const double* qkv, int B, int T, int D, int heads, bool rope);
void attention_backward(double* dqkv, const double* dy, const double* qkv, const double* prob, int B, int T, int D,
                        int heads, bool rope);

double crossentropy_forward(double* probs, const double* logits, const int* tokens, int B, int T, int vocab, int Vp);
void crossentropy_backward(double* dlogits, const double* probs, const int* tokens, int B, int T, int Vp);

// ---- Training step pieces ----
double reference_grad_norm(const double* grads, size_t n);
// AdamW (decoupled decay on tensors flagged in the table) with grads scaled by grad_scale first
// (global-norm clipping); step is 1-based for bias correction.
void reference_adamw(const ParameterTable& t, double* params, const double* grads, double* m, double* v, int step,
                     double lr, double beta1, double beta2, double eps, double weight_decay, double grad_scale);
