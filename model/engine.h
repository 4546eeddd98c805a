// What the trainer (train_m2rnn.cu) needs of the model it trains: the run's loop, validation, sampling and
// checkpoints reach the model only through these calls, the same on both devices. The GPU's model is driven
// through them by train_m2rnn.cu's GPUEngine (model/gpu_model.h, model/gpu_decoder.h); the CPU's, CPUModel
// (model/cpu_model.h), implements them itself.
#pragma once
#include <string>

#include "model_math.h"  // StateNoise

struct StepTimer;  // model/step_timer.h

struct Engine {
    virtual ~Engine() = default;
    virtual void zero_grad() = 0;
    // Forward over tokens[B*(T+1)]; the mean loss. grad_accum_steps n >= 1: the backward that follows adds the
    // gradient of (mean loss / n); 0: only evaluates. noise: the M²RNN layers' random initial states of a training
    // forward (--state-noise); evaluations pass {}, amplitude 0: every scan starts from zero.
    virtual float forward(const int* tokens, int grad_accum_steps, StateNoise noise) = 0;
    // The logits (B,T,Vp) of the last forward, as fp32, into out.
    virtual void logits(float* out) = 0;
    virtual void backward() = 0;
    // Once per step, after its last backward: sums the gradients over the processes and returns their global norm,
    // the same on every process. It counts the step in AdamW's bias correction whether or not update follows, so
    // that a step whose update the trainer skips (--skip-z) leaves the count equal to the step, as a checkpoint
    // stores it.
    virtual float grad_norm() = 0;
    // Global-norm clipping (by grad_norm's norm) and one AdamW step.
    virtual void update(float lr, float beta1, float beta2, float eps, float weight_decay, float max_grad_norm) = 0;
    // The parameters and AdamW's moments into table.total floats each; null where not wanted (every process calls
    // it: with ZeRO-1 it gathers the moments' shards).
    virtual void get_state(float* params, float* adam_m, float* adam_v) = 0;
    // Generation of one sequence: reset, then each token fed returns the logits (Vp) that predict the next one,
    // valid until the next step.
    virtual void decoder_reset() = 0;
    virtual const float* decoder_step(int token) = 0;
    virtual double memory_gib() = 0;         // in use: the GPU's memory, or the process's peak resident set
    virtual StepTimer* timer() = 0;          // --profile 1's kernel-family timer; null on the CPU
    virtual std::string memory_lines() = 0;  // the start-up log's "# ..." account of the model's memory
    virtual std::string decoder_line() = 0;  // and a few words on how samples are generated
};
