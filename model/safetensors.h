// A model in the format other tools read: a directory with model.safetensors and config.json (README: File
// formats). Written and read here, with no library; m2rnn_export converts checkpoints both ways and
// train_m2rnn -e reads model.safetensors directly.
//
// model.safetensors (the safetensors format):
//   uint64 n (little-endian), then n bytes of JSON, padded with spaces to a multiple of 8:
//     {"__metadata__": {"format": "pt", "step": "<optimizer steps>"},
//      "<name>": {"dtype": "F32" | "BF16", "shape": [...], "data_offsets": [begin, end]}, ...}
//   then the data section: each tensor's row-major bytes at [begin, end) of it. The writer puts the tensors in
//   the canonical order of model/parameters.h, back to back; the reader accepts any order, but the ranges must
//   cover the data section exactly, without gaps or overlaps.
// Names and shapes (PyTorch's: the conv as a depthwise nn.Conv1d holds it, (channels, 1, width)):
//   model.embed_tokens.weight (Vp, D)              wte
//   model.layers.<l>.mixer_norm.weight (D)         ln1
//   model.layers.<l>.mixer.in_proj.weight (Cp, D)  M layers: in_proj, conv1d.weight (Cc, 1, 4), A_log (N),
//                                                  dt_bias (N), W (N, V, V), D (N, V), norm.weight (N·V) (gnorm),
//                                                  out_proj.weight (D, N·V)
//   model.layers.<l>.mixer.qkv_proj.weight (3D, D) A layers: qkv_proj, out_proj.weight (D, D) (attn_out)
//   model.layers.<l>.mlp_norm.weight (D)           ln2; mlp.up_proj.weight (2F, D), mlp.down_proj.weight (D, F)
//   model.norm.weight (D), lm_head.weight (Vp, D)  lnf, lm_head
// F32 is the trainer's fp32 master weights bit for bit, so checkpoint -> safetensors -> checkpoint is
// bit-identical; BF16 rounds each to the nearest bfloat16 (ties to even) and reads back as that value.
//
// config.json: every field of the Config (model/config.h) under the names below, the constants of the model that
// no flag changes (rms_norm_eps, rope_theta, conv_width, tie_word_embeddings), the tokenizer the vocabulary
// belongs to and the tensors' dtype. The reader requires every field and refuses unknown ones, constants other
// than the model's, and a config that does not describe the tensors.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "config.h"
#include "parameters.h"

#define SAFETENSORS_MODEL_FILE "model.safetensors"
#define SAFETENSORS_CONFIG_FILE "config.json"

// The safetensors name of a tensor of the table and its shape as PyTorch holds it.
std::string safetensors_name(const ParamTensor& p);
std::vector<int64_t> safetensors_shape(const ParamTensor& p);

// Writes dir/model.safetensors and dir/config.json (creating dir when missing), each to a temporary name
// renamed into place. bf16: BF16 tensors instead of F32.
bool safetensors_write(const std::string& dir, const Config& c, int64_t step, const std::vector<float>& params,
                       bool bf16, std::string& err);

// Reads a model.safetensors and the config.json beside it: the config, the step of its metadata (0 when it has
// none) and the parameters in canonical order. False with `err` naming the file, the problem and what to do.
bool safetensors_read(const std::string& path, Config& c, int64_t& step, std::vector<float>& params,
                      std::string& err);

// Whether a -e argument names a safetensors file (by its extension).
bool safetensors_is_path(const std::string& path);
