// train_m2rnn: trains the hybrid M²RNN GPT on llm.c token shards.
//
// This first version trains with the CPU reference (model/reference.*), in double precision: it is
// slow and meant for tiny models, to show the whole loop (data, forward, backward, AdamW with
// global-norm clipping, warmup + cosine schedule, validation) end to end. The GPU path replaces
// the model calls once it exists.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "data/shards.h"
#include "model/config.h"
#include "model/parameters.h"
#include "model/reference.h"
#include "model/schedule.h"

struct Options {
    const char* train_pattern = "data/tinyshakespeare/tiny_shakespeare_train.bin";
    const char* val_pattern = "data/tinyshakespeare/tiny_shakespeare_val.bin";
    const char* preset = "tiny";
    int B = 4, T = 64;
    int max_steps = 20, warmup = 3, val_every = 10, val_batches = 2;
    double lr = 1e-2, final_frac = 0.1, weight_decay = 0.1, grad_clip = 1.0;
    unsigned long long seed = 1337;
};

static void usage(const Options& o) {
    printf("usage: ./train_m2rnn [flags]   (CPU reference trainer, for tiny models)\n"
           "  -i <glob>   train shards                 (default %s)\n"
           "  -j <glob>   validation shards            (default %s)\n"
           "  -e <name>   model preset: %s (default %s)\n"
           "  -b <int>    batch size B                 (default %d)\n"
           "  -t <int>    sequence length T            (default %d)\n"
           "  -x <int>    steps                        (default %d)\n"
           "  -u <int>    warmup steps                 (default %d)\n"
           "  -l <float>  learning rate                (default %g)\n"
           "  -q <float>  final lr fraction            (default %g)\n"
           "  -c <float>  weight decay                 (default %g)\n"
           "  -v <int>    validate every N steps       (default %d)\n"
           "  -m <int>    validation batches           (default %d)\n"
           "  -s <int>    seed                         (default %llu)\n"
           "  -h          this help\n",
           o.train_pattern, o.val_pattern, config_preset_names(), o.preset, o.B, o.T, o.max_steps, o.warmup, o.lr,
           o.final_frac, o.weight_decay, o.val_every, o.val_batches, o.seed);
}

static void fail(const std::string& msg) {
    fprintf(stderr, "train_m2rnn: %s\n", msg.c_str());
    exit(EXIT_FAILURE);
}

static int parse_int(const char* flag, const char* s) {
    char* end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < -2147483647L || v > 2147483647L)
        fail(std::string(flag) + " expects an integer, got '" + s + "'");
    return (int)v;
}

static double parse_float(const char* flag, const char* s) {
    char* end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0') fail(std::string(flag) + " expects a number, got '" + s + "'");
    return v;
}

static Options parse_options(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        const char* flag = argv[i];
        if (strcmp(flag, "-h") == 0) { usage(o); exit(EXIT_SUCCESS); }
        if (flag[0] != '-' || strlen(flag) != 2) fail(std::string("unknown argument '") + flag + "' (see -h)");
        if (i + 1 >= argc) fail(std::string(flag) + " needs a value (see -h)");
        const char* value = argv[++i];
        switch (flag[1]) {
        case 'i': o.train_pattern = value; break;
        case 'j': o.val_pattern = value; break;
        case 'e': o.preset = value; break;
        case 'b': o.B = parse_int(flag, value); break;
        case 't': o.T = parse_int(flag, value); break;
        case 'x': o.max_steps = parse_int(flag, value); break;
        case 'u': o.warmup = parse_int(flag, value); break;
        case 'l': o.lr = parse_float(flag, value); break;
        case 'q': o.final_frac = parse_float(flag, value); break;
        case 'c': o.weight_decay = parse_float(flag, value); break;
        case 'v': o.val_every = parse_int(flag, value); break;
        case 'm': o.val_batches = parse_int(flag, value); break;
        case 's': o.seed = (unsigned long long)parse_int(flag, value); break;
        default: fail(std::string("unknown flag '") + flag + "' (see -h)");
        }
    }
    if (o.B <= 0) fail("-b: the batch size must be > 0");
    if (o.T <= 0) fail("-t: the sequence length must be > 0");
    if (o.max_steps <= 0) fail("-x: the number of steps must be > 0");
    if (o.warmup < 0) fail("-u: warmup steps must be >= 0");
    if (!(o.lr > 0)) fail("-l: the learning rate must be > 0");
    if (!(o.final_frac >= 0 && o.final_frac <= 1)) fail("-q: the final lr fraction must be in [0, 1]");
    if (!(o.weight_decay >= 0)) fail("-c: weight decay must be >= 0");
    if (o.val_every <= 0 || o.val_batches <= 0) fail("-v and -m must be > 0");
    return o;
}

int main(int argc, char** argv) {
    Options o = parse_options(argc, argv);
    Config c;
    std::string err;
    if (!config_preset(o.preset, c, err)) fail("-e: " + err);
    c.T = o.T;
    if (!config_validate(c, err)) fail("config: " + err);

    DataLoader train, val;
    if (!dataloader_open(train, o.train_pattern, o.B, o.T, c.vocab, 0, 1, o.seed, err)) fail(err);
    if (!dataloader_open(val, o.val_pattern, o.B, o.T, c.vocab, 0, 1, o.seed, err)) fail(err);

    ParameterTable table = parameter_table_build(c);
    std::vector<double> params(table.total), grads(table.total), m(table.total, 0.0), v(table.total, 0.0);
    parameters_init(table, c, o.seed, params.data());
    Reference model;
    reference_init(model, c, o.B, o.T);
    std::vector<int> tokens((size_t)o.B * (o.T + 1));
    printf("model: %s\nparameters: %zu (%zu tensors)\n", config_describe(c).c_str(), table.total, table.tensors.size());
    printf("train: %s (%lld tokens), val: %s (%lld tokens), B=%d T=%d\n", o.train_pattern,
           (long long)dataloader_num_tokens(train), o.val_pattern, (long long)dataloader_num_tokens(val), o.B, o.T);

    for (int step = 0; step < o.max_steps; step++) {
        auto t0 = std::chrono::steady_clock::now();
        if (!dataloader_next(train, tokens.data(), err)) fail(err);
        double loss = reference_forward(model, params.data(), tokens.data());
        std::fill(grads.begin(), grads.end(), 0.0);
        reference_backward(model, params.data(), grads.data());
        double norm = reference_grad_norm(grads.data(), table.total);
        double lr = lr_schedule(step, o.max_steps, o.warmup, o.lr, o.final_frac);
        reference_adamw(table, params.data(), grads.data(), m.data(), v.data(), step + 1, lr, 0.9, 0.95, 1e-10,
                        o.weight_decay, norm > o.grad_clip ? o.grad_clip / norm : 1.0);
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        printf("step %4d/%d | loss %.4f | grad norm %.3f | lr %.2e | %.0f ms | %.0f tok/s\n", step + 1, o.max_steps,
               loss, norm, lr, ms, o.B * o.T / (ms / 1000.0));
        if ((step + 1) % o.val_every == 0 || step + 1 == o.max_steps) {
            double val_loss = 0;
            for (int i = 0; i < o.val_batches; i++) {
                if (!dataloader_next(val, tokens.data(), err)) fail(err);
                val_loss += reference_forward(model, params.data(), tokens.data()) / o.val_batches;
            }
            printf("val loss %.4f\n", val_loss);
        }
    }
    dataloader_close(train);
    dataloader_close(val);
    return 0;
}
