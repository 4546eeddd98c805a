// The model on the CPU, for training where there is no GPU: the reference (model/reference.h) in float, its hot
// loops on the threads of model/parallel.h, beside the state the GPU keeps — fp32 parameters, gradients and AdamW
// moments in canonical order, and the update count — so a checkpoint of either device resumes on the other. It
// is the trainer's Engine (model/engine.h) on the CPU; gradient accumulation as gpu_model_forward's (the reference
// adds each micro-batch's mean-loss gradient, update divides the sum by their count).
//
// Generation reruns the layers over the whole prefix for every token and the classifier on its last position
// (the reference keeps no state between calls): exact, as the GPU decoder is, but a token costs as much as its
// position, so a sample is at most CPU_MAX_GEN_TOKENS long.
#pragma once
#include <string>
#include <vector>

#include "config.h"
#include "engine.h"
#include "parameters.h"
#include "reference.h"

static const int CPU_MAX_GEN_TOKENS = 1024;

struct CPUModel : Engine {
    Config c;
    Reference<float> ref;          // B sequences of T: training and validation
    Reference<float> decoder;      // one sequence of up to max_len positions: generation
    std::vector<float> params, grads, adam_m, adam_v;  // table.total each
    int grad_accum_steps = 1;      // of the last training forward
    int adam_step = 0;             // steps done, for bias correction
    double norm = 0;               // grad_norm's, of the mean gradient
    std::vector<int> prefix;       // the tokens fed since decoder_reset
    std::vector<float> next_logits;  // (Vp) of the last decoder step

    void zero_grad() override;
    float forward(const int* tokens, int grad_accum_steps, StateNoise noise) override;
    void logits(float* out) override;
    void backward() override;
    float grad_norm() override;
    void update(float lr, float beta1, float beta2, float eps, float weight_decay, float max_grad_norm) override;
    void get_state(float* params, float* adam_m, float* adam_v) override;
    void decoder_reset() override;
    const float* decoder_step(int token) override;  // exits with a message past max_len
    double memory_gib() override;
    StepTimer* timer() override { return nullptr; }
    std::string memory_lines() override;
    std::string decoder_line() override;
};

// Sizes every buffer for B×T training and generation of up to max_len <= CPU_MAX_GEN_TOKENS tokens (0: none; the
// caller checks the bound); the parameters start as `params` (table.total values) and the moments at zero.
void cpu_model_init(CPUModel& m, const Config& c, int B, int T, int max_len, const std::vector<float>& params);
// AdamW's moments (table.total each) and its step count, from a checkpoint.
void cpu_model_set_optimizer(CPUModel& m, const float* adam_m, const float* adam_v, int adam_step);
