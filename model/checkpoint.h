// Checkpoints: a model file (config + fp32 parameters) and a companion state file (optimizer moments
// and the data-loader position), each written to a temporary name, synced to the disk and renamed, so a crash
// or a power cut never leaves a partial file under the final name and never destroys the previous checkpoint.
// A checkpoint is the pair: the state file is written second, so a model file without one is not a checkpoint.
//
// model_<step>.bin (little-endian):
//   int32 header[256]:
//     [0] magic 20261123   [1] version 1   [2] step (optimizer steps done)
//     [3] L  [4] D  [5] F  [6] heads  [7] rope  [8] N  [9] K  [10] V  [11] Nq  [12] Nk
//     [13] vocab  [14] Vp  [15] T  [16] clip (the bits of a float32)
//     [17], [18] parameter count, low and high 32 bits
//     [64 .. 128) the layer pattern, NUL-padded ASCII (256 bytes)
//   float32 params[count], in the canonical order of model/parameters.h
// state_<step>.bin:
//   int64 header[16]: [0] magic 20261124  [1] version 1  [2] step  [3] parameter count
//                     [4] data epoch  [5] data shard  [6] data window  [7] seed
//   float32 adam_m[count], float32 adam_v[count]
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "config.h"
#include "parameters.h"

#define CHECKPOINT_MODEL_MAGIC 20261123
#define CHECKPOINT_STATE_MAGIC 20261124
#define CHECKPOINT_VERSION 1

struct TrainingState {
    int64_t step;
    int64_t data_epoch, data_shard, data_window;
    int64_t seed;
};

// Writes the parts one after another to path.tmp, fsyncs it, renames it to path and fsyncs the directory, so a
// crash never leaves a partial file under the final name (model/safetensors.h writes its files this way too).
// False with `err` naming the file when its file system has fewer free bytes than the parts (statvfs: nothing is
// written), or when a write fails (ENOSPC, EFBIG over a file-size limit, ...: path.tmp is removed).
bool write_file_atomically(const std::string& path, const std::vector<std::pair<const void*, size_t>>& parts,
                           std::string& err);
// params, adam_m, adam_v are in the arena's layout (model/parameters.h: table.total elements); the files hold the
// tensors back to back (table.count), so the format does not depend on the arena's alignment.
bool checkpoint_write_model(const std::string& path, const Config& c, int64_t step, const std::vector<float>& params,
                            std::string& err);
bool checkpoint_write_state(const std::string& path, const ParameterTable& t, const TrainingState& s,
                            const std::vector<float>& adam_m, const std::vector<float>& adam_v, std::string& err);
// Reads a model file: its config, step and parameters; false with `err` naming the file and the problem
// (missing, wrong magic or version, an invalid config, a size that does not match).
bool checkpoint_read_model(const std::string& path, Config& c, int64_t& step, std::vector<float>& params,
                           std::string& err);
bool checkpoint_read_state(const std::string& path, const ParameterTable& t, TrainingState& s,
                           std::vector<float>& adam_m, std::vector<float>& adam_v, std::string& err);
// The steps with both files in `dir`, ascending; the highest of them, or -1 when there is none.
std::vector<int64_t> checkpoint_steps(const std::string& dir);
int64_t checkpoint_latest(const std::string& dir);
// Removes the model_N.bin.tmp and state_N.bin.tmp files of writes that were killed mid-way; how many.
int checkpoint_remove_debris(const std::string& dir);
std::string checkpoint_model_path(const std::string& dir, int64_t step);
std::string checkpoint_state_path(const std::string& dir, int64_t step);
