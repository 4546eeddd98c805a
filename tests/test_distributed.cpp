// The host side of several GPUs (model/distributed.h) and scripts/launch.sh; no GPU, no NCCL call.
#include "test_distributed.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "../data/shards.h"
#include "../model/config.h"
#include "../model/distributed.h"
#include "../model/parameters.h"
#include "run_command.h"

namespace {

const char* const LAUNCHER_VARS[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                                     "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"};

// The launcher variables as the test found them, put back when it ends.
struct SavedLauncherVars {
    std::vector<std::pair<std::string, std::string>> set;
    SavedLauncherVars() {
        for (const char* name : LAUNCHER_VARS)
            if (const char* value = getenv(name)) set.push_back({name, value});
    }
    ~SavedLauncherVars() {
        for (const char* name : LAUNCHER_VARS) unsetenv(name);
        for (const auto& [name, value] : set) setenv(name.c_str(), value.c_str(), 1);
    }
};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

struct ResolveCase {
    const char* what;
    std::vector<const char*> env;  // "NAME=value": the launcher variables set, all others unset
    int rank_flag, world_flag, local_rank_flag;
    bool ok;
    int rank, world, local_rank;
    const char* from_or_error;     // world_from when ok, a part of the message when not
};

void test_resolve(TestReport& r) {
    const ResolveCase cases[] = {
        {"no flags, no launcher: one process", {}, -1, -1, -1, true, 0, 1, 0, "default"},
        {"launch.sh / torchrun variables", {"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1"}, -1, -1, -1, true, 1, 2, 1,
         "WORLD_SIZE"},
        {"mpirun's variables",
         {"OMPI_COMM_WORLD_RANK=5", "OMPI_COMM_WORLD_SIZE=8", "OMPI_COMM_WORLD_LOCAL_RANK=1"}, -1, -1, -1, true, 5, 8,
         1, "OMPI_COMM_WORLD_SIZE"},
        {"srun's variables", {"SLURM_PROCID=3", "SLURM_NTASKS=4", "SLURM_LOCALID=3"}, -1, -1, -1, true, 3, 4, 3,
         "SLURM_NTASKS"},
        {"RANK before OMPI_COMM_WORLD_* before SLURM_*",
         {"RANK=1", "WORLD_SIZE=2", "OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=3", "SLURM_PROCID=3",
          "SLURM_NTASKS=4"}, -1, -1, -1, true, 1, 2, 0, "WORLD_SIZE"},
        {"flags win over the environment", {"RANK=1", "WORLD_SIZE=2", "LOCAL_RANK=1"}, 2, 3, 0, true, 2, 3, 0,
         "--world"},
        {"--world 1 inside an sbatch script (SLURM_NTASKS=4)", {"SLURM_PROCID=0", "SLURM_NTASKS=4"}, -1, 1, -1, true,
         0, 1, 0, "--world"},
        {"RANK not an integer", {"RANK=abc", "WORLD_SIZE=2"}, -1, -1, -1, false, 0, 0, 0, "RANK='abc'"},
        {"RANK=1e3", {"RANK=1e3", "WORLD_SIZE=2000"}, -1, -1, -1, false, 0, 0, 0, "RANK='1e3'"},
        {"RANK beyond int", {"RANK=99999999999", "WORLD_SIZE=2"}, -1, -1, -1, false, 0, 0, 0, "not an integer"},
        {"WORLD_SIZE empty", {"WORLD_SIZE="}, -1, -1, -1, false, 0, 0, 0, "WORLD_SIZE=''"},
        {"WORLD_SIZE=0", {"WORLD_SIZE=0"}, -1, -1, -1, false, 0, 0, 0, "at least 1"},
        {"RANK = WORLD_SIZE", {"RANK=2", "WORLD_SIZE=2"}, -1, -1, -1, false, 0, 0, 0, "rank 2 (RANK)"},
        {"--rank 3 of --world 2", {}, 3, 2, -1, false, 0, 0, 0, "rank 3 (--rank)"},
        {"LOCAL_RANK negative", {"LOCAL_RANK=-1"}, -1, -1, -1, false, 0, 0, 0, "local rank -1 (LOCAL_RANK)"},
    };
    for (const ResolveCase& k : cases) {
        for (const char* name : LAUNCHER_VARS) unsetenv(name);
        for (const std::string assignment : k.env) {
            const size_t eq = assignment.find('=');
            setenv(assignment.substr(0, eq).c_str(), assignment.substr(eq + 1).c_str(), 1);
        }
        DistributedSetup s;
        std::string err;
        const bool ok = distributed_resolve(k.rank_flag, k.world_flag, k.local_rank_flag, s, err);
        if (k.ok)
            r.check(ok && s.rank == k.rank && s.world == k.world && s.local_rank == k.local_rank &&
                        s.world_from == k.from_or_error,
                    "distributed: %s: rank %d of %d, local rank %d, world size from %s %s", k.what, s.rank, s.world,
                    s.local_rank, s.world_from.c_str(), err.c_str());
        else
            r.check(!ok && contains(err, k.from_or_error), "distributed: %s refused: %s", k.what, err.c_str());
    }
}

void test_device(TestReport& r) {
    const int cases[][3] = {{0, 1, 0}, {3, 1, 0}, {0, 2, 0}, {1, 2, 1}, {7, 8, 7}, {2, 2, -1}, {8, 4, -1}};
    int wrong = 0;
    std::string got;
    for (const auto& k : cases) {
        const int device = distributed_device(k[0], k[1]);
        wrong += device != k[2];
        got += " " + std::to_string(k[0]) + "/" + std::to_string(k[1]) + "->" + std::to_string(device);
    }
    r.check(wrong == 0, "distributed: device of (local rank / GPUs seen):%s", got.c_str());
}

// Every split of 1..40 batches over 1..9 processes: contiguous runs in rank order whose lengths differ by at most
// one, each batch owned once; exactly batches/world each when world divides batches.
void test_batch_owner(TestReport& r) {
    int bad = 0, splits = 0;
    for (int batches = 1; batches <= 40; batches++)
        for (int world = 1; world <= 9; world++, splits++) {
            std::vector<int> count(world, 0);
            int previous = 0;
            for (int i = 0; i < batches; i++) {
                const int owner = batch_owner(i, batches, world);
                bad += owner < previous || owner >= world;
                if (owner >= 0 && owner < world) count[owner]++;
                previous = std::max(previous, owner);
            }
            const auto [least, most] = std::minmax_element(count.begin(), count.end());
            bad += *most - *least > 1;
            if (batches % world == 0) bad += *least != batches / world || *most != batches / world;
        }
    r.check(bad == 0,
            "distributed: batch_owner over %d splits: contiguous runs in rank order, sizes within one (%d bad)", splits,
            bad);
}

// train_m2rnn's step with `world` processes (every process reads the step's world·accum micro-batches and computes
// those batch_owner gives it) against one process that reads and computes them all: the same rows in the same
// order, each computed once, and the same loader position after every step, so checkpoints move between counts.
void check_batch_split(TestReport& r, const std::string& pattern, int world, int accum, int steps) {
    const int B = 2, T = 16, micro_batches = world * accum, vocab = 50257;
    const uint64_t seed = 7;
    std::string err;
    DataLoader one;
    std::vector<DataLoader> processes(world);
    bool ok = dataloader_open(one, pattern.c_str(), B, T, vocab, seed, err);
    for (DataLoader& p : processes) ok = ok && dataloader_open(p, pattern.c_str(), B, T, vocab, seed, err);
    std::vector<int> tokens((size_t)B * (T + 1));
    int differing_steps = 0, moved_apart = 0, computed = 0;
    for (int step = 0; ok && step < steps; step++) {
        std::vector<int> want, got;
        for (int m = 0; ok && m < micro_batches; m++) {
            ok = dataloader_next(one, tokens.data(), err);
            want.insert(want.end(), tokens.begin(), tokens.end());
        }
        for (int rank = 0; ok && rank < world; rank++)
            for (int m = 0; ok && m < micro_batches; m++) {
                ok = dataloader_next(processes[rank], tokens.data(), err);
                if (batch_owner(m, micro_batches, world) != rank) continue;
                got.insert(got.end(), tokens.begin(), tokens.end());
                computed++;
            }
        differing_steps += got != want;
        const DataLoaderState a = dataloader_state(one);
        for (const DataLoader& p : processes) {
            const DataLoaderState b = dataloader_state(p);
            moved_apart += a.epoch != b.epoch || a.shard != b.shard || a.window != b.window;
        }
    }
    const DataLoaderState end = dataloader_state(one);
    r.check(ok && differing_steps == 0 && moved_apart == 0 && computed == steps * micro_batches,
            "distributed: world %d x %d micro-batches, %d steps (to epoch %lld): the one-process rows in order, "
            "%d computed once each, %d steps differ, %d loader positions apart %s",
            world, accum, steps, (long long)end.epoch, computed, differing_steps, moved_apart, err.c_str());
    dataloader_close(one);
    for (DataLoader& p : processes) dataloader_close(p);
}

void test_batch_split(TestReport& r, const std::string& dir) {
    // two shards of 400 and 250 tokens: 24 + 15 windows at T = 16, so the steps cross shards and epochs
    std::string err;
    bool ok = true;
    for (const auto& [name, n] : {std::pair<const char*, int>{"/split_a.bin", 400}, {"/split_b.bin", 250}}) {
        std::vector<uint32_t> tokens(n);
        for (int i = 0; i < n; i++) tokens[i] = (uint32_t)((i * 7919 + n) % 50257);
        ShardWriter w;
        ok = ok && shard_writer_open(w, dir + name, true, err) && shard_writer_append(w, tokens.data(), n, err) &&
             shard_writer_close(w, err);
    }
    r.check(ok, "distributed: fixture shards written %s", err.c_str());
    for (const auto& [world, accum] : {std::pair<int, int>{1, 3}, {2, 1}, {3, 2}, {4, 3}})
        check_batch_split(r, dir + "/split_*.bin", world, accum, 12);
    remove((dir + "/split_a.bin").c_str());
    remove((dir + "/split_b.bin").c_str());
}

void test_shard_layout(TestReport& r) {
    const size_t totals[] = {0, 1, 63, 64, 65, 1000, 4097, 163037184};
    int bad = 0, cases = 0;
    size_t worst_padding = 0;
    for (size_t total : totals)
        for (int shards : {1, 2, 3, 4, 7, 8}) {
            const ShardLayout l = shard_layout(total, shards);
            const size_t at_least = (total + shards - 1) / shards;
            bad += l.padded_total != l.shard_numel * shards || l.padded_total < total;
            bad += shards == 1 ? l.shard_numel != total : l.shard_numel % 64 != 0 || l.shard_numel >= at_least + 64;
            worst_padding = std::max(worst_padding, l.padded_total - total);
            cases++;
        }
    r.check(bad == 0, "distributed: shard_layout of %d (total, shards): tiles the padded arena, 64-element shards "
            "no larger than needed, worst padding %zu elements (%d bad)", cases, worst_padding, bad);
}

// AdamW's runs of equal weight decay (parameter_decay_runs) cut by every shard (as gpu_model_update cuts them):
// the pieces tile [0, total) in order, each inside its shard and its run and covering every tensor of its decay
// setting, with offsets and lengths multiples of 4 (AdamW's packed path).
void test_runs_in_shards(TestReport& r, const char* name, const Config& c) {
    const ParameterTable t = parameter_table_build(c);
    const std::vector<DecayRun> runs = parameter_decay_runs(t);
    int bad = 0, pieces = 0;
    for (const ParamTensor& p : t.tensors) {
        int covering = 0;
        for (const DecayRun& run : runs)
            covering += run.decay == p.decay && run.offset <= p.offset && p.offset + p.numel <= run.offset + run.numel;
        bad += covering != 1;
    }
    for (int shards : {1, 2, 3, 5, 8}) {
        const ShardLayout l = shard_layout(t.total, shards);
        size_t next = 0;  // where the next piece must start
        for (int s = 0; s < shards; s++)
            for (const DecayRun& run : runs) {
                const IndexRange piece = range_in_shard(run.offset, run.numel, l.shard_numel, s);
                if (piece.numel == 0) continue;
                pieces++;
                bad += piece.offset != next;
                bad += piece.offset < s * l.shard_numel || piece.offset + piece.numel > (s + 1) * l.shard_numel;
                bad += piece.offset < run.offset || piece.offset + piece.numel > run.offset + run.numel;
                bad += piece.offset % 4 != 0 || piece.numel % 4 != 0;
                next = piece.offset + piece.numel;
            }
        bad += next != t.total;
    }
    r.check(bad == 0, "distributed: %s (arena of %zu elements, %zu decay runs) over 1, 2, 3, 5, 8 shards: %d pieces "
            "tile the arena, each in its shard and run (%d bad)", name, t.total, runs.size(), pieces, bad);
}

// The moments as a checkpoint carries them: set_optimizer keeps range_in_shard of the full array in a shard buffer
// (zeros after it), get_optimizer all-gathers the buffers at rank·shard_numel and keeps the first `total`.
std::vector<std::vector<float>> scatter(const std::vector<float>& full, int shards) {
    const ShardLayout l = shard_layout(full.size(), shards);
    std::vector<std::vector<float>> buffers(shards, std::vector<float>(l.shard_numel, 0.0f));
    for (int s = 0; s < shards; s++) {
        const IndexRange mine = range_in_shard(0, full.size(), l.shard_numel, s);
        std::copy(full.begin() + mine.offset, full.begin() + mine.offset + mine.numel, buffers[s].begin());
    }
    return buffers;
}

std::vector<float> gather(const std::vector<std::vector<float>>& buffers) {
    std::vector<float> arena;
    for (const std::vector<float>& b : buffers) arena.insert(arena.end(), b.begin(), b.end());
    return arena;
}

void test_checkpoint_layout(TestReport& r) {
    int bad = 0, trips = 0;
    for (size_t total : {1001, 65536, 40000}) {
        std::vector<float> full(total);
        for (size_t i = 0; i < total; i++) full[i] = 0.5f + (float)i;
        for (const auto& [saved_on, restored_on] :
             {std::pair<int, int>{1, 2}, {2, 1}, {2, 3}, {3, 8}, {8, 2}, {4, 4}, {8, 1}}) {
            const std::vector<float> saved = gather(scatter(full, saved_on));
            bad += saved.size() != shard_layout(total, saved_on).padded_total;
            bad += !std::equal(full.begin(), full.end(), saved.begin());
            bad += std::any_of(saved.begin() + total, saved.end(), [](float x) { return x != 0.0f; });
            std::vector<float> restored = gather(scatter(std::vector<float>(saved.begin(), saved.begin() + total),
                                                         restored_on));
            restored.resize(total);
            bad += restored != full;
            trips++;
        }
    }
    r.check(bad == 0, "distributed: moments saved with n processes and restored with m (%d round trips, sizes 1001, "
            "65536, 40000, n,m up to 8): exact, padding zero (%d bad)", trips, bad);
}

void test_flags_hash(TestReport& r) {
    const char* a[] = {"./train_m2rnn", "-b", "4", "--rank", "0", "--zero", "1"};
    const char* b[] = {"/opt/train_m2rnn", "-b", "4", "--rank", "1", "--zero", "1"};
    const char* c[] = {"./train_m2rnn", "-b", "4", "--local-rank", "1", "--rank", "1", "--zero", "1"};
    const char* d[] = {"./train_m2rnn", "-b", "8", "--rank", "0", "--zero", "1"};
    const char* e[] = {"./train_m2rnn", "ab", "c"};
    const char* f[] = {"./train_m2rnn", "a", "bc"};
    auto hash = [](auto& argv) { return distributed_flags_hash((int)(sizeof argv / sizeof argv[0]), (char**)argv); };
    r.check(hash(a) == hash(b) && hash(a) == hash(c) && hash(a) != hash(d) && hash(e) != hash(f),
            "distributed: flags hash ignores the program path, --rank and --local-rank, and sees -b 4 vs -b 8 and "
            "('ab','c') vs ('a','bc')");
}

void test_id_file(TestReport& r, const std::string& dir) {
    const std::string path = dir + "/nccl_id";
    ncclUniqueId id, back;
    for (int i = 0; i < NCCL_UNIQUE_ID_BYTES; i++) id.internal[i] = (char)(i * 7 + 1);
    std::string err;
    struct stat st;
    bool ok = distributed_write_id(path, id, 2, err) && stat((path + ".tmp").c_str(), &st) != 0 &&
              distributed_read_id(path, 2, 1.0, back, err) && !memcmp(id.internal, back.internal, sizeof id.internal);
    r.check(ok, "distributed: id file round trip, no .tmp left behind %s", err.c_str());
    ok = !distributed_read_id(path, 3, 1.0, back, err);
    r.check(ok && contains(err, "world size 2"), "distributed: id file of another world size refused: %s", err.c_str());
    FILE* garbage = fopen(path.c_str(), "wb");
    if (garbage) {
        fputs("not an id", garbage);
        fclose(garbage);
    }
    ok = !distributed_read_id(path, 2, 1.0, back, err);
    r.check(ok && contains(err, "not an NCCL id file"), "distributed: a file that is no id file refused: %s",
            err.c_str());
    remove(path.c_str());
    const auto start = std::chrono::steady_clock::now();
    ok = !distributed_read_id(path, 2, 0.3, back, err);
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.check(ok && contains(err, "rank 0 wrote no NCCL id") && waited >= 0.3 && waited < 3,
            "distributed: no id file: gave up after %.2f s of a 0.3 s timeout: %s", waited, err.c_str());
    err.clear();
    const bool good = distributed_check_id_path(path, 0, err) && distributed_check_id_path("nccl_id", 1, err);
    r.check(good, "distributed: id paths in an existing directory (absolute, relative) accepted %s", err.c_str());
    ok = !distributed_check_id_path(dir + "/missing/nccl_id", 1, err);
    r.check(ok && contains(err, "does not exist"), "distributed: id path in a missing directory refused: %s",
            err.c_str());
    ok = !distributed_check_id_path(dir, 0, err);
    r.check(ok && contains(err, "is a directory"), "distributed: id path that is a directory refused: %s", err.c_str());
}

static std::string read_line(const std::string& path) {
    std::string line;
    if (FILE* f = fopen(path.c_str(), "r")) {
        char buf[512];
        if (fgets(buf, sizeof buf, f)) line = buf;
        fclose(f);
    }
    return line;
}

// scripts/launch.sh with a stand-in program that writes its rank variables, GPU and arguments to out.<rank>.
void test_launcher(TestReport& r, const std::string& dir) {
    struct stat st;
    if (stat("scripts/launch.sh", &st) != 0) {
        r.check(false, "distributed: scripts/launch.sh not found (run the tests from the repository root)");
        return;
    }
    const std::string fake = dir + "/fake_trainer.sh";
    if (FILE* f = fopen(fake.c_str(), "w")) {
        fputs("#!/usr/bin/env bash\n"
              "echo \"$RANK $WORLD_SIZE $LOCAL_RANK $CUDA_VISIBLE_DEVICES $*\" > \"$(dirname \"$0\")/out.$RANK\"\n"
              "[ \"$RANK\" = \"${FAIL_RANK:-none}\" ] && exit 3\n"
              "exec sleep \"${SLEEP:-0}\"\n", f);
        fclose(f);
    }
    chmod(fake.c_str(), 0755);
    std::string out;
    int rc = run("CUDA_VISIBLE_DEVICES=4,6 bash scripts/launch.sh 2 " + fake + " -x 1", out);
    const std::string rank0 = read_line(dir + "/out.0"), rank1 = read_line(dir + "/out.1");
    const std::string prefix0 = "0 2 0 4 -x 1 --nccl-id ", prefix1 = "1 2 1 6 -x 1 --nccl-id ";
    const size_t at = rank0.rfind(' ');
    const std::string id_path = at == std::string::npos ? "" : rank0.substr(at + 1, rank0.size() - at - 2);
    const std::string id_dir = id_path.substr(0, id_path.rfind('/'));
    r.check(rc == 0 && rank0.rfind(prefix0, 0) == 0 && rank1.rfind(prefix1, 0) == 0 && !id_path.empty() &&
                rank1.find(id_path) != std::string::npos && stat(id_dir.c_str(), &st) != 0,
            "distributed: launch.sh 2 on GPUs 4,6: exit %d, rank 0 got '%s', rank 1 '%s', id directory removed",
            rc, rank0.substr(0, rank0.size() ? rank0.size() - 1 : 0).c_str(),
            rank1.substr(0, rank1.size() ? rank1.size() - 1 : 0).c_str());

    const auto start = std::chrono::steady_clock::now();
    rc = run("FAIL_RANK=1 SLEEP=30 LAUNCH_GRACE=1 CUDA_VISIBLE_DEVICES=0,1 bash scripts/launch.sh 2 " + fake, out);
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.check(rc == 3 && took < 10 && contains(out, "rank 1 exited with status 3") && contains(out, "killing rank(s) 0"),
            "distributed: launch.sh: rank 1 fails, rank 0 killed after LAUNCH_GRACE=1: exit %d after %.1f s", rc, took);

    const std::pair<const char*, std::string> refused[] = {
        {"0 GPUs", "bash scripts/launch.sh 0 " + fake},
        {"a GPU count that is no number", "bash scripts/launch.sh two " + fake},
        {"no program", "bash scripts/launch.sh 2"},
        {"a program that does not exist", "bash scripts/launch.sh 2 " + dir + "/no_such_program"},
        {"--world among the flags", "bash scripts/launch.sh 2 " + fake + " --world 2"},
        {"--local-rank among the flags", "bash scripts/launch.sh 2 " + fake + " -b 4 --local-rank 1"},
        {"more processes than CUDA_VISIBLE_DEVICES lists", "CUDA_VISIBLE_DEVICES=0 bash scripts/launch.sh 2 " + fake},
        {"LAUNCH_GRACE not a number", "LAUNCH_GRACE=soon CUDA_VISIBLE_DEVICES=0 bash scripts/launch.sh 1 " + fake},
    };
    for (const auto& [what, command] : refused) {
        rc = run(command, out);
        const std::string first = out.substr(0, out.find('\n'));
        r.check(rc == 2 && (first.rfind("launch.sh: ", 0) == 0 || first.rfind("usage: ", 0) == 0),
                "distributed: launch.sh refuses %s: exit %d, '%s'", what, rc, first.c_str());
    }
    for (const char* name : {"/out.0", "/out.1"}) remove((dir + name).c_str());
    remove(fake.c_str());
}

}  // namespace

void test_distributed(TestReport& r) {
    char dir_template[] = "/tmp/test_distributed_XXXXXX";
    const std::string dir = mkdtemp(dir_template);
    {
        SavedLauncherVars saved;
        test_resolve(r);
    }
    test_device(r);
    test_batch_owner(r);
    test_batch_split(r, dir);
    test_shard_layout(r);
    Config tiny, d12;
    std::string err;
    const bool presets = config_preset("tiny", tiny, err) && config_preset("d12-hybrid", d12, err);
    r.check(presets, "distributed: presets tiny and d12-hybrid %s", err.c_str());
    if (presets) {
        test_runs_in_shards(r, "tiny", tiny);
        test_runs_in_shards(r, "d12-hybrid", d12);
    }
    test_checkpoint_layout(r);
    test_flags_hash(r);
    test_id_file(r, dir);
    test_launcher(r, dir);
    rmdir(dir.c_str());
}
