// The groups, sequences and shards of tasks.h.
#include "tasks.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <map>
#include <numeric>

#include "shards.h"

// S_degree: std::next_permutation from the identity visits the image lists in lexicographic order,
// which numbers the elements; a∘b is looked up by the image list a[b[x]].
static Group symmetric_group(const char* name, int degree) {
    std::vector<std::vector<int>> images;
    std::vector<int> p(degree);
    std::iota(p.begin(), p.end(), 0);
    do images.push_back(p);
    while (std::next_permutation(p.begin(), p.end()));

    std::map<std::vector<int>, int> index;
    for (int e = 0; e < (int)images.size(); e++) index[images[e]] = e;
    Group g;
    g.name = name;
    g.order = (int)images.size();
    g.degree = degree;
    g.compose.resize((size_t)g.order * g.order);
    std::vector<int> ab(degree);
    for (int a = 0; a < g.order; a++)
        for (int b = 0; b < g.order; b++) {
            for (int x = 0; x < degree; x++) ab[x] = images[a][images[b][x]];
            g.compose[(size_t)a * g.order + b] = index.at(ab);
        }
    return g;
}

bool group_by_name(const char* name, Group& g, std::string& err) {
    const std::string n = name;
    if (n == "parity") g = symmetric_group(name, 2);
    else if (n == "s3") g = symmetric_group(name, 3);
    else if (n == "s5") g = symmetric_group(name, 5);
    else {
        err = "unknown task '" + n + "' (parity, s3 or s5)";
        return false;
    }
    return true;
}

void task_sequence(const Group& g, int L, Random& rng, std::vector<uint32_t>& out) {
    out.push_back(TASK_BOS);
    int state = 0;  // the identity: s_0
    for (int i = 1; i <= L; i++) {
        int e = rng.below(g.order);
        state = g.compose[(size_t)state * g.order + e];
        out.push_back((uint32_t)task_input_token(e));
        out.push_back((uint32_t)task_state_token(g.order, state));
    }
}

void task_row(const Group& g, const TaskRows& rows, Random& rng, std::vector<uint32_t>& out) {
    const size_t end = out.size() + task_sequence_tokens(rows.L);
    do {
        const int room = (int)(end - out.size() - 1) / 2;  // the elements of a sequence that still fits
        const int drawn = rows.min_length < rows.L ? rows.min_length + rng.below(rows.L - rows.min_length + 1) : rows.L;
        const int l = std::min(drawn, room);
        if (l < rows.min_length) break;
        task_sequence(g, l, rng, out);
    } while (rows.pack && out.size() < end);
    out.insert(out.end(), end - out.size(), TASK_BOS);
}

int task_row_mismatch(const int* row, int T, int order) {
    for (int t = 0; t <= T; t++) {
        const bool ok = t == 0 || t == T ? row[t] == TASK_BOS
                        : t % 2 == 1 ? task_is_input_token(order, row[t]) : task_is_state_token(order, row[t]);
        if (!ok) return t;
    }
    return -1;
}

bool task_write_shard(const char* path, const Group& g, const TaskRows& rows, int64_t count, uint64_t seed,
                      std::string& err) {
    const int L = rows.L;
    if (L < 1 || count < 1) {
        err = std::string(path) + ": need at least one row for sequences of at least one element (L " +
              std::to_string(L) + ", rows " + std::to_string(count) + ")";
        return false;
    }
    if (rows.min_length < 1 || rows.min_length > L) {
        err = std::string(path) + ": the minimum length " + std::to_string(rows.min_length) +
              " must be from 1 to L = " + std::to_string(L);
        return false;
    }
    if (L > (INT32_MAX - 1) / 2 || count > (INT32_MAX - 1) / task_sequence_tokens(L)) {
        err = std::string(path) + ": " + std::to_string(count) + " rows of 2L+1 = " +
              std::to_string(2 * (int64_t)L + 1) + " tokens do not fit a shard header's int32 count";
        return false;
    }
    ShardWriter w;
    if (!shard_writer_open(w, path, true, err)) return false;
    Random rng(seed);
    std::vector<uint32_t> tokens;
    auto flush = [&] {
        const bool ok = shard_writer_append(w, tokens.data(), tokens.size(), err);
        tokens.clear();
        return ok;
    };
    for (int64_t r = 0; r < count; r++) {
        task_row(g, rows, rng, tokens);
        if (tokens.size() >= (1 << 20) && !flush()) return shard_writer_discard(w), false;
    }
    tokens.push_back(TASK_BOS);
    if (!flush()) return shard_writer_discard(w), false;
    return shard_writer_close(w, err);
}
