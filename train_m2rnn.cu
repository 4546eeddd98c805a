// train_m2rnn: trains the hybrid M²RNN GPT on the GPU, or on the CPU where there is none, from llm.c token shards.
//
// Flow: parse and check every flag, choose the device (--device: auto takes the GPU when there is one, else the
// CPU, whose defaults are the tiny preset's; cpu_defaults), build or load the config, open the data, check the log
// directory — all before touching the GPU, so bad input fails fast with a message — then allocate the
// model once (the GPU's arenas, or the CPU's reference in float, model/cpu_model.h: an Engine each, the one
// thing the two paths do not share) and run: per step, gradient accumulation over micro-batches, global-norm
// clipping and AdamW with warmup + cosine decay; validation every -v steps; checkpoints every -n
// steps and at the end (model + optimizer/data state, written atomically); -y 1 resumes from the
// latest checkpoint in -o; a sample of -g tokens every -s steps and at the end, generated one token at a
// time (model/gpu_decoder.h) from a prompt (--prompt, default <|endoftext|>) at --temperature (0: greedy) and
// decoded with the tiktoken rank file of the model's vocabulary. Every figure printed per step also goes to
// <-o>/train.log. -e starts from a preset, a model checkpoint or a model.safetensors (model/safetensors.h);
// -x 0 only validates and samples the start point. --eval 1 evaluates a checkpoint on a state-tracking task
// instead of training (train_state_eval.h).
//
// Several GPUs: one process each, started by scripts/launch.sh, mpirun or srun (model/distributed.h: ranks,
// NCCL, how the global batch is split, ZeRO-1, failure). Every process runs this same flow on its share of each
// step; rank 0 alone prints, writes train.log and writes checkpoints; the others print only errors.
#include <algorithm>
#include <cerrno>
#include <climits>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <csignal>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "data/shards.h"
#include "data/tokenizer.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/cpu_model.h"
#include "model/distributed.h"
#include "model/engine.h"
#include "model/gpu_decoder.h"
#include "model/gpu_model.h"
#include "model/parallel.h"
#include "model/parameters.h"
#include "model/random.h"
#include "model/safetensors.h"
#include "model/schedule.h"
#include "train_state_eval.h"

struct Options {
    const char* train_pattern = "data/tinyshakespeare/tiny_shakespeare_train.bin";
    const char* val_pattern = "data/tinyshakespeare/tiny_shakespeare_val.bin";
    const char* start = "d12-hybrid";  // -e: a preset name, a model checkpoint file or a model.safetensors
    const char* log_dir = "log";
    int B = 8, T = 512;
    long long total_batch = -1;          // tokens per step; -1 = B·T on every process (no accumulation)
    // The default run (d12-hybrid on tinyshakespeare, 74 steps an epoch) ends before it memorises: README, Training.
    int max_steps = 200, warmup = 100, val_every = 25, val_batches = 20, checkpoint_every = 0, resume = 0;
    int sample_every = 500, gen_tokens = 256;
    double temperature = 1.0;            // of the samples; 0 = greedy (argmax)
    std::vector<int> prompt;             // --prompt: token ids the samples continue; empty = <|endoftext|>
    int eval_states = 0;                 // --eval 1: evaluate a checkpoint on a state-tracking task, no training
    int profile = 0;                     // --profile 1: time one step by kernel family (model/step_timer.h)
    double lr = 1e-3, final_frac = 0.1, weight_decay = 0.1, grad_clip = 1.0;
    unsigned long long seed = 1337;
    // model-shape overrides of the preset (-1 / empty = keep the preset's)
    std::string pattern;
    int D = -1, F = -1, heads = -1, N = -1, K = -1, V = -1, Nq = -1, Nk = -1, rope = -1, vocab = -1;
    double clip = -1;
    double state_noise = 0;              // --state-noise A: training's M2RNN states start uniform in [-A, A]
    // several GPUs (model/distributed.h); -1 = from the launcher's environment
    int world = -1, rank = -1, local_rank = -1, zero = 0;
    const char* nccl_id = "";            // empty: no NCCL (one process only)
    double nccl_timeout = 30;
    const char* device = "auto";         // --device: gpu, cpu, or auto (the GPU when there is one)
    int threads = 0;                     // --threads: the host's; 0 = every core
    int keep_checkpoints = 0;            // -nk: the newest N checkpoints kept in -o; 0 = all
    double skip_z = 0;                   // --skip-z: a step this many standard deviations up is skipped; 0 = off
    int skip_window = 100, skip_max = 10;  // --skip-window: steps in the running mean; --skip-max: skips in a row
    int inject_spike = 0;                // --inject-spike: the step whose loss and norm are reported x1000; 0 = none
    int inject_nan = 0;                  // --inject-nan: the step whose loss is reported as NaN; 0 = none
    std::set<std::string> given;         // the flags on the command line, so that the CPU's defaults fill the rest
};

static const int CPU_DEFAULT_STEPS = 200;

// What a run on the CPU uses for the flags not given: the tiny preset at its sequence length, and a run short
// enough to watch (docs/perf.md: its speed). Every other default is the GPU's.
static void cpu_defaults(Options& o) {
    if (!o.given.count("-e")) o.start = "tiny";
    if (!o.given.count("-t")) o.T = 64;
    if (!o.given.count("-x")) o.max_steps = CPU_DEFAULT_STEPS;
    if (!o.given.count("-u")) o.warmup = CPU_DEFAULT_STEPS / 10;
    if (!o.given.count("-v")) o.val_every = CPU_DEFAULT_STEPS / 4;
    if (!o.given.count("-m")) o.val_batches = 10;
}

static const int MAX_GEN_TOKENS = 16384;  // a KV cache row's scores fit the attention step's shared memory
static const int SPIKE_MIN_HISTORY = 8;    // --skip-z judges a step once its window holds this many (or all -W)
static const double INJECTED_SPIKE = 1000;  // --inject-spike's factor

// Who speaks in messages: "train_m2rnn", with the rank when there are several processes.
static std::string speaker = "train_m2rnn";

static void fail(const std::string& msg) {
    fprintf(stderr, "%s: %s\n", speaker.c_str(), msg.c_str());
    exit(EXIT_FAILURE);
}

// One line per preset: its shape and parameter count (at its own vocabulary; T does not change the count).
static void print_presets() {
    printf("  %-20s %-24s %5s %5s %5s %4s %3s %3s %3s %6s %12s\n", "preset (-e)", "pattern", "D", "F", "heads", "rope", "N", "K", "V", "vocab", "parameters");
    const std::string names = config_preset_names();
    for (size_t at = 0; at < names.size();) {
        const size_t end = std::min(names.find(", ", at), names.size());
        const std::string name = names.substr(at, end - at);
        at = end + 2;
        Config c;
        std::string err;
        config_preset(name.c_str(), c, err);
        printf("  %-20s %-24s %5d %5d %5d %4d %3d %3d %3d %6d %12zu\n", name.c_str(), c.pattern, c.D, c.F, c.heads,
               c.rope, c.N, c.K, c.V, c.vocab, parameter_table_build(c).count);
    }
}

static void usage() {
    Options o;
    printf("usage: ./train_m2rnn [flags]     (each flag at most once)\n"
           "data and run\n"
           "  -i <glob>    train shards (llm.c format)                  default %s\n"
           "  -j <glob>    validation shards                            default %s\n"
           "  -e <name>    a preset (below), a model_*.bin checkpoint or a model.safetensors (config.json\n"
           "               beside it) to start from                     default %s\n"
           "  -o <dir>     log and checkpoint directory (parents made)  default %s\n"
           "  -b <int>     micro-batch size B                           default %d\n"
           "  -t <int>     sequence length T                            default %d\n"
           "  -d <int>     total batch in tokens (gradient accumulation) default B*T x processes\n"
           "  -x <int>     optimizer steps (0: validate and sample the -e model, no training)   default %d\n"
           "  -l <float>   peak learning rate                           default %g\n"
           "  -u <int>     warmup steps                                 default %d\n"
           "  -q <float>   final lr as a fraction of the peak           default %g\n"
           "  -c <float>   weight decay                                 default %g\n"
           "  --state-noise <a>  every M2RNN layer starts each training sequence from a random state, uniform in\n"
           "               [-a, a] and drawn afresh every step and micro-batch (validation, samples and --eval 1\n"
           "               start from 0); 0 <= a <= 1, needs an M layer   default %g (off)\n"
           "  -v <int>     validate every N steps (0: never)            default %d\n"
           "  -m <int>     validation batches                           default %d\n"
           "  -s <int>     sample every N steps (0: only at the end)    default %d\n"
           "  -g <int>     tokens to generate per sample (0: no samples) default %d\n"
           "  --temperature <t>  of the samples; 0 = greedy, the argmax at every step   default %g\n"
           "  --prompt <ids>     comma-separated token ids the samples continue   default <|endoftext|>\n"
           "  -n <int>     checkpoint every N steps (0: only at the end) default %d\n"
           "  -nk <int>    keep the newest N checkpoints in -o, older ones removed once a newer one is complete\n"
           "               (0: keep all)                                default %d\n"
           "  -y <0|1>     resume from the latest checkpoint in -o      default %d\n"
           "               SIGINT or SIGTERM (Ctrl-C): the step in flight finishes, is checkpointed, and the run\n"
           "               exits 0 saying how to resume; a second signal exits at once (README: Stopping safely)\n"
           "loss spikes: off unless --skip-z is given; a non-finite loss or gradient norm always stops the run\n"
           "  --skip-z <z>       skip the update of a step whose loss or gradient norm is more than z standard\n"
           "                     deviations above the mean of the last --skip-window updated steps (0: off) default %g\n"
           "  --skip-window <n>  steps in that mean (judging starts once it holds min(n, %d))   default %d\n"
           "  --skip-max <n>     stop after n skipped steps in a row                          default %d\n"
           "  --inject-spike <s> for tests: step s's loss and gradient norm are reported %g times larger (0: none)\n"
           "  --inject-nan <s>   for tests: step s's loss is reported as NaN (0: none)\n"
           "  --eval <0|1> 1: evaluate the -e checkpoint on the -j state-tracking shard (make_tasks) at -t = 2L+1:\n"
           "               argmax accuracy of every state token, by position and whole sequences; -m batches of -b\n"
           "               instead of training                          default %d\n"
           "  --profile <0|1> 1: time the third step of the run (the last, if fewer) by kernel family and print\n"
           "               a table: family, ms, %% of the step's GPU time default %d\n"
           "model shape: each overrides the preset's value (table below); a checkpoint fixes them\n"
           "  --pattern <MA..>  layer mixers     --dim <D>      --ffn <F>      --heads <attention heads>\n"
           "  --m2rnn-heads <N> --key <K>        --value <V>    --q-heads <Nq> --k-heads <Nk>\n"
           "  --clip <c>   M2RNN state-gradient clip, 0 = none (presets: 1)  --rope <0|1>  RoPE on attention\n"
           "  --vocab <n>  vocabulary size (padded to a multiple of 128 inside)\n"
           "  --seed <int> initialisation and data order                default %llu\n"
           "several GPUs: one process per GPU, started by scripts/launch.sh, mpirun or srun (README: Several GPUs)\n"
           "  --world <n> --rank <r> --local-rank <i>  processes, this one's rank, its GPU on this host; default\n"
           "               from RANK/WORLD_SIZE/LOCAL_RANK, OMPI_COMM_WORLD_RANK/_SIZE/_LOCAL_RANK or\n"
           "               SLURM_PROCID/_NTASKS/_LOCALID, else one process\n"
           "  --nccl-id <file>  where rank 0 leaves NCCL's id for the others (a path every host sees); needed\n"
           "               for more than one process; with one, runs the multi-GPU path through NCCL on one GPU;\n"
           "               default none (no NCCL)\n"
           "  --nccl-timeout <s>  longest wait for the other processes before all exit   default %g\n"
           "  --zero <0|1> ZeRO-1: AdamW's moments sharded over the processes           default %d\n"
           "device\n"
           "  --device <gpu|cpu|auto>  where to train; auto: the GPU when there is one, else the CPU   default %s\n"
           "  --threads <n> host threads: the CPU trainer's, and the initialisation's   default every core (%u)\n"
           "               on the CPU the defaults of -e -t -x -u -v -m are: -e tiny -t 64 -x %d -u %d -v %d -m 10\n"
           "  -h           this help\n",
           o.train_pattern, o.val_pattern, o.start, o.log_dir, o.B, o.T, o.max_steps, o.lr, o.warmup, o.final_frac,
           o.weight_decay, o.state_noise, o.val_every, o.val_batches, o.sample_every, o.gen_tokens, o.temperature,
           o.checkpoint_every, o.keep_checkpoints, o.resume, o.skip_z, SPIKE_MIN_HISTORY, o.skip_window, o.skip_max,
           INJECTED_SPIKE, o.eval_states, o.profile, o.seed, o.nccl_timeout, o.zero, o.device,
           std::max(1u, std::thread::hardware_concurrency()), CPU_DEFAULT_STEPS, CPU_DEFAULT_STEPS / 10,
           CPU_DEFAULT_STEPS / 4);
    print_presets();
}

static long long parse_int(const std::string& flag, const char* s, long long lo, long long hi) {
    char* end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0)
        fail(flag + " expects an integer, got '" + s + "' (see -h)");
    if (v < lo || v > hi)
        fail(flag + " = " + s + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return v;
}

static double parse_float(const std::string& flag, const char* s, double lo, double hi) {
    char* end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || !std::isfinite(v)) fail(flag + " expects a number, got '" + s + "' (see -h)");
    if (v < lo || v > hi) {
        char range[64];
        snprintf(range, sizeof(range), "[%g, %g]", lo, hi);
        fail(flag + " = " + s + " is out of range " + range);
    }
    return v;
}

// "50256,464,3290": token ids, each checked against the vocabulary once the model is known (check_prompt).
static std::vector<int> parse_prompt(const char* s) {
    std::vector<int> ids;
    std::string id;
    for (const char* p = s;; p++) {
        if (*p != ',' && *p != '\0') { id += *p; continue; }
        ids.push_back((int)parse_int("--prompt token", id.c_str(), 0, (1 << 24) - 1));
        id.clear();
        if (*p == '\0') break;
    }
    if (ids.size() > (size_t)MAX_GEN_TOKENS) fail("--prompt: more than " + std::to_string(MAX_GEN_TOKENS) + " tokens");
    return ids;
}

static Options parse_options(int argc, char** argv) {
    Options o;
    const int BIG = 1 << 30;
    std::map<std::string, std::string> given;  // flag -> its value, to refuse a flag given twice
    for (int i = 1; i < argc; i++) {
        const std::string flag = argv[i];
        if (flag == "-h" || flag == "--help" || flag == "-help" || flag == "help") { usage(); exit(EXIT_SUCCESS); }
        // Only a known flag takes the next argument as its value, so "-zzz" at the end is an unknown flag.
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) fail(flag + " needs a value (see -h)");
            const char* v = argv[++i];
            o.given.insert(flag);
            if (!given.emplace(flag, v).second)
                fail(flag + " is given twice (" + given[flag] + ", then " + v + "); give each flag once");
            return v;
        };
        if (flag == "-i") o.train_pattern = value();
        else if (flag == "-j") o.val_pattern = value();
        else if (flag == "-e") o.start = value();
        else if (flag == "-o") o.log_dir = value();
        else if (flag == "-b") o.B = (int)parse_int(flag, value(), 1, BIG);
        else if (flag == "-t") o.T = (int)parse_int(flag, value(), 1, BIG);
        else if (flag == "-d") o.total_batch = parse_int(flag, value(), 1, 1ll << 40);
        else if (flag == "-x") o.max_steps = (int)parse_int(flag, value(), 0, BIG);
        else if (flag == "-l") o.lr = parse_float(flag, value(), 1e-12, 10);
        else if (flag == "-u") o.warmup = (int)parse_int(flag, value(), 0, BIG);
        else if (flag == "-q") o.final_frac = parse_float(flag, value(), 0, 1);
        else if (flag == "-c") o.weight_decay = parse_float(flag, value(), 0, 10);
        else if (flag == "-v") o.val_every = (int)parse_int(flag, value(), 0, BIG);
        else if (flag == "-m") o.val_batches = (int)parse_int(flag, value(), 1, BIG);
        else if (flag == "-s") o.sample_every = (int)parse_int(flag, value(), 0, BIG);
        else if (flag == "-g") o.gen_tokens = (int)parse_int(flag, value(), 0, MAX_GEN_TOKENS);
        else if (flag == "--temperature") o.temperature = parse_float(flag, value(), 0, 100);
        else if (flag == "--prompt") o.prompt = parse_prompt(value());
        else if (flag == "-n") o.checkpoint_every = (int)parse_int(flag, value(), 0, BIG);
        else if (flag == "-y") o.resume = (int)parse_int(flag, value(), 0, 1);
        else if (flag == "-nk") o.keep_checkpoints = (int)parse_int(flag, value(), 0, BIG);
        else if (flag == "--skip-z") o.skip_z = parse_float(flag, value(), 0, 1e6);
        else if (flag == "--skip-window") o.skip_window = (int)parse_int(flag, value(), 2, 1 << 20);
        else if (flag == "--skip-max") o.skip_max = (int)parse_int(flag, value(), 1, BIG);
        else if (flag == "--inject-spike") o.inject_spike = (int)parse_int(flag, value(), 0, BIG);
        else if (flag == "--inject-nan") o.inject_nan = (int)parse_int(flag, value(), 0, BIG);
        else if (flag == "--eval") o.eval_states = (int)parse_int(flag, value(), 0, 1);
        else if (flag == "--profile") o.profile = (int)parse_int(flag, value(), 0, 1);
        else if (flag == "--pattern") {
            const char* v = value();
            if (*v == '\0') fail("--pattern is empty; give one letter per layer, M (M2RNN) or A (attention)");
            o.pattern = v;
        }
        else if (flag == "--dim") o.D = (int)parse_int(flag, value(), 1, BIG);
        else if (flag == "--ffn") o.F = (int)parse_int(flag, value(), 1, BIG);
        else if (flag == "--heads") o.heads = (int)parse_int(flag, value(), 1, BIG);
        else if (flag == "--m2rnn-heads") o.N = (int)parse_int(flag, value(), 1, BIG);
        else if (flag == "--key") o.K = (int)parse_int(flag, value(), 1, BIG);
        else if (flag == "--value") o.V = (int)parse_int(flag, value(), 1, BIG);
        else if (flag == "--q-heads") o.Nq = (int)parse_int(flag, value(), 1, BIG);
        else if (flag == "--k-heads") o.Nk = (int)parse_int(flag, value(), 1, BIG);
        else if (flag == "--clip") o.clip = parse_float(flag, value(), 0, 1e30);
        else if (flag == "--state-noise") o.state_noise = parse_float(flag, value(), 0, 1);
        else if (flag == "--rope") o.rope = (int)parse_int(flag, value(), 0, 1);
        else if (flag == "--vocab") o.vocab = (int)parse_int(flag, value(), 1, 1 << 24);
        else if (flag == "--seed") o.seed = (unsigned long long)parse_int(flag, value(), 0, 1ll << 62);
        else if (flag == "--world") o.world = (int)parse_int(flag, value(), 1, 1 << 20);
        else if (flag == "--rank") o.rank = (int)parse_int(flag, value(), 0, 1 << 20);
        else if (flag == "--local-rank") o.local_rank = (int)parse_int(flag, value(), 0, 1 << 20);
        else if (flag == "--nccl-id") {
            const char* v = value();
            if (*v == '\0') fail("--nccl-id is empty; give a file path every process sees");
            o.nccl_id = v;
        }
        else if (flag == "--nccl-timeout") o.nccl_timeout = parse_float(flag, value(), 1, 86400);
        else if (flag == "--zero") o.zero = (int)parse_int(flag, value(), 0, 1);
        else if (flag == "--device") {
            const char* v = value();
            if (strcmp(v, "auto") != 0 && strcmp(v, "cpu") != 0 && strcmp(v, "gpu") != 0)
                fail(std::string("--device is gpu, cpu or auto (the GPU when there is one), not '") + v + "'");
            o.device = v;
        }
        else if (flag == "--threads") o.threads = (int)parse_int(flag, value(), 1, 1024);
        else if (flag[0] != '-') fail("'" + flag + "' is not a flag: train_m2rnn takes flags only (see -h)");
        else fail("unknown flag '" + flag + "' (see -h)");
    }
    return o;
}

static bool has_shape_overrides(const Options& o) {
    return !o.pattern.empty() || o.D > 0 || o.F > 0 || o.heads > 0 || o.N > 0 || o.K > 0 || o.V > 0 || o.Nq > 0 ||
           o.Nk > 0 || o.rope >= 0 || o.clip >= 0 || o.vocab > 0;
}

// The config from a preset with the shape flags applied, at sequence length T.
static Config config_from_preset(const Options& o) {
    Config c;
    std::string err;
    if (!config_preset(o.start, c, err))
        fail("-e: " + err + ", or give a model_*.bin checkpoint or a model.safetensors file");
    if (!o.pattern.empty() && !config_set_pattern(c, o.pattern.c_str(), err)) fail("--pattern: " + err);
    if (o.D > 0) c.D = o.D;
    if (o.F > 0) c.F = o.F;
    if (o.heads > 0) c.heads = o.heads;
    if (o.N > 0) c.N = o.N;
    if (o.K > 0) c.K = o.K;
    if (o.V > 0) c.V = o.V;
    if (o.Nq > 0) c.Nq = o.Nq;
    if (o.Nk > 0) c.Nk = o.Nk;
    if (o.rope >= 0) c.rope = o.rope;
    if (o.clip >= 0) c.clip = o.clip;
    if (o.vocab > 0) { c.vocab = o.vocab; c.Vp = config_padded_vocab(o.vocab); }
    c.T = o.T;
    if (!config_validate(c, err)) fail("model config: " + err);
    return c;
}

static bool file_exists(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// The log directories this run created (outermost first), removed at exit if they are still empty: a run
// that stops before it writes anything (bad input found later, no GPU, too little memory) leaves none behind.
static std::vector<std::string> created_log_dirs;

static void remove_empty_created_log_dirs() {
    for (size_t i = created_log_dirs.size(); i-- > 0;) rmdir(created_log_dirs[i].c_str());  // fails if not empty
}

// Creates the log directory and its missing parents (mkdir -p) and proves it writable with a probe file.
static void check_log_dir(const std::string& dir) {
    if (dir.empty()) fail("-o is empty; give a directory for the log and checkpoints");
    atexit(remove_empty_created_log_dirs);
    for (size_t slash = dir.find('/', 1);; slash = dir.find('/', slash + 1)) {
        const std::string part = dir.substr(0, slash);
        if (mkdir(part.c_str(), 0755) == 0) created_log_dirs.push_back(part);
        else if (errno != EEXIST) fail("-o " + dir + ": cannot create " + part + " (" + strerror(errno) + ")");
        if (slash == std::string::npos) break;
    }
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) fail("-o " + dir + ": exists and is not a directory");
    const std::string probe = dir + "/.write_probe";
    FILE* f = fopen(probe.c_str(), "wb");
    if (!f) fail("-o " + dir + ": the directory is not writable (" + strerror(errno) + ")");
    fclose(f);
    remove(probe.c_str());
    if (const int removed = checkpoint_remove_debris(dir))
        printf("-o %s: removed %d unfinished checkpoint file(s) (*.bin.tmp) of a write that was cut off\n",
               dir.c_str(), removed);
}

// SIGINT and SIGTERM: the first asks the run to stop after the step in flight (run() checks between steps, and
// checkpoints that step); a second exits at once. A handler may only set a flag and call async-signal-safe
// functions (write, _exit).
static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig) {
    if (stop_signal) {
        const char msg[] = "train_m2rnn: a second signal: exiting now, without a checkpoint of the step in flight\n";
        (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
        _exit(128 + sig);
    }
    stop_signal = sig;
    const char msg[] = "train_m2rnn: stopping after this step, with a checkpoint (a second signal exits at once)\n";
    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
}

static void install_signal_handlers() {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // the read or write in flight carries on
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    // Past a file-size limit (ulimit -f) write then fails with EFBIG, which a checkpoint write reports, instead of
    // the process dying of SIGXFSZ with the file half written.
    signal(SIGXFSZ, SIG_IGN);
}

// --skip-z: a step whose loss or gradient norm is more than z standard deviations above the mean of the last W
// updated steps' is not applied. Skipped steps stay out of the window, so that a run of spikes does not become
// the norm. Every process judges alike: the values are the loss summed over them and the norm of the summed
// gradient.
struct SpikeGuard {
    size_t window = 0;
    std::deque<double> losses, norms;

    // How far x is above the window's mean in standard deviations; 0 until the window holds enough values.
    double z(const std::deque<double>& w, double x) const {
        if (w.size() < std::min(window, (size_t)SPIKE_MIN_HISTORY)) return 0;
        double mean = 0, var = 0;
        for (double v : w) mean += v / w.size();
        for (double v : w) var += (v - mean) * (v - mean) / (w.size() - 1);
        if (var == 0) return x > mean ? INFINITY : 0;
        return (x - mean) / sqrt(var);
    }
    double z(double loss, double norm) const { return std::max(z(losses, loss), z(norms, norm)); }
    void add(double loss, double norm) {
        losses.push_back(loss);
        norms.push_back(norm);
        if (losses.size() > window) { losses.pop_front(); norms.pop_front(); }
    }
};

// Peak dense bf16 tensor FLOP/s from the datasheet, for MFU; 0 when the device is not known.
static double peak_flops(const cudaDeviceProp& p) {
    if (strstr(p.name, "H100") || strstr(p.name, "H200")) return 989e12;
    if (strstr(p.name, "A100")) return 312e12;
    return 0;
}

// An index drawn from softmax(logits[0, vocab) / temperature) (at 1 as llm.c samples), u uniform in [0, 1); at
// temperature 0 the argmax, the first of equal maxima (as torch.argmax picks).
static int sample_softmax(const float* logits, int vocab, double temperature, double u) {
    const int argmax = (int)(std::max_element(logits, logits + vocab) - logits);
    if (temperature == 0) return argmax;
    const double max_logit = logits[argmax];
    double sum = 0;
    std::vector<double> weights(vocab);  // exp((logit − max) / temperature), computed once
    for (int i = 0; i < vocab; i++) sum += weights[i] = exp((logits[i] - max_logit) / temperature);
    double cumulative = 0;
    for (int i = 0; i < vocab; i++) {
        cumulative += weights[i] / sum;
        if (u < cumulative) return i;
    }
    return vocab - 1;  // u within rounding of 1
}

// The GPUs this process sees: 0 without an NVIDIA GPU or without its driver.
static int gpu_count() {
    int devices = 0;
    return cudaGetDeviceCount(&devices) == cudaSuccess ? devices : 0;
}

// Makes the GPU of this local rank current (model/distributed.h), or stops with a message saying there is none.
static cudaDeviceProp open_gpu(int local_rank) {
    const int devices = gpu_count();
    if (devices == 0)
        fail("no NVIDIA GPU or driver found (--device gpu). What works without one: training and --eval 1 on the "
             "CPU (--device cpu, or auto, the default), `make test`, tokenize and make_tasks");
    const int device = distributed_device(local_rank, devices);
    if (device < 0)
        fail("local rank " + std::to_string(local_rank) + " but this process sees only " + std::to_string(devices) +
             " GPUs (CUDA_VISIBLE_DEVICES)");
    cudaCheck(cudaSetDevice(device));
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, device));
    return prop;
}

// The run's output: stdout and <-o>/train.log, on rank 0 alone.
struct Log {
    FILE* f = nullptr;
    bool print = true;  // false on every process but rank 0
    void line(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
        if (!print) return;
        va_list ap;
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        if (f) {
            va_start(ap, fmt);
            vfprintf(f, fmt, ap);
            va_end(ap);
            fflush(f);
        }
        fflush(stdout);
    }
};

// The GPU's model as the run's Engine (model/engine.h; the CPU's, model/cpu_model.h, is one itself).
struct GPUEngine : Engine {
    GPUModel model;
    GPUDecoder decoder;  // only when there are samples
    bool sampling = false;
    ~GPUEngine() override {
        if (sampling) gpu_decoder_free(decoder);
        gpu_model_free(model);
    }
    void zero_grad() override { gpu_model_zero_grad(model); }
    float forward(const int* tokens, int grad_accum_steps, StateNoise noise) override {
        return gpu_model_forward(model, tokens, grad_accum_steps, noise);
    }
    void logits(float* out) override { gpu_model_get_logits(model, out); }
    void backward() override { gpu_model_backward(model); }
    float grad_norm() override { return gpu_model_grad_norm(model); }
    void update(float lr, float beta1, float beta2, float eps, float weight_decay, float max_grad_norm) override {
        gpu_model_update(model, lr, beta1, beta2, eps, weight_decay, max_grad_norm);
    }
    void get_state(float* params, float* adam_m, float* adam_v) override {
        if (params) gpu_model_get_params(model, params);
        gpu_model_get_optimizer(model, adam_m, adam_v);
    }
    void decoder_reset() override { gpu_decoder_reset(decoder); }
    const float* decoder_step(int token) override { return gpu_decoder_step(decoder, &token); }
    double memory_gib() override {
        size_t free_bytes, total_bytes;
        cudaCheck(cudaMemGetInfo(&free_bytes, &total_bytes));
        return (total_bytes - free_bytes) / 1073741824.0;
    }
    StepTimer* timer() override { return &model.timer; }
    std::string memory_lines() override {
        char line[320];
        int n = snprintf(line, sizeof(line), "# parameters %zu, arenas: parameters %.2f GiB, gradients + AdamW "
                         "%.2f GiB, activations %.2f GiB\n", model.table.count, model.arena_bytes[0] / 1073741824.0,
                         model.arena_bytes[1] / 1073741824.0, model.arena_bytes[2] / 1073741824.0);
        if (model.zero)
            snprintf(line + n, sizeof(line) - n, "# ZeRO-1: optimizer state %.2f GiB per GPU instead of %.2f GiB\n",
                     2.0 * model.shard_numel * sizeof(float) / 1073741824.0,
                     2.0 * model.table.count * sizeof(float) / 1073741824.0);
        return line;
    }
    std::string decoder_line() override {
        char line[64];
        snprintf(line, sizeof(line), "decoder arena %.1f MiB", decoder.arena_bytes / 1048576.0);
        return line;
    }
};

// One run. main() fills it in the order of the flow above (everything about the input first, then the GPU);
// the methods are the run's parts, one job each.
struct Trainer {
    Options o;
    DistributedSetup setup;          // this process's rank among `world`, from flags or the launcher
    bool cpu = false;                // the run trains on the CPU (--device)
    // The start point: a preset (params empty until the GPU is up, then initialised from the seed), a model
    // checkpoint (-e file: its weights) or a whole training state (-y 1: also the AdamW moments, the step, the
    // data position and the seed).
    Config c;
    std::vector<float> params, adam_m, adam_v;
    TrainingState state;
    int micro_batches = 0;           // per step, over all processes
    Tokenizer tokenizer;
    const char* encoding = nullptr;  // the samples' tiktoken encoding; nullptr: they print token ids
    DataLoader train, val;
    std::vector<int> tokens;         // one micro-batch: B rows of T+1
    Distributed dist;
    std::unique_ptr<Engine> engine;
    std::string device;              // for the log: the GPU's name, or the CPU and its threads
    Log log;
    double flops_per_token = 0, peak = 0;  // for MFU; peak 0: not known
    std::string last_checkpoint;     // the newest model file written or resumed from; empty: none yet
    SpikeGuard spikes;
    int skips_in_row = 0;

    // before the GPU
    void resolve_processes();
    void choose_device();
    void set_host_threads() const;
    void resolve_start();
    void resume();
    void check_state_noise() const;
    void plan_batches();
    void load_tokenizer();
    void open_data();
    // the device, and the other processes
    void start_gpu(int argc, char** argv);
    void start_cpu();
    void evaluate_states();
    void open_log();
    void print_banner();
    // the run
    void run();
    void train_step(int step);
    StateNoise state_noise(int step, int micro) const;
    void validate(int step);
    void sample(int step);
    std::vector<int> sample_prompt() const;
    void save(int step);
    void keep_newest_checkpoints();
    std::string last_good() const;
    void finish();
};

// Rank and world from the flags or the launcher's environment (model/distributed.h); several processes need
// the file through which NCCL's id reaches them.
void Trainer::resolve_processes() {
    std::string err;
    if (!distributed_resolve(o.rank, o.world, o.local_rank, setup, err)) fail(err);
    if (setup.world > 1) speaker = "train_m2rnn: rank " + std::to_string(setup.rank);
    if (setup.world > 1 && !*o.nccl_id)
        fail(std::to_string(setup.world) + " processes (world size from " + setup.world_from + ") need --nccl-id "
             "<a file path every process sees> (scripts/launch.sh gives one; --world 1 runs alone)");
    if (*o.nccl_id && !distributed_check_id_path(o.nccl_id, setup.rank, err)) fail(err);
}

// --device: auto takes the GPU when this process sees one, else the CPU (start_cpu says so). The CPU trains in one
// process, fills the flags not given with its defaults (cpu_defaults), and refuses the flags only the GPU honours.
void Trainer::choose_device() {
    const bool auto_cpu = strcmp(o.device, "auto") == 0 && gpu_count() == 0;
    cpu = strcmp(o.device, "cpu") == 0 || auto_cpu;
    if (!cpu) return;
    // the reason in every refusal below
    const std::string why = auto_cpu ? "no NVIDIA GPU or driver found, so this run is on the CPU" : "--device cpu";
    if (setup.world > 1)
        fail(why + ": it trains in one process, not " + std::to_string(setup.world) + " (world size from " +
             setup.world_from + "); several processes need a GPU each");
    if (*o.nccl_id || o.zero) fail(why + ": --nccl-id and --zero are for GPUs; drop them");
    if (o.profile) fail(why + ": --profile 1 times GPU kernels; drop it");
    if (o.gen_tokens > CPU_MAX_GEN_TOKENS)
        fail(why + ": -g " + std::to_string(o.gen_tokens) + " is more than the " + std::to_string(CPU_MAX_GEN_TOKENS) +
             " tokens a CPU sample may have (each token reruns the model over the sample so far)");
    cpu_defaults(o);
}

// The host's threads (--threads): the CPU trainer's, and on either device the parameters' initialisation.
void Trainer::set_host_threads() const {
    parallel_set_threads(o.threads > 0 ? o.threads : (int)std::max(1u, std::thread::hardware_concurrency()));
}

// The start point: -y 1 resumes from -o; -e names a model.safetensors, a checkpoint file (it exists, or looks like a
// path) or a preset.
void Trainer::resolve_start() {
    state = {0, 0, 0, 0, (int64_t)o.seed};
    if (o.resume) {
        resume();
    } else if (safetensors_is_path(o.start) || file_exists(o.start) || strchr(o.start, '/') || strstr(o.start, ".bin")) {
        std::string err;
        int64_t step;
        if (!(safetensors_is_path(o.start) ? safetensors_read(o.start, c, step, params, err)
                                           : checkpoint_read_model(o.start, c, step, params, err)))
            fail(err);
        if (has_shape_overrides(o)) fail("-e " + std::string(o.start) + ": a checkpoint fixes the model shape; drop the shape flags");
        c.T = o.T;
    } else {
        c = config_from_preset(o);
    }
}

// -y 1: the latest model_N.bin + state_N.bin pair in -o, which must agree with each other and with the flags;
// the run continues with the checkpoint's seed.
void Trainer::resume() {
    std::string err;
    const int64_t step = checkpoint_latest(o.log_dir);
    if (step < 0) fail(std::string("-y 1: no checkpoint (model_N.bin with its state_N.bin) in ") + o.log_dir);
    int64_t model_step;
    if (!checkpoint_read_model(checkpoint_model_path(o.log_dir, step), c, model_step, params, err)) fail(err);
    if (!checkpoint_read_state(checkpoint_state_path(o.log_dir, step), parameter_table_build(c), state, adam_m, adam_v,
                               err))
        fail(err);
    if (model_step != step || state.step != step)
        fail("-y 1: " + checkpoint_model_path(o.log_dir, step) + " holds step " + std::to_string(model_step) +
             " and its state file step " + std::to_string(state.step) + ": not the pair its names say");
    if (has_shape_overrides(o)) fail("-y 1: the model shape comes from the checkpoint; drop the shape flags");
    if (c.T != o.T) fail("-y 1: the checkpoint was trained at T = " + std::to_string(c.T) + ", not -t " +
                         std::to_string(o.T));
    o.seed = (unsigned long long)state.seed;
    last_checkpoint = checkpoint_model_path(o.log_dir, step);
}

// --state-noise sets the initial state of M2RNN layers in training: a model without one, or --eval 1, which does
// not train, has no use for it.
void Trainer::check_state_noise() const {
    if (o.state_noise == 0) return;
    char a[32];
    snprintf(a, sizeof(a), "%g", o.state_noise);
    if (config_count(c, 'M') == 0)
        fail(std::string("--state-noise ") + a + ": the model (pattern " + c.pattern + ") has no M2RNN layer whose "
             "initial state it would set; drop it");
    if (o.eval_states)
        fail(std::string("--state-noise ") + a + " is for training; --eval 1 starts every sequence from the zero "
             "state: drop it");
}

// The batch plan: a step of -d tokens (default: one micro-batch on every process) is micro-batches of B·T,
// split over the processes (batch_owner), so -d must be a whole number of rounds of them.
void Trainer::plan_batches() {
    const long long tokens_per_micro = (long long)o.B * o.T;
    if (tokens_per_micro > INT_MAX) fail("-b " + std::to_string(o.B) + " x -t " + std::to_string(o.T) + " is too large");
    const long long tokens_per_round = tokens_per_micro * setup.world;  // a micro-batch on every process
    if (o.total_batch < 0) o.total_batch = tokens_per_round;
    if (o.total_batch % tokens_per_round != 0)
        fail("-d " + std::to_string(o.total_batch) + " is not a multiple of B*T = " + std::to_string(tokens_per_micro) +
             (setup.world > 1 ? " times " + std::to_string(setup.world) + " processes" : std::string()));
    if (o.total_batch / tokens_per_micro > INT_MAX)
        fail("-d " + std::to_string(o.total_batch) + ": more than " + std::to_string(INT_MAX) + " micro-batches per step");
    micro_batches = (int)(o.total_batch / tokens_per_micro);
}

// The rank file that decodes samples, when there are samples and the vocabulary has a tokenizer; the prompt checked
// against the vocabulary.
void Trainer::load_tokenizer() {
    encoding = config_tokenizer(c);  // nullptr: samples print token ids
    for (int id : o.prompt)
        if (id >= c.vocab) fail("--prompt: token " + std::to_string(id) + " is not below the vocabulary " +
                                std::to_string(c.vocab));
    if (o.prompt.size() + o.gen_tokens > (size_t)MAX_GEN_TOKENS)
        fail("--prompt of " + std::to_string(o.prompt.size()) + " tokens and -g " + std::to_string(o.gen_tokens) +
             ": more than " + std::to_string(MAX_GEN_TOKENS) + " positions to generate over");
    if (o.gen_tokens == 0 || !encoding) return;
    std::string err;
    const std::string rank_file = std::string("data/tokenizers/") + encoding + ".tiktoken";
    if (!tokenizer_load(tokenizer, encoding, rank_file.c_str(), err))
        fail("sampling decodes with " + rank_file + ": " + err +
             " (run from the repository root, or turn sampling off with -g 0)");
}

// The train and validation shards, every token checked now; on resume, the train stream where it stopped.
void Trainer::open_data() {
    std::string err;
    if (!dataloader_open(train, o.train_pattern, o.B, o.T, c.vocab, o.seed, err)) fail("-i: " + err);
    if (!dataloader_open(val, o.val_pattern, o.B, o.T, c.vocab, o.seed, err)) fail("-j: " + err);
    if (o.resume && !dataloader_restore(train, {state.data_epoch, state.data_shard, state.data_window}, err))
        fail("-y 1: " + err);
    tokens.resize((size_t)o.B * (o.T + 1));
}

// The start point's weights, or new ones from the seed.
static std::vector<float> start_params(const std::vector<float>& params, const Config& c, unsigned long long seed) {
    if (!params.empty()) return params;
    const ParameterTable table = parameter_table_build(c);
    std::vector<double> init(table.total);
    parameters_init(table, c, seed, init.data());
    return std::vector<float>(init.begin(), init.end());
}

// This process's GPU, NCCL with the others (which must have been given the same flags), the model's arenas with
// the start point's weights and moments, and the decoder of the samples.
void Trainer::start_gpu(int argc, char** argv) {
    std::string err;
    const cudaDeviceProp prop = open_gpu(setup.local_rank);
    distributed_init(dist, setup, o.nccl_id, o.nccl_timeout, o.zero);
    distributed_check_same(dist, distributed_flags_hash(argc, argv), "flags");
    std::unique_ptr<GPUEngine> gpu(new GPUEngine);
    if (!gpu_model_init(gpu->model, c, o.B, o.T, err, &dist)) fail(err);
    params = start_params(params, c, o.seed);
    gpu_model_set_params(gpu->model, params.data());
    if (o.gen_tokens > 0 && !(gpu->sampling = gpu_decoder_init(gpu->decoder, gpu->model, 1,
                                                           (int)sample_prompt().size() + o.gen_tokens, err)))
        fail(err);
    if (o.resume) gpu_model_set_optimizer(gpu->model, adam_m.data(), adam_v.data(), (int)state.step);
    device = std::string(prop.name) + ", precision " + PRECISION_NAME;
    peak = peak_flops(prop);
    engine = std::move(gpu);
}

// The CPU's model (model/cpu_model.h) with the start point's weights and moments; when the GPU was not asked for
// but is missing, one line says so.
void Trainer::start_cpu() {
    const std::string start = o.resume ? "resuming -o's checkpoint" : params.empty() ? std::string(o.start) + " preset"
                                                                                      : std::string(o.start);
    if (strcmp(o.device, "auto") == 0)
        printf("no NVIDIA GPU or driver found: training on the CPU (%s, %d threads)\n", start.c_str(),
               parallel_threads());
    std::unique_ptr<CPUModel> cpu_model(new CPUModel);
    params = start_params(params, c, o.seed);
    cpu_model_init(*cpu_model, c, o.B, o.T, o.gen_tokens, params);
    if (o.resume) cpu_model_set_optimizer(*cpu_model, adam_m.data(), adam_v.data(), (int)state.step);
    device = "CPU, " + std::to_string(parallel_threads()) + " threads, precision fp32";
    engine = std::move(cpu_model);
}

// --eval 1 (train_state_eval.h) in place of training, its input checked before the device is touched as training's
// is: the -e model on the run's device, without a decoder or optimizer state.
void Trainer::evaluate_states() {
    if (params.empty()) fail("--eval 1 evaluates a trained model: give its model_*.bin with -e");
    if (setup.world > 1) fail("--eval 1 runs in one process, not " + std::to_string(setup.world));
    StateEval eval;
    std::string err;
    if (!state_eval_open(eval, o.val_pattern, o.B, o.T, c.vocab, o.seed, err)) fail(err);
    if (cpu) {
        std::unique_ptr<CPUModel> model(new CPUModel);
        cpu_model_init(*model, c, o.B, o.T, 0, params);
        engine = std::move(model);
    } else {
        open_gpu(0);
        std::unique_ptr<GPUEngine> gpu(new GPUEngine);
        if (!gpu_model_init(gpu->model, c, o.B, o.T, err)) fail(err);
        gpu_model_set_params(gpu->model, params.data());
        engine = std::move(gpu);
    }
    if (!state_eval_run(eval, *engine, c, o.val_batches, err)) fail(err);
}

// <-o>/train.log, appended to on resume; rank 0 alone prints and writes it.
void Trainer::open_log() {
    const std::string log_path = std::string(o.log_dir) + "/train.log";
    log.print = dist.rank == 0;
    if (log.print && !(log.f = fopen(log_path.c_str(), o.resume ? "a" : "w")))
        fail(log_path + ": cannot open for writing");
}

// The "# ..." lines that open a log: device, model, memory, processes, sampling, batch and data.
void Trainer::print_banner() {
    log.line("# device %s\n", device.c_str());
    log.line("# model %s\n", config_describe(c).c_str());
    log.line("%s", engine->memory_lines().c_str());
    if (dist.comm)
        log.line("# data parallel: %d process(es) (world size from %s) through NCCL, gradients %s\n", dist.world,
                 setup.world_from.c_str(), dist.zero ? "reduce-scattered (ZeRO-1)" : "all-reduced");
    if (o.state_noise > 0)
        log.line("# state noise: each training sequence's M2RNN states start uniform in [-%g, %g] (validation and "
                 "samples from 0)\n", o.state_noise, o.state_noise);
    if (o.gen_tokens > 0)
        log.line("# sampling: %d tokens every %d steps and at the end, %s, %s\n", o.gen_tokens, o.sample_every,
                 engine->decoder_line().c_str(), encoding ? encoding : "no tokenizer for this vocabulary: token ids");
    char mfu_peak[96] = "MFU n/a: no datasheet peak known for this GPU";
    if (cpu) snprintf(mfu_peak, sizeof(mfu_peak), "MFU n/a on the CPU");
    if (peak > 0) snprintf(mfu_peak, sizeof(mfu_peak), "MFU against %.0f TFLOP/s (the datasheet's dense bf16 peak)",
                           peak / 1e12);
    log.line("# batch B=%d T=%d, %d micro-batches (%d per process), %lld tokens per step; %.3g training FLOPs per "
             "token, %s\n", o.B, o.T, micro_batches, micro_batches / dist.world, o.total_batch, flops_per_token,
             mfu_peak);
    log.line("# train %s (%lld tokens), val %s (%lld tokens)%s\n", o.train_pattern,
             (long long)dataloader_num_tokens(train), o.val_pattern, (long long)dataloader_num_tokens(val),
             o.resume ? ", resumed" : "");
}

// From the start point to step -x, validating, checkpointing and sampling at their intervals, then once more at
// the end. Every process reads every batch in the same order and computes its own share of them (batch_owner).
void Trainer::run() {
    spikes.window = (size_t)o.skip_window;
    for (int step = (int)state.step; step < o.max_steps; step++) {
        if (o.val_every > 0 && step % o.val_every == 0) validate(step);
        train_step(step);
        // agreed by every process, so that all checkpoint the same step
        const bool stop = distributed_sum(dist, stop_signal ? 1 : 0, dist.timeout_s, "the stop request") > 0;
        if ((o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0) || step + 1 == o.max_steps || stop)
            save(step + 1);
        if (stop) {
            log.line("step %d stopped by %s: checkpoint %s; to continue, run again with the same flags and -y 1 -o %s\n",
                     step + 1, stop_signal == SIGINT ? "SIGINT" : stop_signal == SIGTERM ? "SIGTERM" : "a signal",
                     last_checkpoint.c_str(), o.log_dir);
            return;
        }
        if (o.gen_tokens > 0 && o.sample_every > 0 && (step + 1) % o.sample_every == 0 && step + 1 < o.max_steps)
            sample(step + 1);
    }
    if (o.val_every > 0) validate(o.max_steps);
    if (o.gen_tokens > 0) sample(o.max_steps);
}

// One optimizer step: gradient accumulation over the step's micro-batches, global-norm clipping and AdamW; logs
// "step N/M train_loss ...", and the kernel-family table when this is the profiled step (--profile 1).
void Trainer::train_step(int step) {
    std::string err;
    auto t0 = std::chrono::steady_clock::now();
    const bool profiled = o.profile && step == std::min((int)state.step + 2, o.max_steps - 1);
    if (profiled) step_timer_start(*engine->timer());
    engine->zero_grad();
    double loss = 0;
    for (int micro = 0; micro < micro_batches; micro++) {
        if (!dataloader_next(train, tokens.data(), err)) fail(err);
        if (batch_owner(micro, micro_batches, dist.world) != dist.rank) continue;
        loss += engine->forward(tokens.data(), micro_batches, state_noise(step, micro)) / micro_batches;
        engine->backward();
    }
    // the step's loss and norm, the same on every process, judged before its update
    const float norm = engine->grad_norm();
    loss = distributed_sum(dist, loss, dist.timeout_s, "training loss sum");
    const double factor = step + 1 == o.inject_spike ? INJECTED_SPIKE : 1;
    const double seen_loss = step + 1 == o.inject_nan ? NAN : loss * factor, seen_norm = norm * factor;
    if (!std::isfinite(seen_loss) || !std::isfinite(seen_norm)) {
        char what[128];
        snprintf(what, sizeof(what), "step %d: the loss (%g) or gradient norm (%g) is not finite; stopping before its "
                 "update", step + 1, seen_loss, seen_norm);
        fail(what + last_good());
    }
    const double z = o.skip_z > 0 ? spikes.z(seen_loss, seen_norm) : 0;
    const bool skip = o.skip_z > 0 && z > o.skip_z;
    const double lr = lr_schedule(step, o.max_steps, o.warmup, o.lr, o.final_frac);
    if (!skip) {
        engine->update((float)lr, 0.9f, 0.95f, 1e-10f, (float)o.weight_decay, (float)o.grad_clip);
        if (o.skip_z > 0) spikes.add(seen_loss, seen_norm);
    }
    skips_in_row = skip ? skips_in_row + 1 : 0;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double family_ms[FAMILY_COUNT] = {};
    if (profiled) step_timer_stop(*engine->timer(), family_ms);
    const double tok_per_s = o.total_batch / seconds;
    char mfu[32] = "n/a";
    if (peak > 0) snprintf(mfu, sizeof(mfu), "%.1f%%", 100.0 * flops_per_token * tok_per_s / (peak * dist.world));
    log.line("step %d/%d train_loss %.6f grad_norm %.4f lr %.3e ms %.1f tok/s %.0f mfu %s mem_gib %.2f\n", step + 1,
             o.max_steps, seen_loss, seen_norm, lr, seconds * 1000, tok_per_s, mfu, engine->memory_gib());
    if (profiled)
        log.line("step %d profile: GPU time by kernel family (CUDA events on the model's stream)\n%s", step + 1,
                 step_timer_table(family_ms).c_str());
    if (skip)
        log.line("step %d skipped: train_loss %.6f grad_norm %.4f is z %.1f above the last %zu updated steps "
                 "(--skip-z %g); no update, %d in a row\n", step + 1, seen_loss, seen_norm, z, spikes.losses.size(),
                 o.skip_z, skips_in_row);
    if (skips_in_row >= o.skip_max)
        fail("step " + std::to_string(step + 1) + ": " + std::to_string(skips_in_row) + " steps in a row skipped as "
             "loss spikes (--skip-max " + std::to_string(o.skip_max) + "); stopping" + last_good());
}

// --state-noise's draw for micro-batch `micro` of `step` (none when off): its key names (seed, step, micro) alone,
// so that a resumed run draws what an unbroken one would, and a micro-batch (owned by one process: batch_owner)
// draws states no other does. The pair packs into 64 bits, and splitmix64_mix is a bijection: no two share a key.
StateNoise Trainer::state_noise(int step, int micro) const {
    if (o.state_noise == 0) return {};
    const uint64_t pair = (uint64_t)step << 32 | (uint32_t)micro;
    return {(float)o.state_noise, splitmix64_mix(splitmix64_mix(o.seed) ^ pair)};
}

// For the messages that stop a run: where it can resume from.
std::string Trainer::last_good() const {
    if (last_checkpoint.empty()) return "; no checkpoint written yet (-n N writes one every N steps)";
    return "; the last good checkpoint is " + last_checkpoint + " (resume from it with -y 1 -o " + o.log_dir + ")";
}

// The mean loss of the first -m validation batches, split over the processes; logs "step N val_loss ...".
void Trainer::validate(int step) {
    std::string err;
    if (!dataloader_restore(val, {0, 0, 0}, err)) fail(err);
    double loss = 0;
    for (int i = 0; i < o.val_batches; i++) {
        if (!dataloader_next(val, tokens.data(), err)) fail(err);
        if (batch_owner(i, o.val_batches, dist.world) == dist.rank)
            loss += engine->forward(tokens.data(), 0, {}) / o.val_batches;  // from the zero state
    }
    loss = distributed_sum(dist, loss, dist.timeout_s, "validation loss sum");
    log.line("step %d val_loss %.6f\n", step, loss);
}

// -g tokens from <|endoftext|>, each fed back in: one decoder step per token. The draws depend only on the seed and
// the step, so a resumed run samples what an unbroken one would. Every process generates the same sample, so that
// none waits for rank 0 longer than a collective may; rank 0 prints it.
void Trainer::sample(int step) {
    Random rng(o.seed * 1000003ull + (unsigned long long)step);
    const std::vector<int> prompt = sample_prompt();
    std::vector<uint32_t> ids;
    engine->decoder_reset();
    for (size_t i = 0; i + 1 < prompt.size(); i++) engine->decoder_step(prompt[i]);
    int token = prompt.back();
    for (int i = 0; i < o.gen_tokens; i++) {
        token = sample_softmax(engine->decoder_step(token), c.vocab, o.temperature, rng.uniform());
        ids.push_back((uint32_t)token);
    }
    if (dist.rank != 0) return;
    std::string text, err, id_list;
    for (uint32_t id : ids) id_list += " " + std::to_string(id);
    if (!encoding) text = id_list.substr(1);
    else if (!tokenizer_decode(tokenizer, ids.data(), ids.size(), text, err)) fail(err);
    char from[64], how[48] = "greedy";
    if (o.prompt.empty()) snprintf(from, sizeof from, "%s", encoding ? "<|endoftext|>" : "token 0");
    else snprintf(from, sizeof from, "a prompt of %zu tokens", prompt.size());
    if (o.temperature > 0) snprintf(how, sizeof how, "temperature %g", o.temperature);
    // the ids after the block, for scripts that compare generations (scripts/check_torch_export.sh)
    log.line("step %d sample (%d tokens from %s, %s):\n%s\n---\nstep %d sample_ids%s\n", step, o.gen_tokens, from, how,
             text.c_str(), step, id_list.c_str());
}

// What the samples continue: --prompt, or <|endoftext|> (token 0 for a vocabulary of no tokenizer).
std::vector<int> Trainer::sample_prompt() const {
    if (!o.prompt.empty()) return o.prompt;
    return {encoding ? (int)tokenizer.eot : 0};
}

// A checkpoint of the whole state after `step` steps. Rank 0 writes it (ZeRO-1's moment shards gathered from every
// process); the others wait for it, and all stop when it could not be written.
void Trainer::save(int step) {
    std::string err;
    const DataLoaderState ds = dataloader_state(train);
    const TrainingState s{step, ds.epoch, ds.shard, ds.window, (int64_t)o.seed};
    const bool writer = dist.rank == 0;
    if (writer) {
        adam_m.resize(params.size());
        adam_v.resize(params.size());
    }
    engine->get_state(writer ? params.data() : nullptr, writer ? adam_m.data() : nullptr,
                      writer ? adam_v.data() : nullptr);
    const bool written = !writer ||
                         (checkpoint_write_model(checkpoint_model_path(o.log_dir, step), c, step, params, err) &&
                          checkpoint_write_state(checkpoint_state_path(o.log_dir, step), parameter_table_build(c), s,
                                                 adam_m, adam_v, err));
    if (distributed_sum(dist, written ? 0 : 1, std::max(dist.timeout_s, CHECKPOINT_WAIT_S),
                        "waiting for rank 0's checkpoint") > 0)
        fail((writer ? err : "rank 0 could not write the checkpoint of step " + std::to_string(step)) +
             "; stopping" + last_good());
    last_checkpoint = checkpoint_model_path(o.log_dir, step);
    log.line("step %d checkpoint %s\n", step, last_checkpoint.c_str());
    if (writer && o.keep_checkpoints > 0) keep_newest_checkpoints();
}

// -nk N: all but the newest N complete checkpoints removed, each state file before its model file, so that a cut
// off removal leaves a model file without a state file, which is not a checkpoint (model/checkpoint.h).
void Trainer::keep_newest_checkpoints() {
    const std::vector<int64_t> steps = checkpoint_steps(o.log_dir);
    for (size_t i = 0; i + o.keep_checkpoints < steps.size(); i++)
        for (const std::string& path : {checkpoint_state_path(o.log_dir, steps[i]),
                                        checkpoint_model_path(o.log_dir, steps[i])})
            if (remove(path.c_str()) != 0)
                fprintf(stderr, "%s: -nk %d: could not remove %s (%s)\n", speaker.c_str(), o.keep_checkpoints,
                        path.c_str(), strerror(errno));
}

void Trainer::finish() {
    engine.reset();
    distributed_free(dist);
    dataloader_close(train);
    dataloader_close(val);
    if (log.f) fclose(log.f);
}

int main(int argc, char** argv) {
    Trainer t;
    // ---- everything that can be wrong with the input, checked before the GPU is touched
    t.o = parse_options(argc, argv);
    t.resolve_processes();
    t.choose_device();
    t.set_host_threads();
    t.resolve_start();
    std::string err;
    if (!t.cpu && !gpu_model_check_config(t.c, err)) fail("model config: " + err);
    t.check_state_noise();
    if (t.o.eval_states) {
        t.evaluate_states();
        return 0;
    }
    t.plan_batches();
    if (t.o.resume && t.state.step >= t.o.max_steps)
        fail("the checkpoint is at step " + std::to_string(t.state.step) + ", not before -x " +
             std::to_string(t.o.max_steps));
    t.load_tokenizer();
    t.open_data();
    if (t.setup.rank == 0) check_log_dir(t.o.log_dir);

    // ---- the device, and the other processes
    if (t.cpu) t.start_cpu();
    else t.start_gpu(argc, argv);
    t.flops_per_token = config_flops_per_token(t.c);
    t.open_log();
    t.print_banner();
    install_signal_handlers();
    t.run();
    t.finish();
    return 0;
}
