// The model on the CPU, for training where there is no GPU: the reference (model/reference.h) in float, its hot
// loops on the threads of model/parallel.h, beside the state the GPU keeps — fp32 parameters, gradients and AdamW
// moments in canonical order, and the update count — so a checkpoint of either device resumes on the other. The
// calls are gpu_model.h's and gpu_decoder.h's, step for step, so the trainer drives both alike:
//
//   cpu_model_zero_grad, cpu_model_forward (grad_accum_steps n: the backward that follows adds the gradient of
//   (mean loss / n)), cpu_model_backward, cpu_model_update (global-norm clip + AdamW, returns the norm);
//   cpu_model_decoder_reset / cpu_model_decoder_step: the logits that predict the next token of one sequence.
//
// Generation reruns the layers over the whole prefix for every token and the classifier on its last position
// (the reference keeps no state between calls): exact, as the GPU decoder is, but a token costs as much as its
// position, so a sample is at most CPU_MAX_GEN_TOKENS long.
#pragma once
#include <string>
#include <vector>

#include "config.h"
#include "parameters.h"
#include "reference.h"

static const int CPU_MAX_GEN_TOKENS = 1024;

struct CPUModel {
    Config c;
    Reference<float> ref;          // B sequences of T: training and validation
    Reference<float> decoder;      // one sequence of up to max_len positions: generation
    std::vector<float> params, grads, adam_m, adam_v;  // table.total each
    int grad_accum_steps = 1;      // of the last training forward
    int adam_step = 0;             // updates done, for bias correction
    std::vector<int> prefix;       // the tokens fed since cpu_model_decoder_reset, then one unused target slot
    std::vector<float> next_logits;  // (Vp) of the last decoder step
};

// Sizes every buffer for B×T training and generation of up to max_len <= CPU_MAX_GEN_TOKENS tokens (0: none; the
// caller checks the bound); the parameters start as `params` (table.total values) and the moments at zero.
void cpu_model_init(CPUModel& m, const Config& c, int B, int T, int max_len, const std::vector<float>& params);
// AdamW's moments (table.total each) and its step count, from a checkpoint.
void cpu_model_set_optimizer(CPUModel& m, const float* adam_m, const float* adam_v, int adam_step);

void cpu_model_zero_grad(CPUModel& m);
// Forward over tokens[B*(T+1)]; returns the mean loss. grad_accum_steps as gpu_model_forward's (0: only evaluates).
float cpu_model_forward(CPUModel& m, const int* tokens, int grad_accum_steps);
void cpu_model_backward(CPUModel& m);
float cpu_model_update(CPUModel& m, float lr, float beta1, float beta2, float eps, float weight_decay,
                       float max_grad_norm);

void cpu_model_decoder_reset(CPUModel& m);
// Feeds `token` at the next position and returns the logits (Vp) that predict the one after it, valid until the
// next step. Exits with a message past max_len.
const float* cpu_model_decoder_step(CPUModel& m, int token);
