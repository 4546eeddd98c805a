// The synthetic tasks of data/tasks.h. The test numbers permutations on its own, by their Lehmer code
// (the rank of an image list in lexicographic order: sum over i of #{j > i : p[j] < p[i]} · (d-1-i)!), and
// composes image lists directly, so the tables and the states of the sequences are checked against
// arithmetic that shares nothing with the enumeration in data/tasks.cpp.
#include "test_tasks.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "../data/shards.h"
#include "../data/tasks.h"
#include "../model/random.h"
#include "read_file.h"

namespace {

typedef std::vector<int> Perm;  // an image list: p[x] for x = 0..d-1

int factorial(int k) { return k <= 1 ? 1 : k * factorial(k - 1); }

int rank_of(const Perm& p) {
    const int d = (int)p.size();
    int rank = 0;
    for (int i = 0; i < d; i++) {
        int smaller_after = 0;
        for (int j = i + 1; j < d; j++) smaller_after += p[j] < p[i];
        rank += smaller_after * factorial(d - 1 - i);
    }
    return rank;
}

// The image list of rank `e` among the permutations of {0..d-1}: e's digits in the factorial base pick,
// left to right, which of the values not yet used comes next.
Perm perm_of(int e, int d) {
    std::vector<int> unused(d);
    for (int x = 0; x < d; x++) unused[x] = x;
    Perm p;
    for (int i = 0; i < d; i++) {
        const int f = factorial(d - 1 - i);
        p.push_back(unused[e / f]);
        unused.erase(unused.begin() + e / f);
        e %= f;
    }
    return p;
}

// (a∘b)(x) = a(b(x))
Perm compose(const Perm& a, const Perm& b) {
    Perm ab(a.size());
    for (size_t x = 0; x < a.size(); x++) ab[x] = a[b[x]];
    return ab;
}

int table(const Group& g, int a, int b) { return g.compose[(size_t)a * g.order + b]; }

// The group axioms and the table against composing image lists.
void check_group(TestReport& r, const Group& g) {
    const int n = g.order;
    const char* name = g.name.c_str();
    int outside = 0;
    for (int v : g.compose) outside += v < 0 || v >= n;
    if (!r.check(outside == 0, "tasks: %s: closure: %d of the %d table entries are not elements", name, outside, n * n))
        return;

    int not_identity = 0;
    for (int a = 0; a < n; a++) not_identity += (table(g, 0, a) != a) + (table(g, a, 0) != a);
    r.check(not_identity == 0, "tasks: %s: element 0 is the identity: 0∘a = a∘0 = a fails for %d of %d elements", name,
            not_identity, n);

    int wrong = 0;
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            wrong += table(g, a, b) != rank_of(compose(perm_of(a, g.degree), perm_of(b, g.degree)));
    r.check(wrong == 0, "tasks: %s: table against composing image lists numbered by Lehmer code: %d of %d differ", name,
            wrong, n * n);

    // every triple when there are few, else a sample
    int triples = 0, not_associative = 0;
    Random rng(11);
    auto associative = [&](int a, int b, int c) {
        triples++;
        not_associative += table(g, table(g, a, b), c) != table(g, a, table(g, b, c));
    };
    if (n <= 6) {
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++)
                for (int c = 0; c < n; c++) associative(a, b, c);
    } else {
        for (int i = 0; i < 5000; i++) associative(rng.below(n), rng.below(n), rng.below(n));
    }
    r.check(not_associative == 0, "tasks: %s: (a∘b)∘c = a∘(b∘c) fails for %d of %d triples (%s)", name,
            not_associative, triples, n <= 6 ? "all" : "random");

    int no_inverse = 0;
    for (int a = 0; a < n; a++) {
        bool found = false;
        for (int b = 0; b < n && !found; b++) found = table(g, a, b) == 0 && table(g, b, a) == 0;
        no_inverse += !found;
    }
    r.check(no_inverse == 0, "tasks: %s: every element has an inverse: %d of %d have none", name, no_inverse, n);

    int noncommuting = 0, not_xor = 0;
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            noncommuting += table(g, a, b) != table(g, b, a);
            not_xor += table(g, a, b) != (a ^ b);
        }
    if (n == 2)
        r.check(not_xor == 0, "tasks: parity: a∘b = a xor b fails for %d of 4 pairs", not_xor);
    else
        r.check(noncommuting > 0, "tasks: %s: non-abelian: a∘b != b∘a for %d of %d pairs", name, noncommuting, n * n);
}

// Layout and states of sequences of several lengths appended to one vector, and the spread of the inputs.
void check_sequences(TestReport& r, const Group& g) {
    const int n = g.order;
    const char* name = g.name.c_str();
    const int lengths[] = {1, 7, 200};
    Random rng(5);
    std::vector<uint32_t> tokens;
    for (int L : lengths) task_sequence(g, L, rng, tokens);
    int misplaced = 0, states = 0, wrong_states = 0;
    size_t at = 0;
    for (int L : lengths) {
        misplaced += at >= tokens.size() || tokens[at] != TASK_BOS;
        Perm state = perm_of(0, g.degree);
        for (int i = 1; i <= L && at + 2 * i < tokens.size(); i++) {
            const int in = tokens[at + 2 * i - 1], s = tokens[at + 2 * i];
            const bool in_ok = in >= 1 && in <= n, s_ok = s >= n + 1 && s <= 2 * n;
            misplaced += !in_ok + !s_ok;
            if (!in_ok) continue;
            state = compose(state, perm_of(in - 1, g.degree));
            states++;
            wrong_states += s != n + 1 + rank_of(state);
        }
        at += 2 * L + 1;
    }
    r.check(tokens.size() == at && misplaced == 0,
            "tasks: %s: sequences of L 1, 7, 200 appended: %zu tokens (expected %zu = sum of 2L+1), BOS first, g in "
            "1..%d, s in %d..%d: %d tokens misplaced", name, tokens.size(), at, n, n + 1, 2 * n, misplaced);
    r.check(states == 208 && wrong_states == 0,
            "tasks: %s: s_i against g1∘...∘g_i composed as image lists: %d of %d states differ", name, wrong_states,
            states);

    // 500 draws per element expected; the binomial's sd is at most 22, so 400..600 is a 4.5-sd band
    std::vector<int> count(n, 0);
    for (int s = 0; s < 5 * n; s++) {
        tokens.clear();
        task_sequence(g, 100, rng, tokens);
        for (size_t i = 1; i < tokens.size(); i += 2)
            if (tokens[i] >= 1 && tokens[i] <= (uint32_t)n) count[tokens[i] - 1]++;
    }
    const int lo = *std::min_element(count.begin(), count.end()), hi = *std::max_element(count.begin(), count.end());
    r.check(lo >= 400 && hi <= 600, "tasks: %s: inputs uniform: each element %d..%d times in %d draws (expected 500)",
            name, lo, hi, 500 * n);
}

// The layout helpers on a row as the loader cuts it from a shard at T = 2L+1 (a sequence, then the next
// sequence's BOS), and task_row_mismatch on that row with one token changed at a time.
void check_row_layout(TestReport& r, const Group& g) {
    const int n = g.order, L = 7, T = task_sequence_tokens(L);
    const char* name = g.name.c_str();
    Random rng(3);
    std::vector<uint32_t> sequence;
    task_sequence(g, L, rng, sequence);
    std::vector<int> row(sequence.begin(), sequence.end());
    row.push_back(TASK_BOS);

    bool sizes = task_order_of_vocab(task_vocab(n)) == n && task_order_of_vocab(task_vocab(n) + 1) == n &&
                 task_length_of(T) == L && task_length_of(3) == 1 && task_length_of(1025) == 512;
    for (int not_2l1 : {-3, 0, 1, 2, 64, 1024}) sizes = sizes && task_length_of(not_2l1) == -1;
    r.check(sizes, "tasks: %s: order of vocab %d is %d, of %d also; L of T = 2L+1 for T 3, %d, 1025; -1 for T -3, 0, "
            "1, 2, 64, 1024", name, task_vocab(n), task_order_of_vocab(task_vocab(n)), task_vocab(n) + 1, T);

    // every g_i and s_i where the helpers put them, s_i the target of g_i's position, together positions 1..2L
    int misplaced = 0;
    std::vector<int> seen(T + 1, 0);
    for (int i = 1; i <= L; i++) {
        misplaced += !task_is_input_token(n, row[task_input_position(i)]);
        misplaced += !task_is_state_token(n, row[task_state_position(i)]);
        misplaced += task_state_position(i) != task_input_position(i) + 1;
        seen[task_input_position(i)]++;
        seen[task_state_position(i)]++;
    }
    for (int t = 1; t < T; t++) misplaced += seen[t] != 1;
    r.check(misplaced == 0 && task_input_position(1) == 1 && task_state_position(1) == 2 &&
                task_state_position(L) == T - 1,
            "tasks: %s: g_i at task_input_position(i) = 2i-1, s_i at task_state_position(i) = 2i, for i = 1..%d: "
            "%d misplaced", name, L, misplaced);

    struct Change { int position, token; const char* what; };
    const Change changes[] = {
        {0, task_input_token(0), "BOS -> g"},
        {task_input_position(2), task_state_token(n, 0), "g_2 -> s"},
        {task_input_position(3), TASK_BOS, "g_3 -> BOS"},
        {task_state_position(2), task_input_token(n - 1), "s_2 -> g"},
        {task_state_position(3), task_vocab(n), "s_3 -> a token outside the vocabulary"},
        {T, task_state_token(n, 0), "the next BOS -> s"},
    };
    int wrong = task_row_mismatch(row.data(), T, n) != -1;
    std::string wrong_changes;
    for (const Change& c : changes) {
        std::vector<int> changed = row;
        changed[c.position] = c.token;
        const int got = task_row_mismatch(changed.data(), T, n);
        if (got != c.position)
            wrong_changes += std::string(" ") + c.what + " at " + std::to_string(c.position) + " gave " +
                             std::to_string(got) + ";";
        wrong += got != c.position;
    }
    std::vector<int> two = row;
    two[task_input_position(5)] = two[task_input_position(2)] = TASK_BOS;
    wrong += task_row_mismatch(two.data(), T, n) != task_input_position(2);
    // the same tokens read at T - 2 end on g_L where a BOS belongs
    wrong += task_row_mismatch(row.data(), T - 2, n) != T - 2;
    r.check(wrong == 0, "tasks: %s: task_row_mismatch: -1 for a row of L %d; the position of one changed token (BOS, "
            "g, s, outside the vocabulary, the next BOS), the first of two, T - 2 at a shorter T: %d wrong%s", name, L,
            wrong, wrong_changes.c_str());
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The sequences of one row of 2L+1 tokens, as a shard's rows are made: BOS-led runs of (g, s) pairs whose
// states are the running products from the identity; their lengths into `lengths`, BOS-only runs (the padding)
// into `padding`. Returns the tokens that break that layout.
int parse_row(const Group& g, const uint16_t* x, int T, std::vector<int>& lengths, int& padding) {
    int faults = 0, t = 0;
    padding = 0;
    while (t < T) {
        faults += x[t] != TASK_BOS;  // a run starts at a BOS
        t++;
        int l = 0, state = 0;
        while (t < T && x[t] != TASK_BOS) {
            if (!task_is_input_token(g.order, x[t]) || t + 1 >= T) {  // an input, then its state
                faults++;
                t++;
                break;
            }
            state = g.compose[(size_t)state * g.order + task_token_element(g.order, x[t])];
            faults += x[t + 1] != task_state_token(g.order, state);
            t += 2;
            l++;
        }
        if (l > 0) lengths.push_back(l);
        else padding++;
    }
    return faults;
}

// A shard of these rows (L, a minimum length below it, packed or not): every row parses (parse_row), every
// sequence has min_length..L elements, the lengths vary, and a packed shard holds rows of several sequences,
// an unpacked one rows of one.
void check_row_lengths(TestReport& r, const Group& g, const std::string& dir, const TaskRows& rows, int S) {
    const std::string path = dir + (rows.pack ? "/packed.bin" : "/mixed.bin");
    const int T = task_sequence_tokens(rows.L);
    std::string err, bytes;
    bool ok = task_write_shard(path.c_str(), g, rows, S, 7, err) && read_file(path, bytes) &&
              bytes.size() == SHARD_HEADER_INTS * sizeof(int32_t) + (size_t)task_shard_tokens(rows.L, S) * 2;
    std::vector<uint16_t> tokens(ok ? (bytes.size() - SHARD_HEADER_INTS * sizeof(int32_t)) / 2 : 0);
    if (ok) memcpy(tokens.data(), bytes.data() + SHARD_HEADER_INTS * sizeof(int32_t), tokens.size() * 2);
    int faults = 0, most = 0, padded_rows = 0;
    std::vector<int> all;
    for (int row = 0; ok && row < S; row++) {
        std::vector<int> lengths;
        int padding = 0;
        faults += parse_row(g, tokens.data() + (size_t)row * T, T, lengths, padding);
        for (int l : lengths) faults += l < rows.min_length || l > rows.L;
        most = std::max(most, (int)lengths.size());
        padded_rows += padding > 0;
        all.insert(all.end(), lengths.begin(), lengths.end());
    }
    std::sort(all.begin(), all.end());
    const int distinct = (int)(std::unique(all.begin(), all.end()) - all.begin());
    const bool shape = rows.pack ? most >= 3 : most == 1;
    r.check(ok && faults == 0 && !tokens.empty() && tokens.back() == TASK_BOS && distinct >= 6 && shape,
            "tasks: minimum length %d at L %d%s: %d rows of 2L+1 tokens, whole sequences with their running "
            "products (%d faults), %d lengths, up to %d sequences a row, %d rows padded with BOS %s", rows.min_length,
            rows.L, rows.pack ? ", packed" : "", S, faults, distinct, most, padded_rows, err.c_str());
    unlink(path.c_str());
}

// Shards of s3, L 10: bytes, header, determinism, and the loader at T = 2L+1.
void check_shards(TestReport& r, const Group& g) {
    char dir_template[] = "/tmp/test_tasks_XXXXXX";
    if (!r.check(mkdtemp(dir_template) != nullptr, "tasks: temporary directory %s", dir_template)) return;
    const std::string dir = dir_template, a = dir + "/a.bin", b = dir + "/b.bin", c = dir + "/c.bin";
    const int L = 10, T = 2 * L + 1, S = 50;
    const int64_t ntok = (int64_t)S * T + 1;
    std::string err, bytes_a, bytes_b, bytes_c;
    const TaskRows full{L, L, false};  // one sequence of L a row
    bool ok = task_write_shard(a.c_str(), g, full, S, 7, err) && task_write_shard(b.c_str(), g, full, S, 7, err) &&
              task_write_shard(c.c_str(), g, full, S, 8, err);
    ok = r.check(ok && read_file(a, bytes_a) && read_file(b, bytes_b) && read_file(c, bytes_c),
                 "tasks: write three s3 shards of %d sequences, L %d %s", S, L, err.c_str());
    r.check(ok && bytes_a == bytes_b && bytes_a != bytes_c && access((a + ".tmp").c_str(), F_OK) != 0,
            "tasks: seed 7 twice gives identical bytes (%zu), seed 8 other bytes; no .tmp left", bytes_a.size());

    int32_t header[SHARD_HEADER_INTS] = {0};
    std::vector<uint16_t> tokens;
    if (bytes_a.size() >= sizeof header) {
        memcpy(header, bytes_a.data(), sizeof header);
        tokens.resize((bytes_a.size() - sizeof header) / 2);
        memcpy(tokens.data(), bytes_a.data() + sizeof header, tokens.size() * 2);
    }
    r.check(header[0] == SHARD_MAGIC_U16 && header[1] == SHARD_VERSION_U16 && header[2] == ntok &&
                task_shard_tokens(L, S) == ntok && (int64_t)tokens.size() == ntok,
            "tasks: header magic %d version %d count %d, %zu tokens in the file (expected %d, %d, S(2L+1)+1 = %lld)",
            header[0], header[1], header[2], tokens.size(), SHARD_MAGIC_U16, SHARD_VERSION_U16, (long long)ntok);
    std::vector<uint32_t> expected;
    Random rng(7);
    for (int s = 0; s < S; s++) task_sequence(g, L, rng, expected);
    expected.push_back(TASK_BOS);
    r.check(tokens == std::vector<uint16_t>(expected.begin(), expected.end()),
            "tasks: shard tokens are task_sequence's from Random(7), then one BOS");

    // One epoch of the loader at T = 2L+1 is every sequence once, each followed by a BOS as its last target.
    DataLoader dl;
    ok = dataloader_open(dl, a.c_str(), 5, T, task_vocab(g.order), 3, err);
    std::vector<std::vector<int>> rows, sequences;
    std::vector<int> batch(5 * (T + 1));
    for (int i = 0; ok && i < S / 5; i++) {
        ok = dataloader_next(dl, batch.data(), err);
        for (int b = 0; ok && b < 5; b++)
            rows.emplace_back(batch.begin() + b * (T + 1), batch.begin() + (b + 1) * (T + 1));
    }
    int bad_rows = 0;
    for (const std::vector<int>& row : rows) {
        bad_rows += row[0] != TASK_BOS || row[T] != TASK_BOS;
        for (int j = 1; j < T; j++) bad_rows += row[j] == TASK_BOS;
    }
    for (int s = 0; s < S; s++) sequences.emplace_back(expected.begin() + s * T, expected.begin() + (s + 1) * T + 1);
    std::sort(rows.begin(), rows.end());
    std::sort(sequences.begin(), sequences.end());
    r.check(ok && rows.size() == (size_t)S && bad_rows == 0 && rows == sequences,
            "tasks: dataloader_open at T = 2L+1 = %d, vocab %d: %zu rows of an epoch (expected %d), %d not "
            "[BOS, sequence, BOS], all sequences once: %s %s", T, task_vocab(g.order), rows.size(), S, bad_rows,
            rows == sequences ? "yes" : "no", err.c_str());
    dataloader_close(dl);

    // Refusals, each leaving no file.
    const std::string none = dir + "/none.bin", missing = dir + "/no/such/dir.bin";
    std::string e1, e2, e3, e4, e5, e6;
    bool refused = !task_write_shard(none.c_str(), g, TaskRows{0, 0, false}, 5, 1, e1) &&
                   !task_write_shard(none.c_str(), g, TaskRows{5, 5, false}, 0, 1, e2) &&
                   !task_write_shard(none.c_str(), g, TaskRows{64, 64, false}, (int64_t)1 << 30, 1, e3) &&
                   !task_write_shard(missing.c_str(), g, TaskRows{5, 5, false}, 5, 1, e4) &&
                   !task_write_shard(none.c_str(), g, TaskRows{5, 0, false}, 5, 1, e5) &&
                   !task_write_shard(none.c_str(), g, TaskRows{5, 6, false}, 5, 1, e6);
    r.check(refused && contains(e1, none) && contains(e3, "int32") && contains(e4, missing) &&
                contains(e5, "minimum length 0") && contains(e6, "minimum length 6") &&
                access(none.c_str(), F_OK) != 0 && access((none + ".tmp").c_str(), F_OK) != 0,
            "tasks: refused: L 0 (%s); 0 sequences; 2^30 sequences of L 64 (%s); missing directory (%s); minimum "
            "lengths 0 and 6 at L 5 (%s)", e1.c_str(), e3.c_str(), e4.c_str(), e6.c_str());

    check_row_lengths(r, g, dir, TaskRows{L, 2, false}, S);
    check_row_lengths(r, g, dir, TaskRows{L, 2, true}, S);

    unlink(a.c_str());
    unlink(b.c_str());
    unlink(c.c_str());
    rmdir(dir.c_str());
}

}  // namespace

void test_tasks(TestReport& r) {
    struct Expected { const char* name; int order, degree, vocab; };
    const Expected groups[] = {{"parity", 2, 2, 5}, {"s3", 6, 3, 13}, {"s5", 120, 5, 241}};
    Group s3;
    for (const Expected& want : groups) {
        Group g;
        std::string err;
        bool ok = group_by_name(want.name, g, err) && g.name == want.name && g.order == want.order &&
                  g.degree == want.degree && g.compose.size() == (size_t)want.order * want.order &&
                  task_vocab(g.order) == want.vocab;
        if (!r.check(ok, "tasks: %s: order %d, degree %d, vocab %d (expected %d, %d, %d) %s", want.name, g.order,
                     g.degree, task_vocab(g.order), want.order, want.degree, want.vocab, err.c_str()))
            continue;
        check_group(r, g);
        check_sequences(r, g);
        check_row_layout(r, g);
        if (g.name == "s3") s3 = g;
    }
    {
        Group g;
        std::string err;
        const bool refused = !group_by_name("s4", g, err);
        r.check(refused && contains(err, "s4"), "tasks: unknown task refused: %s", err.c_str());
    }
    if (s3.order != 6) return;

    // Worked by hand: a = [1,0,2], b = [0,2,1]; (a∘b)(x) = a(b(x)) = [1,2,0], b∘a = [2,0,1]. In lexicographic
    // order 012 021 102 120 201 210 they are elements 2, 1, 3 and 4.
    const int a = rank_of({1, 0, 2}), b = rank_of({0, 2, 1});
    r.check(a == 2 && b == 1 && rank_of({1, 2, 0}) == 3 && rank_of({2, 0, 1}) == 4 && table(s3, a, b) == 3 &&
                table(s3, b, a) == 4,
            "tasks: s3: a = [1,0,2] (element %d), b = [0,2,1] (element %d): a∘b = element %d (expected 3 = [1,2,0]), "
            "b∘a = element %d (expected 4 = [2,0,1])", a, b, table(s3, a, b), table(s3, b, a));

    int mismatched = 0;
    for (int token = -1; token <= 2 * 6 + 1; token++) {
        const int e = task_token_element(6, token);
        const bool input = token >= 1 && token <= 6, state = token >= 7 && token <= 12;
        mismatched += task_is_input_token(6, token) != input || task_is_state_token(6, token) != state;
        mismatched += input ? e != token - 1 || task_input_token(e) != token
                            : state ? e != token - 7 || task_state_token(6, e) != token : e != -1;
    }
    r.check(mismatched == 0 && task_vocab(6) == 13 && task_sequence_tokens(64) == 129,
            "tasks: s3 token mapping (BOS 0, g 1..6, s 7..12, none else) for tokens -1..13: %d wrong", mismatched);

    check_shards(r, s3);
}
