// The model on the GPU: three arenas allocated once from the config, then forward, backward and the
// AdamW update as straight sequences of kernel launches, step for step the CPU reference
// (model/reference.cpp) with the same names in the same order. Each GPU launch and the reference steps it
// computes (every launcher in kernels/ takes the reference step's name; a launcher that fuses several steps
// joins their names):
//
//   GPU launch (kernels/)               reference steps (model/reference.cpp)
//   encoder_forward                     encoder_forward
//   rmsnorm_forward                     rmsnorm_forward (ln1 of layer 0)
//   matmul_forward                      matmul_forward (in_proj, qkv, up)
//   matmul_forward_residual             matmul_forward + residual_forward (out_proj, attn_out, down: the branch's
//                                       output joins the residual in the GEMM's epilogue)
//   m2rnn_input_forward                 m2rnn_input_forward (causal conv + silu, forget gate)
//   m2rnn_initial_state_fill            m2rnn_initial_state_fill (only under state noise: H_{-1} of the scan)
//   m2rnn_scan_forward                  m2rnn_scan_forward
//   m2rnn_gate_forward                  m2rnn_gate_forward (D skip, silu(g), gnorm)
//   attention_forward                   attention_forward (RoPE included)
//   rmsnorm_forward                     rmsnorm_forward (ln2, the next layer's ln1, lnf)
//   swiglu_forward                      swiglu_forward
//   per chunk of classifier_rows rows:  matmul_forward (lm_head) + crossentropy_forward, and in a training forward
//     matmul_forward, crossentropy_     crossentropy_backward + matmul_backward (lm_head): the classifier's backward
//     forward_backward, matmul_backward runs inside gpu_model_forward while the chunk's dlogits exist
//   rmsnorm_backward, matmul_backward,  the backward steps of the same names, in the reference's order
//   swiglu_backward, m2rnn_gate_backward, m2rnn_scan_backward, m2rnn_input_backward, attention_backward,
//   encoder_backward
//   global_norm_squared + adamw_update  reference_grad_norm + reference_adamw
//
// Arenas (sizes printed at start-up; nothing is allocated inside a step):
//   1. parameters: the fp32 master copy in canonical order, and (bf16 builds) its floatX copy for the GEMMs
//   2. gradients + optimizer state: fp32 gradients, AdamW m and v (with ZeRO-1 for this process's shard only)
//   3. activations + scratch: what the forward keeps for the backward (M²RNN state only every `chunk`
//      steps), the backward's scratch, one chunk of logits, tokens and their positions grouped by token,
//      losses, the cuBLASLt workspace, and (M layers) the scan's initial state under state noise
//
// The classifier runs in chunks of `classifier_rows` rows of the B·T positions, so the (B·T, Vp) logits never
// exist at once. gpu_model_backward starts from the dlnf the training forward left.
//
// A training step is deterministic: the same inputs give bitwise the same loss, gradients and parameters
// on every run (no kernel sums with atomics; see kernels/common.cuh).
#pragma once
#include <string>
#include <vector>

#include "../kernels/common.cuh"
#include "../kernels/matmul.cuh"
#include "config.h"
#include "parameters.h"
#include "step_timer.h"

struct Distributed;  // model/distributed.h

// What one layer's forward keeps for its backward (B·T positions).
struct GPULayer {
    floatX* residual;                // (B,T,D) the layer's input
    floatX* ln1; float* ln1_rstd;    // (B,T,D), (B,T)
    // M²RNN
    floatX* proj;                    // (B,T,Cp) in_proj output [q | k | v | f_raw | g]
    floatX* qkv;                     // (B,T,Cc) silu(conv)
    float* forget;                   // (B,T,N)
    floatX* scan_y;                  // (B,T,N·V) H_tᵀq_t
    float* checkpoints;              // the state every `chunk` steps (null: none kept)
    floatX* gnorm_out; float* gnorm_rstd;  // (B,T,N·V), (B,T)
    // attention
    floatX* attn_qkv;                // (B,T,3D); attention_forward rotates q, k in place (RoPE)
    float* attn_lse;                 // (B,heads,T) log-sum-exp of each row's scores
    floatX* attn_y;                  // (B,T,D)
    // both
    floatX* residual2;               // (B,T,D) residual + mixer output
    floatX* ln2; float* ln2_rstd;
    floatX* up;                      // (B,T,2F)
    floatX* swiglu;                  // (B,T,F)
};

// One forward's activations over B·T positions: every layer's, and the final norm's input and output. The model
// keeps a set for its B×T; the decoder (model/gpu_decoder.h) one for a position of each sequence, every layer's
// pointers aliasing the same buffers.
struct GPUActivations {
    std::vector<GPULayer> layers;
    floatX* final_residual; floatX* lnf; float* lnf_rstd;  // (B,T,D), (B,T,D), (B,T)
};

// What generation carries from one position to the next (model/gpu_decoder.h), per layer.
struct GPUCarryLayer {
    float* state;          // M: (n_seq, N, K, V) the scan's state (m2rnn_scan_forward's `state`)
    float* conv_history;   // M: (n_seq, Cc, 3) x_{t-3}, x_{t-2}, x_{t-1} of the conv's channels
    floatX* k_cache;       // A: (n_seq, max_len, D), k rotated when RoPE is on
    floatX* v_cache;       // A: (n_seq, max_len, D)
};
struct GPUCarry {
    std::vector<GPUCarryLayer> layers;
    int t;                 // positions fed so far: the next one's position
    int max_len;           // positions the KV caches hold
};

// The backward's scratch, reused by every layer.
struct GPUScratch {
    floatX* dresidual;               // (B,T,D) gradient of the residual stream
    floatX* dln;                     // (B,T,D) gradient of a norm's output; a training forward leaves dlnf here
    floatX* dswiglu;                 // (B,T,F)
    floatX* dup;                     // (B,T,2F)
    floatX* dgnorm_out;              // (B,T,N·V)
    floatX* dscan_y;                 // (B,T,N·V)
    floatX* dproj;                   // (B,T,Cp)
    float* dqkv;                     // (B,T,Cc) fp32: the scan and the gate add into it
    float* dforget;                  // (B,T,N)
    floatX* dattn_y;                 // (B,T,D)
    floatX* dattn_qkv;               // (B,T,3D)
    float2* rope_cos_sin;            // (T, hd/2) RoPE's cos and sin of t·ω_i, filled by each forward; or nullptr
    float* partials;                 // the partial sums of the deterministic reductions (sized for the largest)
    float* h0;                       // (B,N,K,V) an M layer's random H_{-1} under state noise, filled before its
                                     // scan, which leaves its last state here
};

struct GPUModel {
    Config c;
    ParameterTable table;
    int B, T, chunk;
    size_t arena_bytes[3];
    char* arenas[3];

    float* params;         // fp32 master, canonical order
    floatX* params_lowp;   // floatX copy read by the GEMMs (== params in fp32 builds)
    float* grads;
    float* adam_m;
    float* adam_v;
    float* norm_squared;   // device scalar: squared global gradient norm

    // Data parallel (model/distributed.h): dist is null in a process of its own. The parameter and gradient
    // arenas hold padded_total >= table.total elements; this process updates elements [shard_offset,
    // shard_offset + shard_numel) of them, and adam_m, adam_v hold the moments of those: all of the arena, or
    // with ZeRO-1 (zero) the process's shard.
    Distributed* dist;
    bool zero;
    size_t padded_total, shard_offset, shard_numel;

    GPUActivations acts;
    GPUScratch s;
    int classifier_rows;   // rows of the (B·T, Vp) logits per classifier chunk: gpu_model_init's default keeps a
                           // chunk within 2 GiB; tests may set fewer
    floatX* logits;        // (classifier_rows, Vp): one chunk's logits (in a training forward, then its dlogits)
    float* losses;         // (B,T)
    int* tokens;           // (B,T+1)
    int* token_groups;     // encoder_groups_ints(B,T): positions grouped by token, for encoder_backward

    std::vector<DecayRun> decay_runs;
    std::vector<float> host_losses;
    std::vector<int> host_token_groups;
    int n_token_groups;    // groups in token_groups, set by a training forward
    Matmul mm;
    cudaStream_t stream;
    int adam_step;         // updates done, for bias correction
    StepTimer timer;       // GPU time per kernel family of a step; off unless started (train_m2rnn --profile 1)
};

// Bytes of the three arenas for a config and batch shape (for the start-up log and memory checks), in a
// process of `dist` (null: alone).
void gpu_model_arena_bytes(const Config& c, int B, int T, int chunk, size_t bytes[3], Distributed* dist = nullptr);

// What the kernels support beyond config_validate (M²RNN state sizes, attention head sizes); false with `err`
// naming the field.
// Host-only: callers check it before touching the GPU.
bool gpu_model_check_config(const Config& c, std::string& err);

// Allocates the arenas. False with `err` when the config or shape is unsupported or the GPU lacks the
// memory (the message says how much is needed and free, and which flags shrink it). `dist`: the processes the
// model is trained by (kept; gpu_model_grad_norm reduces the gradients over them), or null for this one alone.
bool gpu_model_init(GPUModel& m, const Config& c, int B, int T, std::string& err, Distributed* dist = nullptr);
void gpu_model_free(GPUModel& m);

void gpu_model_set_params(GPUModel& m, const float* host_params);  // table.total fp32 values
void gpu_model_get_params(GPUModel& m, float* host_params);
void gpu_model_get_grads(GPUModel& m, float* host_grads);
// AdamW's moments (table.total each) and its step count, for checkpoints. With ZeRO-1, get gathers the
// shards (a collective every process calls; host_m and host_v may be null where the result is not wanted; it
// overwrites the gradient arena, so call it between an update and the next zero_grad) and set keeps this
// process's shard of the full moments.
void gpu_model_get_optimizer(GPUModel& m, float* host_m, float* host_v);
void gpu_model_set_optimizer(GPUModel& m, const float* host_m, const float* host_v, int adam_step);

// Forward over tokens[B*(T+1)] (host memory); returns the mean loss. grad_accum_steps = 0 only
// evaluates; n >= 1 also runs the classifier's backward for the gradient of (mean loss / n): lm_head's
// gradient is added into the gradient arena and dlnf left for gpu_model_backward, so n micro-batches
// (each forward followed by its backward) accumulate the gradient of their average loss. With
// noise.amplitude > 0 every M²RNN scan starts from a random state (model_math.h: StateNoise), else from zero.
float gpu_model_forward(GPUModel& m, const int* host_tokens, int grad_accum_steps,
                        StateNoise noise = StateNoise());
// The logits (B,T,Vp) of the last forward, as fp32: the classifier run again, chunk by chunk, on the final
// norm's output that forward left.
void gpu_model_get_logits(GPUModel& m, float* host_logits);
void gpu_model_zero_grad(GPUModel& m);
// Adds the rest of the gradient of the last training forward (all but lm_head's) into the gradient arena.
void gpu_model_backward(GPUModel& m);
// The step's global gradient norm, once per step after its last backward; it counts the step in AdamW's bias
// correction (model/engine.h: whether or not gpu_model_update follows). With several processes it first sums
// the gradients over them (each process's loss was scaled by its share of the global batch), with ZeRO-1 as a
// reduce-scatter, the norm then summed from the shards.
float gpu_model_grad_norm(GPUModel& m);
// Global-norm clipping by that norm (on the device) and one AdamW step over the whole arena (with ZeRO-1 over
// this process's shard, then the parameters all-gathered).
void gpu_model_update(GPUModel& m, float lr, float beta1, float beta2, float eps, float weight_decay,
                      float max_grad_norm);

// The layers' forward over B sequences of T positions, the part of gpu_model_forward between the embedding and
// the classifier, which the decoder runs too: from x.layers[0].residual (the embedded tokens) to x.lnf. With a
// carry (generation: T = 1, one position of each of B sequences) the M²RNN layers continue from its states and
// conv inputs, and attention reads and extends its KV caches at position carry->t. Without one they start from
// zero, or under noise (the model's own activations, no carry) from m2rnn_initial_state_fill's random states.
void gpu_model_layers_forward(GPUModel& m, GPUActivations& x, int B, int T, GPUCarry* carry,
                              StateNoise noise = StateNoise());
