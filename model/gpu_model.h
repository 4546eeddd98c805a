// The model on the GPU: three arenas allocated once from the config, then forward, backward and the
// AdamW update as straight sequences of kernel launches, step for step the CPU reference
// (model/reference.cpp) with the same names in the same order.
//
// Arenas (sizes printed at start-up; nothing is allocated inside a step):
//   1. parameters: the fp32 master copy in canonical order, and (bf16 builds) its floatX copy for the GEMMs
//   2. gradients + optimizer state: fp32 gradients, AdamW m and v
//   3. activations + scratch: what the forward keeps for the backward (M²RNN state only every `chunk`
//      steps), the backward's scratch, logits, tokens and their positions grouped by token, losses, the
//      cuBLASLt workspace
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

// What one layer's forward keeps for its backward (B·T positions).
struct GPULayer {
    floatX* residual;                // (B,T,D) the layer's input
    floatX* ln1; float* ln1_rstd;    // (B,T,D), (B,T)
    // M²RNN
    floatX* proj;                    // (B,T,Cp) in_proj output [q | k | v | f_raw | g]
    floatX* qkv;                     // (B,T,Cc) silu(conv)
    float* forget;                   // (B,T,N)
    floatX* scan_y;                  // (B,T,N·V) H_tᵀq_t
    float* checkpoints;              // the state every `chunk` steps
    floatX* gnorm_out; float* gnorm_rstd;  // (B,T,N·V), (B,T)
    // attention
    floatX* attn_qkv;                // (B,T,3D), q and k rotated when RoPE is on
    float* attn_prob;                // (B,heads,T,T)
    floatX* attn_y;                  // (B,T,D)
    // both
    floatX* residual2;               // (B,T,D) residual + mixer output
    floatX* ln2; float* ln2_rstd;
    floatX* up;                      // (B,T,2F)
    floatX* swiglu;                  // (B,T,F)
};

// The backward's scratch, reused by every layer.
struct GPUScratch {
    floatX* branch_out;              // (B,T,D) a mixer's or an MLP's output before it joins the residual
    floatX* dresidual;               // (B,T,D) gradient of the residual stream
    floatX* dln;                     // (B,T,D) gradient of a norm's output
    floatX* dswiglu;                 // (B,T,F)
    floatX* dup;                     // (B,T,2F)
    floatX* dgnorm_out;              // (B,T,N·V)
    floatX* dscan_y;                 // (B,T,N·V)
    floatX* dproj;                   // (B,T,Cp)
    float* dqkv;                     // (B,T,Cc) fp32: the scan and the gate add into it
    float* dforget;                  // (B,T,N)
    floatX* dattn_y;                 // (B,T,D)
    floatX* dattn_qkv;               // (B,T,3D)
    float* partials;                 // the partial sums of the deterministic reductions (sized for the largest)
};

// A run of consecutive parameter tensors that share a weight-decay setting: one AdamW launch each.
struct DecayRun {
    size_t offset, numel;
    bool decay;
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

    std::vector<GPULayer> layers;
    GPUScratch s;
    floatX* final_residual; floatX* lnf; float* lnf_rstd;
    floatX* logits;        // (B,T,Vp); after the forward of a training step, dlogits in place
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
};

// Bytes of the three arenas for a config and batch shape (for the start-up log and memory checks).
void gpu_model_arena_bytes(const Config& c, int B, int T, int chunk, size_t bytes[3]);

// What the kernels support beyond config_validate (M²RNN state sizes); false with `err` naming the field.
// Host-only: callers check it before touching the GPU.
bool gpu_model_check_config(const Config& c, std::string& err);

// Allocates the arenas. False with `err` when the config or shape is unsupported or the GPU lacks the
// memory (the message says how much is needed and free, and which flags shrink it).
bool gpu_model_init(GPUModel& m, const Config& c, int B, int T, std::string& err);
void gpu_model_free(GPUModel& m);

void gpu_model_set_params(GPUModel& m, const float* host_params);  // table.total fp32 values
void gpu_model_get_params(GPUModel& m, float* host_params);
void gpu_model_get_grads(GPUModel& m, float* host_grads);
// AdamW's moments (table.total each) and its step count, for checkpoints.
void gpu_model_get_optimizer(GPUModel& m, float* host_m, float* host_v);
void gpu_model_set_optimizer(GPUModel& m, const float* host_m, const float* host_v, int adam_step);

// Forward over tokens[B*(T+1)] (host memory); returns the mean loss. grad_accum_steps = 0 only
// evaluates; n >= 1 also replaces the logits by the gradient of (mean loss / n), ready for
// gpu_model_backward, so n micro-batches accumulate the gradient of their average loss.
float gpu_model_forward(GPUModel& m, const int* host_tokens, int grad_accum_steps);
// The logits (B,T,Vp) of the last evaluating forward (grad_accum_steps = 0), as fp32.
void gpu_model_get_logits(GPUModel& m, float* host_logits);
void gpu_model_zero_grad(GPUModel& m);
// Adds the gradient of the last training forward into the gradient arena.
void gpu_model_backward(GPUModel& m);
// Global-norm clipping (on the device) and one AdamW step over the whole arena; returns the gradient
// norm before clipping.
float gpu_model_update(GPUModel& m, float lr, float beta1, float beta2, float eps, float weight_decay,
                       float max_grad_norm);
