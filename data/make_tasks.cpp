// make_tasks: writes a shard of a synthetic state-tracking task (tasks.h: the groups, the sequence
// layout, the shard). The work is in tasks.cpp; this file reads the flags. E.g. a training and a
// validation shard for S5 at 64 elements, to train with -t 129:
//
//   ./make_tasks --task s5 --length 64 --sequences 100000 --seed 1 -o data/tasks/s5_L64_train.bin
//   ./make_tasks --task s5 --length 64 --sequences 1000 --seed 2 -o data/tasks/s5_L64_val.bin
#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tasks.h"

static void usage(FILE* out) {
    fprintf(out,
            "usage: make_tasks [options] -o PATH   a shard of a synthetic state-tracking task (llm.c format, uint16)\n"
            "  --task NAME       parity (Z2), s3 or s5 (the permutations of 3 or 5 things)   default s5\n"
            "  --length L        group elements per sequence (a sequence is 2L+1 tokens)      default 64\n"
            "  --min-length M    sequences of M..L elements (uniform), a row of 2L+1 tokens each, padded with BOS\n"
            "                                                                                 default L\n"
            "  --pack <0|1>      1: rows of whole sequences back to back (the last cut to fit), so each one after\n"
            "                    the first starts from the state the one before it left       default 0\n"
            "  --sequences S     rows in the shard (a sequence each, unless --pack 1)         default 10000\n"
            "  --seed N          random seed, 0 .. 2^64-1                                     default 1\n"
            "  -o, --out PATH    the shard to write (required); missing directories are made\n"
            "  -h, --help\n"
            "A sequence is [BOS, g1, s1, ..., gL, sL]: g_i uniform in the group, s_i = g1∘...∘g_i. Tokens: BOS 0,\n"
            "g = e -> 1+e, s = e -> 1+n+e (n = the group's order); vocabulary 2n+1. Train with -t 2L+1.\n");
}

static int fail(const std::string& msg) {
    fprintf(stderr, "make_tasks: %s\n", msg.c_str());
    return 1;
}

// A decimal integer in [lo, hi]; false for anything else.
static bool parse_int(const char* s, long long lo, long long hi, long long& v) {
    char* end = nullptr;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi) return false;
    v = x;
    return true;
}

// A decimal uint64 (digits only: strtoull would take "-1" as 2^64-1).
static bool parse_u64(const char* s, uint64_t& v) {
    char* end = nullptr;
    errno = 0;
    if (*s < '0' || *s > '9') return false;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end) return false;
    v = x;
    return true;
}

// mkdir -p of the directories in front of the last '/' of path; a failure shows when the file is created.
static void make_parent_dirs(const std::string& path) {
    for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1))
        mkdir(path.substr(0, slash).c_str(), 0777);
}

int main(int argc, char** argv) {
    std::string task = "s5", out;
    long long length = 64, sequences = 10000, min_length = 0, pack = 0;  // min_length 0: L
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") { usage(stdout); return 0; }
        bool known = a == "--task" || a == "--length" || a == "--min-length" || a == "--pack" ||
                     a == "--sequences" || a == "--seed" || a == "-o" || a == "--out";
        if (!known) return fail("unknown flag '" + a + "' (make_tasks -h lists them)");
        if (i + 1 >= argc) return fail(a + " needs a value");
        const char* v = argv[++i];
        const std::string bad = "bad value '" + std::string(v) + "' for " + a;
        if (a == "--task") task = v;
        else if (a == "--length") {
            const long long most = (INT32_MAX - 1) / 2;  // a sequence of 2L+1 tokens is one row of -t 2L+1
            if (!parse_int(v, 1, most, length)) return fail(bad + ": a count from 1 to " + std::to_string(most));
        } else if (a == "--min-length") {
            if (!parse_int(v, 1, INT32_MAX, min_length)) return fail(bad + ": a count from 1 to L");
        } else if (a == "--pack") {
            if (!parse_int(v, 0, 1, pack)) return fail(bad + ": 0 or 1");
        } else if (a == "--sequences") {
            if (!parse_int(v, 1, INT32_MAX, sequences))
                return fail(bad + ": a count from 1 to " + std::to_string(INT32_MAX));
        } else if (a == "--seed") {
            if (!parse_u64(v, seed)) return fail(bad + ": an integer 0 .. 2^64-1");
        } else {
            out = v;
            if (out.empty()) return fail(bad + ": a file path");
        }
    }
    if (out.empty()) return fail("-o PATH is required (make_tasks -h lists the flags)");
    if (min_length == 0) min_length = length;
    if (min_length > length)
        return fail("--min-length " + std::to_string(min_length) + " is more than --length " + std::to_string(length));

    Group g;
    std::string err;
    if (!group_by_name(task.c_str(), g, err)) return fail(err);
    make_parent_dirs(out);
    const TaskRows rows{(int)length, (int)min_length, pack == 1};
    if (!task_write_shard(out.c_str(), g, rows, sequences, seed, err)) return fail(err);
    const int T = task_sequence_tokens((int)length);
    std::string layout;
    if (rows.pack) layout = " (lengths " + std::to_string(min_length) + ".." + std::to_string(length) + ", packed)";
    else if (min_length < length)
        layout = " (lengths " + std::to_string(min_length) + ".." + std::to_string(length) + ", padded with BOS)";
    printf("make_tasks: %s (order %d), L %lld%s, %lld %s, seed %llu: %lld tokens, vocab %d -> %s; train with -t %d\n",
           g.name.c_str(), g.order, length, layout.c_str(), sequences, rows.pack ? "rows" : "sequences",
           (unsigned long long)seed, (long long)task_shard_tokens((int)length, sequences), task_vocab(g.order),
           out.c_str(), T);
    return 0;
}
