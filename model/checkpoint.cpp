#include "checkpoint.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "parameters.h"

std::string checkpoint_model_path(const std::string& dir, int64_t step) {
    return dir + "/model_" + std::to_string(step) + ".bin";
}
std::string checkpoint_state_path(const std::string& dir, int64_t step) {
    return dir + "/state_" + std::to_string(step) + ".bin";
}

bool write_file_atomically(const std::string& path, const std::vector<std::pair<const void*, size_t>>& parts,
                           std::string& err) {
    const std::string tmp = path + ".tmp";
    const size_t slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    size_t bytes = 0;
    for (const auto& part : parts) bytes += part.second;
    struct statvfs fs;
    if (statvfs(dir.c_str(), &fs) == 0 && (unsigned long long)fs.f_bavail * fs.f_frsize < bytes) {
        err = path + ": needs " + std::to_string(bytes) + " bytes but its file system has " +
              std::to_string((unsigned long long)fs.f_bavail * fs.f_frsize) + " free; nothing written";
        return false;
    }
    const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { err = tmp + ": cannot create (" + strerror(errno) + "; is the directory writable?)"; return false; }
    size_t written = 0;
    int error = 0;
    for (const auto& part : parts) {
        const char* p = (const char*)part.first;
        for (size_t done = 0; done < part.second && !error;) {
            const ssize_t n = write(fd, p + done, part.second - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) { error = n < 0 ? errno : EIO; break; }
            done += (size_t)n;
            written += (size_t)n;
        }
    }
    // on the disk before the rename, so that the final name never holds a file the page cache alone had
    if (!error && fsync(fd) != 0) error = errno;
    if (close(fd) != 0 && !error) error = errno;
    if (error) {
        remove(tmp.c_str());
        err = tmp + ": write failed after " + std::to_string(written) + " of " + std::to_string(bytes) + " bytes (" +
              strerror(error) + "); the partial file is removed";
        return false;
    }
    if (rename(tmp.c_str(), path.c_str()) != 0) {
        err = path + ": rename failed (" + strerror(errno) + ")";
        remove(tmp.c_str());
        return false;
    }
    // the rename itself is durable once the directory is
    const int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dir_fd >= 0) {
        fsync(dir_fd);
        close(dir_fd);
    }
    return true;
}

// The arena-layout tensor (t.total elements) back to back, as files hold it.
static std::vector<float> packed(const ParameterTable& t, const std::vector<float>& arena) {
    std::vector<float> out(t.count);
    parameters_pack(t, arena.data(), out.data());
    return out;
}

bool checkpoint_write_model(const std::string& path, const Config& c, int64_t step, const std::vector<float>& params,
                            std::string& err) {
    const std::vector<float> file_params = packed(parameter_table_build(c), params);
    int32_t h[256] = {0};
    h[0] = CHECKPOINT_MODEL_MAGIC; h[1] = CHECKPOINT_VERSION; h[2] = (int32_t)step;
    h[3] = c.L; h[4] = c.D; h[5] = c.F; h[6] = c.heads; h[7] = c.rope; h[8] = c.N; h[9] = c.K; h[10] = c.V;
    h[11] = c.Nq; h[12] = c.Nk; h[13] = c.vocab; h[14] = c.Vp; h[15] = c.T;
    float clip = (float)c.clip;
    memcpy(&h[16], &clip, 4);
    const uint64_t count = file_params.size();
    h[17] = (int32_t)(count & 0xFFFFFFFFu);
    h[18] = (int32_t)(count >> 32);
    memcpy(&h[64], c.pattern, c.L);
    return write_file_atomically(path, {{h, sizeof(h)}, {file_params.data(), count * sizeof(float)}}, err);
}

bool checkpoint_write_state(const std::string& path, const ParameterTable& t, const TrainingState& s,
                            const std::vector<float>& adam_m, const std::vector<float>& adam_v, std::string& err) {
    const std::vector<float> m = packed(t, adam_m), v = packed(t, adam_v);
    int64_t h[16] = {0};
    h[0] = CHECKPOINT_STATE_MAGIC; h[1] = CHECKPOINT_VERSION; h[2] = s.step; h[3] = (int64_t)t.count;
    h[4] = s.data_epoch; h[5] = s.data_shard; h[6] = s.data_window; h[7] = s.seed;
    return write_file_atomically(path, {{h, sizeof(h)}, {m.data(), m.size() * sizeof(float)},
                                   {v.data(), v.size() * sizeof(float)}}, err);
}

// Opens a file and checks its size is exactly `expected` bytes.
static FILE* open_sized(const std::string& path, long expected_or_minus1, long& size, std::string& err) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) { err = path + ": cannot open (" + strerror(errno) + ")"; return nullptr; }
    if (!S_ISREG(st.st_mode)) { err = path + ": not a regular file"; return nullptr; }
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) { err = path + ": cannot open (" + strerror(errno) + ")"; return nullptr; }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (expected_or_minus1 >= 0 && size != expected_or_minus1) {
        err = path + ": " + std::to_string(size) + " bytes, expected " + std::to_string(expected_or_minus1) +
              " (truncated or corrupted)";
        fclose(f);
        return nullptr;
    }
    return f;
}

bool checkpoint_read_model(const std::string& path, Config& c, int64_t& step, std::vector<float>& params,
                           std::string& err) {
    long size = 0;
    FILE* f = open_sized(path, -1, size, err);
    if (!f) return false;
    int32_t h[256];
    if (size < (long)sizeof(h) || fread(h, sizeof(h), 1, f) != 1) {
        fclose(f);
        err = path + ": shorter than the 1024-byte checkpoint header";
        return false;
    }
    if (h[0] != CHECKPOINT_MODEL_MAGIC || h[1] != CHECKPOINT_VERSION) {
        fclose(f);
        err = path + ": not an m2rnn model checkpoint (magic " + std::to_string(h[0]) + ", version " +
              std::to_string(h[1]) + "; expected " + std::to_string(CHECKPOINT_MODEL_MAGIC) + ", " +
              std::to_string(CHECKPOINT_VERSION) + ")";
        return false;
    }
    memset(&c, 0, sizeof(c));
    char pattern[MAX_LAYERS + 1] = {0};
    memcpy(pattern, &h[64], MAX_LAYERS);
    std::string perr;
    if (!config_set_pattern(c, pattern, perr)) { fclose(f); err = path + ": " + perr; return false; }
    c.D = h[4]; c.F = h[5]; c.heads = h[6]; c.rope = h[7]; c.N = h[8]; c.K = h[9]; c.V = h[10];
    c.Nq = h[11]; c.Nk = h[12]; c.vocab = h[13]; c.Vp = h[14]; c.T = h[15];
    float clip;
    memcpy(&clip, &h[16], 4);
    c.clip = clip;
    if (h[3] != c.L || !config_validate(c, perr)) { fclose(f); err = path + ": bad config in header: " + perr; return false; }
    step = h[2];
    const uint64_t count = (uint32_t)h[17] | ((uint64_t)(uint32_t)h[18] << 32);
    const ParameterTable t = parameter_table_build(c);
    const size_t expected = t.count;
    if (count != expected) {
        fclose(f);
        err = path + ": the header says " + std::to_string(count) + " parameters but its config has " +
              std::to_string(expected) + " (corrupted)";
        return false;
    }
    if (size != (long)(sizeof(h) + expected * sizeof(float))) {
        fclose(f);
        err = path + ": " + std::to_string(size) + " bytes, expected 1024 + 4 x " + std::to_string(expected) +
              " parameters = " + std::to_string(sizeof(h) + expected * sizeof(float)) + " (truncated or corrupted)";
        return false;
    }
    std::vector<float> file_params(expected);
    bool ok = fread(file_params.data(), sizeof(float), expected, f) == expected;
    fclose(f);
    if (!ok) { err = path + ": read failed"; return false; }
    params.resize(t.total);
    parameters_unpack(t, file_params.data(), params.data());
    return true;
}

bool checkpoint_read_state(const std::string& path, const ParameterTable& t, TrainingState& s,
                           std::vector<float>& adam_m, std::vector<float>& adam_v, std::string& err) {
    const size_t count = t.count;
    long size = 0;
    int64_t h[16];
    FILE* f = open_sized(path, (long)(sizeof(h) + 2 * count * sizeof(float)), size, err);
    if (!f) return false;
    bool ok = fread(h, sizeof(h), 1, f) == 1;
    if (ok && (h[0] != CHECKPOINT_STATE_MAGIC || h[1] != CHECKPOINT_VERSION)) {
        fclose(f);
        err = path + ": not an m2rnn optimizer state file (magic " + std::to_string(h[0]) + ", version " +
              std::to_string(h[1]) + "; expected " + std::to_string(CHECKPOINT_STATE_MAGIC) + ", " +
              std::to_string(CHECKPOINT_VERSION) + ")";
        return false;
    }
    if (ok && h[3] != (int64_t)count) {
        fclose(f);
        err = path + ": the optimizer state of a model of " + std::to_string(h[3]) + " parameters, not of this one (" +
              std::to_string(count) + ")";
        return false;
    }
    std::vector<float> m(count), v(count);
    ok = ok && fread(m.data(), sizeof(float), count, f) == count && fread(v.data(), sizeof(float), count, f) == count;
    fclose(f);
    if (!ok) { err = path + ": read failed"; return false; }
    adam_m.resize(t.total);
    adam_v.resize(t.total);
    parameters_unpack(t, m.data(), adam_m.data());
    parameters_unpack(t, v.data(), adam_v.data());
    s.step = h[2]; s.data_epoch = h[4]; s.data_shard = h[5]; s.data_window = h[6]; s.seed = h[7];
    return true;
}

// Whether `name` is <kind><step><ending>, e.g. model_12.bin; its step.
static bool step_file(const char* name, const char* kind, const char* ending, long long& step) {
    const size_t k = strlen(kind), n = strlen(name), e = strlen(ending);
    if (n <= k + e || strncmp(name, kind, k) != 0 || strcmp(name + n - e, ending) != 0 || !isdigit(name[k]))
        return false;
    char* end;
    step = strtoll(name + k, &end, 10);
    return end == name + n - e;
}

std::vector<int64_t> checkpoint_steps(const std::string& dir) {
    std::vector<int64_t> steps;
    DIR* d = opendir(dir.c_str());
    if (!d) return steps;
    while (dirent* e = readdir(d)) {
        long long step;
        if (!step_file(e->d_name, "model_", ".bin", step)) continue;
        FILE* s = fopen(checkpoint_state_path(dir, step).c_str(), "rb");
        if (!s) continue;  // a model file whose state file was never completed is not a checkpoint
        fclose(s);
        steps.push_back(step);
    }
    closedir(d);
    std::sort(steps.begin(), steps.end());
    return steps;
}

int64_t checkpoint_latest(const std::string& dir) {
    const std::vector<int64_t> steps = checkpoint_steps(dir);
    return steps.empty() ? -1 : steps.back();
}

int checkpoint_remove_debris(const std::string& dir) {
    DIR* d = opendir(dir.c_str());
    if (!d) return 0;
    int removed = 0;
    while (dirent* e = readdir(d)) {
        long long step;
        if ((step_file(e->d_name, "model_", ".bin.tmp", step) || step_file(e->d_name, "state_", ".bin.tmp", step)) &&
            remove((dir + "/" + e->d_name).c_str()) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}
