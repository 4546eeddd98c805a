// Where one training step's GPU time goes, by kernel family (train_m2rnn --profile 1, make bench).
//
// The model marks the start of each group of launches with step_timer_mark(timer, family): a CUDA event
// recorded on the model's stream. The GPU time between two consecutive marks belongs to the family of the first;
// step_timer_stop ends the last span, waits for the step and sums the spans per family. The spans tile the step
// from step_timer_start to step_timer_stop, so the families add up to the step's GPU time, including any time
// the GPU waits for the host inside a span (host syncs and transfers are marked FAMILY_OTHER).
//
// Off unless started: a mark is then one branch, no event is created or recorded, and the stream runs exactly as
// without the timer. Events are created on first use and kept for the next profiled step.
#pragma once
#include <string>
#include <vector>

#include "../kernels/common.cuh"

enum StepFamily {
    FAMILY_GEMM,        // matmul_forward / matmul_backward of the layers (cuBLASLt)
    FAMILY_SCAN,        // the M²RNN scan, forward and backward
    FAMILY_M2RNN_IO,    // m2rnn_input (conv + silu, forget gate) and m2rnn_gate (D skip, silu(g), gnorm)
    FAMILY_ATTENTION,   // attention and RoPE
    FAMILY_NORM,        // RMSNorm, fused with the residual add
    FAMILY_MLP,         // SwiGLU's elementwise step
    FAMILY_CLASSIFIER,  // the lm_head GEMMs (forward, dx, dW) and cross-entropy, chunk by chunk
    FAMILY_EMBEDDING,   // the token embedding, forward and backward
    FAMILY_OPTIMIZER,   // the global gradient norm and AdamW
    FAMILY_COMMS,       // the gradients summed over processes, the parameters gathered (ZeRO-1): NCCL
    FAMILY_OTHER,       // token and loss transfers, host waits, zeroing the gradients
    FAMILY_COUNT
};

static inline const char* step_family_name(int family) {
    static const char* names[FAMILY_COUNT] = {"GEMMs of the layers", "M2RNN scan", "M2RNN input/gate",
                                              "attention", "norms + residual", "MLP elementwise",
                                              "classifier + xent", "embedding", "optimizer", "NCCL (multi-GPU)",
                                              "other"};
    return names[family];
}

struct StepTimer {
    cudaStream_t stream = nullptr;
    bool on = false;                    // between step_timer_start and step_timer_stop
    std::vector<cudaEvent_t> events;    // events[i] starts span i
    std::vector<StepFamily> families;   // families[i]: the family span i belongs to
    size_t used = 0;                    // events recorded in this step
};

static inline void step_timer_mark(StepTimer& t, StepFamily family) {
    if (!t.on) return;
    if (t.used == t.events.size()) {
        cudaEvent_t e;
        cudaCheck(cudaEventCreate(&e));
        t.events.push_back(e);
        t.families.push_back(family);
    }
    t.families[t.used] = family;
    cudaCheck(cudaEventRecord(t.events[t.used++], t.stream));
}

static inline void step_timer_start(StepTimer& t) {
    t.on = true;
    t.used = 0;
    step_timer_mark(t, FAMILY_OTHER);
}

// Ends the step's last span, waits for it, and sets ms[f] to family f's milliseconds.
static inline void step_timer_stop(StepTimer& t, double ms[FAMILY_COUNT]) {
    step_timer_mark(t, FAMILY_OTHER);
    t.on = false;
    cudaCheck(cudaEventSynchronize(t.events[t.used - 1]));
    for (int f = 0; f < FAMILY_COUNT; f++) ms[f] = 0;
    for (size_t i = 0; i + 1 < t.used; i++) {
        float span = 0;
        cudaCheck(cudaEventElapsedTime(&span, t.events[i], t.events[i + 1]));
        ms[t.families[i]] += span;
    }
}

static inline void step_timer_free(StepTimer& t) {
    for (cudaEvent_t e : t.events) cudaCheck(cudaEventDestroy(e));
    t.events.clear();
    t.families.clear();
    t.used = 0;
    t.on = false;
}

// The table of a step_timer_stop: one line per family, then the total (the step's GPU time).
static inline std::string step_timer_table(const double ms[FAMILY_COUNT]) {
    double total = 0;
    for (int f = 0; f < FAMILY_COUNT; f++) total += ms[f];
    std::string table;
    char line[96];
    snprintf(line, sizeof(line), "  %-20s %10s %10s\n", "family", "ms", "% of step");
    table += line;
    for (int f = 0; f < FAMILY_COUNT; f++) {
        snprintf(line, sizeof(line), "  %-20s %10.2f %9.1f%%\n", step_family_name(f), ms[f],
                 total > 0 ? 100.0 * ms[f] / total : 0.0);
        table += line;
    }
    snprintf(line, sizeof(line), "  %-20s %10.2f %9.1f%%\n", "total", total, 100.0);
    return table + line;
}
