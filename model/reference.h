// The CPU reference of the hybrid M²RNN GPT: double precision, plain loops, one function per step.
// This is the oracle the GPU code is checked against and the place to learn the algorithm; read
// reference.cpp top to bottom. The GPU path in model/ calls kernels with the same step names in the
// same order.
//
// Conventions (as llm.c): parameter gradients accumulate with +=, so gradient accumulation over
// micro-batches is free (call reference_zero_grad once per step); activation gradients overwrite,
// except the residual stream, where each layer adds its contribution.
#pragma once
#include <vector>

#include "config.h"
#include "parameters.h"

// What one layer's forward keeps for its backward (shapes with B, T of the model).
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
    std::vector<double> scan_y;     // (B,T,N·V) y_t = H_tᵀ q_t + D ⊙ v_t
    std::vector<double> gated;      // (B,T,N·V) y ⊙ silu(g)
    std::vector<double> gnorm_out, gnorm_rstd;  // (B,T,N·V), (B,T)
    // attention mixer
    std::vector<double> attn_qkv;   // (B,T,3D) [q | k | v], q and k rotated when RoPE is on
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

// ---- The steps, in the order the model calls them (the math is in reference.cpp) ----
// Shapes: n rows (positions) of width C; B, T batch and time; activations row-major (B, T, ...).
void encoder_forward(double* x, const double* wte, const int* tokens, int B, int T, int D);
void rmsnorm_forward(double* out, double* rstd, const double* x, const double* w, int n, int C);
void matmul_forward(double* out, const double* x, const double* W, int n, int I, int O);
// M²RNN mixer: proj rows are Cp wide, the first Cc channels pass the conv; v and g are read with row strides.
void causal_conv_silu_forward(double* pre, double* out, const double* proj, const double* conv, int B, int T, int Cp,
                              int Cc);
void forget_gate_forward(double* f, const double* f_raw, int Cp, const double* A_log, const double* dt_bias,
                         int n_pos, int N);
// The recurrence of one head over one sequence: q, k (T,K) with row strides sq, sk; v (T,V) stride sv;
// f (T) stride sf; W (V,V); H, Z (T,K,V) written; y (T,V) with row stride sy written.
struct ScanView {
    int T, K, V;
    const double *q, *k, *v, *f;
    int sq, sk, sv, sf;
};
void m2rnn_scan_forward(const ScanView& s, const double* W, double* H, double* Z, double* y, int sy);
void m2rnn_gate_forward(double* gated, double* y, const double* v, int sv, const double* g, int sg,
                        const double* Dskip, int n_pos, int NV);
// attention mixer
void rope_forward(double* qkv, int B, int T, int D, int heads);
void attention_forward(double* y, double* prob, const double* qkv, int B, int T, int D, int heads);
// both mixers, MLP, loss
void residual_forward(double* out, const double* a, const double* b, size_t n);
void swiglu_forward(double* h, const double* up, int n, int F);
double crossentropy_forward(double* probs, const double* logits, const int* tokens, int B, int T, int vocab, int Vp);

// backward steps: parameter gradients +=, activation gradients overwrite (rmsnorm_backward adds into
// dx when `accumulate`, for the residual stream; the M²RNN steps add into dq, dk, dv, df)
void crossentropy_backward(double* dlogits, const double* probs, const int* tokens, int B, int T, int Vp);
void matmul_backward(double* dx, double* dW, const double* dout, const double* x, const double* W, int n, int I,
                     int O);
void rmsnorm_backward(double* dx, double* dw, const double* dout, const double* x, const double* w,
                      const double* rstd, int n, int C, bool accumulate);
void swiglu_backward(double* dup, const double* dh, const double* up, int n, int F);
void m2rnn_gate_backward(double* dy, double* dv, int sdv, double* dg, int sdg, double* dD, const double* dgated,
                         const double* y, const double* v, int sv, const double* g, int sg, const double* Dskip,
                         int n_pos, int NV);
// Backward with state-gradient clipping c (0 = none): from dy (T,V) with row stride sdy, adds into dq, dk
// (T,K), dv (T,V), df (T) (same strides as the inputs) and into dW (V,V).
void m2rnn_scan_backward(const ScanView& s, const double* W, const double* H, const double* Z, const double* dy,
                         int sdy, double clip, double* dq, double* dk, double* dv, double* df, double* dW);
void forget_gate_backward(double* df_raw, int sdf_raw, double* dA_log, double* ddt_bias, const double* df,
                          const double* f, const double* f_raw, int Cp, const double* A_log, const double* dt_bias,
                          int n_pos, int N);
void causal_conv_silu_backward(double* dproj, double* dconv, const double* dout, const double* pre,
                               const double* proj, const double* conv, int B, int T, int Cp, int Cc);
void attention_backward(double* dqkv, const double* dy, const double* qkv, const double* prob, int B, int T, int D,
                        int heads);
void rope_backward(double* dqkv, int B, int T, int D, int heads);
void encoder_backward(double* dwte, const double* dx, const int* tokens, int B, int T, int D);

// ---- Training step pieces ----
double reference_grad_norm(const double* grads, size_t n);
// AdamW (decoupled decay on tensors flagged in the table) with grads scaled by grad_scale first
// (global-norm clipping); step is 1-based for bias correction.
void reference_adamw(const ParameterTable& t, double* params, const double* grads, double* m, double* v, int step,
                     double lr, double beta1, double beta2, double eps, double weight_decay, double grad_scale);
