// The parameter table: every tensor of the model, in the canonical order of docs/model.md §4, with its shape,
// initialisation rule and weight-decay flag. Checkpoints, the parameter arena, the CPU reference and
// the GPU code all take offsets from this one table, so they cannot disagree on layout.
//
// In memory (the arena) every tensor starts at a multiple of PARAM_ALIGN elements: 256 bytes of the GEMMs' bf16
// copy, 512 of fp32, the alignment cuBLASLt's fastest kernels assume and whole 16-byte packs for the optimizer;
// a 2-D tensor's slot has its rows rounded up to WEIGHT_ROWS_MULTIPLE (model_math.h), so a GEMM may run over the
// extra rows. The gaps hold zeros, belong to no tensor and stay zero (zero gradient, zero moments). Files hold
// the tensors back to back, in the same order (parameters_pack / parameters_unpack).
//
//   wte (Vp, D)
//   per layer l:  ln1 (D)
//                 M: in_proj (Nq·K+Nk·K+2·N·V+N, D), conv (Nq·K+Nk·K+N·V, 4), A_log (N), dt_bias (N),
//                    W (N, V, V), D (N, V) (the skip vector D_skip, kind P_SKIP), gnorm (N·V), out_proj (D, N·V)
//                 A: qkv (3D, D), attn_out (D, D)
//                 ln2 (D), up (2F, D), down (D, F)
//   lnf (D), lm_head (Vp, D)
#pragma once
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "config.h"

enum ParamKind {
    P_WTE, P_LN1,
    P_IN_PROJ, P_CONV, P_A_LOG, P_DT_BIAS, P_W, P_SKIP, P_GNORM, P_OUT_PROJ,  // M layers
    P_QKV, P_ATTN_OUT,                                                    // A layers
    P_LN2, P_UP, P_DOWN, P_LNF, P_LM_HEAD,
    NUM_PARAM_KINDS
};

enum InitRule {
    INIT_NORMAL,           // N(0, 0.02)
    INIT_NORMAL_RESIDUAL,  // N(0, 0.02 / sqrt(2L)): the projections that write into the residual stream
    INIT_ONES,             // norms and the D skip
    INIT_IDENTITY,         // W_n = I for every head
    INIT_A_LOG,            // A ~ U(0, 16), A_log = log A
    INIT_DT_BIAS,          // dt = exp(U(log 1e-3, log 0.1)) clamped >= 1e-4, dt_bias = softplus⁻¹(dt)
};

struct ParamTensor {
    std::string name;      // "wte", "l3.in_proj", ...: the names of the golden files and checkpoints
    ParamKind kind;
    int layer;             // -1 for wte, lnf, lm_head
    int shape[3];          // unused trailing dims are 1
    int ndim;
    size_t numel;
    size_t offset;         // in elements, from the start of the parameter arena (a multiple of PARAM_ALIGN)
    size_t file_offset;    // in elements, in files: the tensors back to back
    InitRule init;
    bool decay;            // AdamW weight decay applies
};

struct ParameterTable {
    std::vector<ParamTensor> tensors;   // canonical order
    std::vector<std::vector<int>> by_layer;  // by_layer[l][kind] = index into tensors, or -1
    int wte, lnf, lm_head;              // indices of the global tensors
    size_t total;                       // arena elements, the gaps included (a multiple of PARAM_ALIGN)
    size_t count;                       // parameters: the tensors' elements, as files hold them
};

static const size_t PARAM_ALIGN = 128;

ParameterTable parameter_table_build(const Config& c);

// The arena's tensors back to back (packed: count elements) and back (arena: total elements, the gaps zeroed).
template <typename T> void parameters_pack(const ParameterTable& t, const T* arena, T* packed) {
    for (const ParamTensor& p : t.tensors) memcpy(packed + p.file_offset, arena + p.offset, p.numel * sizeof(T));
}
template <typename T> void parameters_unpack(const ParameterTable& t, const T* packed, T* arena) {
    memset(arena, 0, t.total * sizeof(T));
    for (const ParamTensor& p : t.tensors) memcpy(arena + p.offset, packed + p.file_offset, p.numel * sizeof(T));
}

// A run of consecutive tensors that share a weight-decay setting (one AdamW launch each), with the gap after each
// tensor, so that the runs tile the arena [0, total) in multiples of PARAM_ALIGN (the gaps stay zero in AdamW).
struct DecayRun {
    size_t offset, numel;
    bool decay;
};
std::vector<DecayRun> parameter_decay_runs(const ParameterTable& t);

// Offset of layer l's tensor of a kind (the kind must exist in that layer).
size_t param_offset(const ParameterTable& t, int layer, ParamKind kind);

// Fills params[total] following each tensor's rule, deterministically from the seed.
void parameters_init(const ParameterTable& t, const Config& c, unsigned long long seed, double* params);

// "128x32" for a tensor's shape.
std::string param_shape_string(const ParamTensor& p);
