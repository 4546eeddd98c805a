// The model configuration (docs/model.md §1): a layer pattern over {M, A} and the sizes of each mixer.
//
//   pattern   one letter per layer: 'M' = M²RNN mixer, 'A' = causal softmax attention
//   D, F      model width and SwiGLU hidden width
//   heads     attention heads (head size D / heads); rope: rotary embedding on q, k of A layers
//   N, K, V   M²RNN heads, key size, value size; Nq, Nk query/key heads (each divides N)
//   clip      state-gradient clip c of the M²RNN backward; 0 means none (exact gradient)
//   vocab     real vocabulary; Vp its padded size (multiple of 128, >= vocab)
//   T         the sequence length the model is trained at
//
// config_validate names the first bad field and why; every program calls it before using a config.
#pragma once
#include <string>

#include "model_math.h"

#define MAX_LAYERS 256

struct Config {
    char pattern[MAX_LAYERS + 1];
    int L;                 // strlen(pattern)
    int D, F, heads;
    int rope;              // 0 or 1
    int N, K, V, Nq, Nk;
    double clip;           // 0 = no state-gradient clipping
    int vocab, Vp;
    int T;
};

int config_count(const Config& c, char mixer); // number of layers of that mixer
// Where an M²RNN layer of this config keeps each head's channels (model_math.h).
M2RNNLayout config_m2rnn_layout(const Config& c);

// Round a vocabulary up to the padded size (multiple of 128).
int config_padded_vocab(int vocab);

// Fills `c` from a named preset ("tiny", "d12-hybrid", "paper-410M-hybrid",
// "paper-410M-attention"). Returns false and sets `err` for an unknown name.
bool config_preset(const char* name, Config& c, std::string& err);

// Sets the pattern (and L) from a string; false with `err` if it is empty, too long or not over {M,A}.
bool config_set_pattern(Config& c, const char* pattern, std::string& err);

// Checks every field; false with `err` naming the bad field and why.
bool config_validate(const Config& c, std::string& err);

// Training FLOPs (forward + backward) per token at sequence length c.T, for MFU: the matrix products only,
// term by term in model/config.cpp (GEMMs of each layer type, attention's scores, the M²RNN scan's H W and
// Hᵀq, the classifier); elementwise work (tanh, gates, norms, softmax) and the backward's recomputation
// are not counted.
double config_flops_per_token(const Config& c);

// One line describing the config, for logs.
std::string config_describe(const Config& c);

// The tiktoken encoding a vocabulary belongs to ("gpt2" for 50257, "cl100k_base" for 100277), or nullptr for a
// vocabulary of no known tokenizer.
const char* config_tokenizer(const Config& c);

// Names of the presets, comma-separated, for help texts.
const char* config_preset_names();
