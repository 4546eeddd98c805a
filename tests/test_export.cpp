// What leaves the trainer (model/safetensors.h, m2rnn_export, scripts/m2rnn_files.py): a checkpoint exported and
// imported again is the same file byte for byte; the bf16 export holds each parameter's nearest bfloat16; the
// standard-library checker accepts both exports and refuses a damaged one; and the windows that
// scripts/m2rnn_torch.py evaluates are the ones the trainer's validation reads. Needs ./m2rnn_export and python3
// (make test builds the one; run from the repository root).
#include "test_export.h"

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "../data/shards.h"
#include "../model/checkpoint.h"
#include "../model/parameters.h"
#include "../model/safetensors.h"
#include "random_inputs.h"
#include "read_file.h"
#include "run_command.h"

// Whether y is the bfloat16 nearest to x (ties to the even one), from the two bfloat16 values around x.
static bool is_nearest_bf16(float x, float y) {
    uint32_t ux, uy;
    memcpy(&ux, &x, 4);
    memcpy(&uy, &y, 4);
    if ((uy & 0xFFFFu) != 0) return false;
    const uint32_t down = ux & 0xFFFF0000u, up = down + 0x10000u;
    float fd, fu;
    memcpy(&fd, &down, 4);
    memcpy(&fu, &up, 4);
    const double ed = fabs((double)x - fd), eu = fabs((double)fu - x);
    const uint32_t nearest = ed < eu ? down : eu < ed ? up : ((down >> 16) & 1) ? up : down;
    return uy == nearest;
}

static void test_round_trip(TestReport& r, const std::string& dir) {
    Config c = tiny_config("MAM", 4, 2, 1);  // grouped q/k heads, RoPE
    c.clip = 0.3;                             // not a float exactly: the checkpoint's float32 bits must survive
    ParameterTable t = parameter_table_build(c);
    std::vector<double> p = random_parameters(t, c, 11, 0.1, 0.1);
    std::vector<float> params(p.begin(), p.end());
    std::string err, out, original, back;
    const std::string a = dir + "/model_40.bin", b = dir + "/back.bin";
    bool ok = checkpoint_write_model(a, c, 40, params, err);
    r.check(ok, "export: fixture checkpoint written %s", err.c_str());
    int rc = run("./m2rnn_export " + a + " " + dir + "/fp32 && ./m2rnn_export " + dir + "/fp32/model.safetensors " + b,
                 out);
    ok = rc == 0 && read_file(a, original) && read_file(b, back);
    r.check(ok && original == back, "export: checkpoint -> fp32 safetensors -> checkpoint is byte-identical (%zu bytes, "
            "%zu parameters, step and clip kept) %s", back.size(), params.size(), rc == 0 ? "" : out.c_str());

    rc = run("./m2rnn_export " + a + " " + dir + "/bf16 --dtype bf16", out);
    Config c2;
    int64_t step = 0;
    std::vector<float> rounded;
    ok = rc == 0 && safetensors_read(dir + "/bf16/model.safetensors", c2, step, rounded, err) &&
         rounded.size() == params.size();
    size_t nearest = 0;
    for (size_t i = 0; ok && i < params.size(); i++) nearest += is_nearest_bf16(params[i], rounded[i]);
    r.check(ok && nearest == params.size() && step == 40 && config_describe(c2) == config_describe(c),
            "export: bf16 safetensors reads back each parameter's nearest bfloat16 (%zu of %zu), step %lld %s%s",
            nearest, params.size(), (long long)step, err.c_str(), rc == 0 ? "" : out.c_str());

    for (const char* dtype : {"fp32", "bf16"}) {
        rc = run("python3 scripts/m2rnn_files.py check " + dir + "/" + dtype, out);
        const size_t verdict = out.rfind("check:");
        const std::string line = out.substr(verdict == std::string::npos ? 0 : verdict);
        r.check(rc == 0 && line.compare(0, 9, "check: OK") == 0,
                "export: scripts/m2rnn_files.py check accepts the %s export (every name, dtype, shape, offset): exit %d, "
                "%s", dtype, rc, line.substr(0, line.find('\n')).c_str());
    }
    // one tensor's bytes cut off the end: the checker must see the last range run past the data section
    const std::string cut = dir + "/fp32/model.safetensors";
    std::string bytes;
    ok = read_file(cut, bytes) && truncate(cut.c_str(), (off_t)bytes.size() - 4) == 0;
    rc = run("python3 scripts/m2rnn_files.py check " + dir + "/fp32", out);
    r.check(ok && rc == 1 && out.find("past the") != std::string::npos,
            "export: scripts/m2rnn_files.py check refuses a file 4 bytes short: exit %d, %s", rc,
            out.substr(0, out.find('\n')).c_str());
    for (const std::string& f : {a, b, dir + "/fp32/model.safetensors", dir + "/fp32/config.json",
                                 dir + "/bf16/model.safetensors", dir + "/bf16/config.json"})
        remove(f.c_str());
    rmdir((dir + "/fp32").c_str());
    rmdir((dir + "/bf16").c_str());
}

// The loader's validation rows (from its first position, as Trainer::validate reads them) against the windows
// scripts/m2rnn_files.py computes: 80 rows of the 63 windows of the bundled validation shard, so the order runs
// into a second epoch.
static void test_validation_windows(TestReport& r) {
    const char* shard = "data/tinyshakespeare/tiny_shakespeare_val.bin";
    const int B = 4, T = 512, batches = 20, seed = 4242;
    DataLoader dl;
    std::string err, out;
    bool ok = dataloader_open(dl, shard, B, T, 50257, seed, err);
    const int rc = run("python3 scripts/m2rnn_files.py windows --shard " + std::string(shard) + " --seq " +
                           std::to_string(T) + " --windows " + std::to_string(B * batches) + " --seed " +
                           std::to_string(seed), out);
    std::istringstream starts(out);
    std::vector<int> rows((size_t)B * (T + 1));
    int same = 0;
    for (int i = 0; ok && rc == 0 && i < batches; i++) {
        ok = dataloader_next(dl, rows.data(), err);
        for (int b = 0; ok && b < B; b++) {
            long long start = -1;
            starts >> start;
            bool match = start >= 0 && start + T < (long long)dl.tokens.size();
            for (int j = 0; match && j <= T; j++) match = rows[(size_t)b * (T + 1) + j] == dl.tokens[start + j];
            same += match;
        }
    }
    r.check(ok && rc == 0 && same == B * batches,
            "export: the windows of scripts/m2rnn_files.py (m2rnn_torch.py's) are the loader's validation rows: %d of "
            "%d (B=%d T=%d seed %d, into epoch 2) %s%s", same, B * batches, B, T, seed, err.c_str(),
            rc == 0 ? "" : out.c_str());
    dataloader_close(dl);
}

void test_export(TestReport& r) {
    if (access("./m2rnn_export", X_OK) != 0) {
        r.check(false, "export: ./m2rnn_export not found (make m2rnn_export, and run the tests from the repository "
                "root)");
        return;
    }
    char dir_template[] = "/tmp/test_export_XXXXXX";
    const std::string dir = mkdtemp(dir_template);
    test_round_trip(r, dir);
    rmdir(dir.c_str());
    test_validation_windows(r);
}
