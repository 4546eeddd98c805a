// Generation on the GPU: the model's forward one position at a time, for sampling. It reads the parameters of a
// GPUModel (no copy) and runs the model's own layer loop (gpu_model_layers_forward) at T = 1 with a carry
// (GPUCarry, model/gpu_model.h), kept in an arena of its own, of what a sequence's earlier positions leave behind:
//   M²RNN layer:   the scan's state (N, K, V) fp32 and the last three conv inputs (Cc, 3) fp32 of each sequence,
//                  so a new token costs the same at every position
//   attention:     a KV cache (max_len, D) of k (rotated when RoPE is on) and v per sequence
// Feeding tokens x_0 … x_t one step at a time gives, at step t, the logits that the full forward over x_0 … x_t
// gives at its last position (tests/test_decoder.cu checks this against the CPU reference).
#pragma once
#include <string>
#include <vector>

#include "gpu_model.h"

struct GPUDecoder {
    GPUModel* model;       // parameters, cuBLASLt handle and workspace, stream
    int n_seq;
    size_t arena_bytes;
    char* arena;
    GPUCarry carry;
    // one position's activations, every layer's pointers aliasing the same buffers
    GPUActivations acts;
    int* tokens;                               // (n_seq, 2): encoder_forward's (B, T+1) layout at T = 1
    floatX* logits;                            // (n_seq, Vp)
    std::vector<int> host_tokens;              // (n_seq, 2), staged for the upload
    std::vector<floatX> host_logits_lowp;
    std::vector<float> host_logits;            // (n_seq, Vp)
};

// Allocates the decoder's arena for n_seq sequences of up to max_len positions. False with `err` when the GPU
// lacks the memory or max_len exceeds what the attention step supports.
bool gpu_decoder_init(GPUDecoder& d, GPUModel& m, int n_seq, int max_len, std::string& err);
void gpu_decoder_free(GPUDecoder& d);
// Starts empty sequences: zero states and conv inputs, t = 0.
void gpu_decoder_reset(GPUDecoder& d);
// Feeds tokens[n_seq] at position t and returns the logits (n_seq, Vp) that predict position t + 1 (host
// memory, valid until the next step). Exits with a message past max_len.
const float* gpu_decoder_step(GPUDecoder& d, const int* host_tokens);
