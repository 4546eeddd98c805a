// The shard loader against fixture shards written into a fresh temporary directory. Each fixture holds
// a ramp of tokens base, base+1, ..., so a row's first token says which shard and window it came
// from and the rest of the row can be compared with the file.
#include "test_shards.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "../data/shards.h"

namespace {

// A shard whose tokens are base, base+1, ..., base+n-1.
struct Ramp {
    uint32_t base;
    int64_t n;
};

// (index into the Ramp list, window); {-1, -1} for a row that is no window of any of them.
typedef std::pair<int, int64_t> Window;

// The temporary directory and the files written into it, all removed by remove_all.
struct Fixtures {
    std::string dir;
    std::vector<std::string> files;

    std::string path(const std::string& name) const { return dir + "/" + name; }

    // Writes a shard with the given header fields; token width follows the magic (uint32 for
    // SHARD_MAGIC_U32, else uint16), so a header can lie about count or version.
    std::string write(const std::string& name, int magic, int version, int64_t header_ntok,
                      const std::vector<uint32_t>& tokens) {
        std::string p = path(name);
        files.push_back(p);
        int32_t header[SHARD_HEADER_INTS] = {magic, version, (int32_t)header_ntok};
        FILE* f = fopen(p.c_str(), "wb");
        if (!f) return p;
        fwrite(header, sizeof header, 1, f);
        for (uint32_t t : tokens) {
            uint16_t t16 = (uint16_t)t;
            if (magic == SHARD_MAGIC_U32) fwrite(&t, 4, 1, f);
            else fwrite(&t16, 2, 1, f);
        }
        fclose(f);
        return p;
    }

    // Writes a well-formed shard holding `ramp`, uint16 (version 1) or uint32 (version 7).
    std::string write_ramp(const std::string& name, int version, Ramp ramp) {
        bool u32 = version == SHARD_VERSION_U32;
        return write(name, u32 ? SHARD_MAGIC_U32 : SHARD_MAGIC_U16, version, ramp.n, ramp_tokens(ramp));
    }

    std::string write_bytes(const std::string& name, size_t nbytes) {
        std::string p = path(name);
        files.push_back(p);
        std::vector<char> zeros(nbytes, 0);
        FILE* f = fopen(p.c_str(), "wb");
        if (!f) return p;
        fwrite(zeros.data(), 1, nbytes, f);
        fclose(f);
        return p;
    }

    static std::vector<uint32_t> ramp_tokens(Ramp ramp) {
        std::vector<uint32_t> tokens((size_t)ramp.n);
        for (int64_t i = 0; i < ramp.n; i++) tokens[i] = ramp.base + (uint32_t)i;
        return tokens;
    }

    void remove_all() {
        for (const std::string& f : files) unlink(f.c_str());
        rmdir(dir.c_str());
    }
};

// Reads `nbatches` batches into one flat array of rows of T+1 tokens; stops early on an error.
std::vector<int> read_batches(DataLoader& dl, int nbatches, std::string& err) {
    std::vector<int> rows((size_t)nbatches * dl.B * (dl.T + 1));
    for (int i = 0; i < nbatches; i++)
        if (!dataloader_next(dl, &rows[(size_t)i * dl.B * (dl.T + 1)], err)) {
            rows.resize((size_t)i * dl.B * (dl.T + 1));
            break;
        }
    return rows;
}

// Which window of which ramp a row is: its first token names ramp and start, the start must be a
// multiple of T with a whole window after it, and every token must equal the file's.
Window identify(const int* row, int T, const std::vector<Ramp>& ramps) {
    for (int s = 0; s < (int)ramps.size(); s++) {
        int64_t start = (int64_t)row[0] - ramps[s].base;
        if (start < 0 || start >= ramps[s].n) continue;
        if (start % T != 0 || start + T >= ramps[s].n) return {-1, -1};
        for (int j = 0; j <= T; j++)
            if (row[j] != (int)(ramps[s].base + start + j)) return {-1, -1};
        return {s, start / T};
    }
    return {-1, -1};
}

std::vector<Window> identify_rows(const std::vector<int>& rows, int T, const std::vector<Ramp>& ramps) {
    std::vector<Window> windows;
    for (size_t i = 0; i + T + 1 <= rows.size(); i += T + 1) windows.push_back(identify(&rows[i], T, ramps));
    return windows;
}

// Every window of every ramp: what one epoch of a single process must deliver.
std::multiset<Window> all_windows(const std::vector<Ramp>& ramps, int T) {
    std::multiset<Window> all;
    for (int s = 0; s < (int)ramps.size(); s++)
        for (int64_t w = 0; w < (ramps[s].n - 1) / T; w++) all.insert({s, w});
    return all;
}

// Checks that the next rows of dl, as many as `ramps` has windows, are those windows, each once.
void check_one_epoch(TestReport& r, const char* what, DataLoader& dl, const std::vector<Ramp>& ramps) {
    std::multiset<Window> expected = all_windows(ramps, dl.T);
    int nbatches = (int)((expected.size() + dl.B - 1) / dl.B);
    std::string err;
    std::vector<Window> got = identify_rows(read_batches(dl, nbatches, err), dl.T, ramps);
    got.resize(std::min(got.size(), expected.size()));
    int bad = 0;
    for (const Window& w : got) bad += w.first < 0;
    bool same = std::multiset<Window>(got.begin(), got.end()) == expected;
    r.check(err.empty() && bad == 0 && same,
            "shards: %s: first %zu rows are every window once (%d rows not a window of the file) %s", what,
            expected.size(), bad, err.c_str());
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Opening `pattern` must fail with a message naming `file` and containing `word`.
void check_refused(TestReport& r, const char* what, const std::string& pattern, const std::string& file,
                   const char* word, int T = 16, int vocab = 50257) {
    DataLoader dl;
    std::string err;
    bool opened = dataloader_open(dl, pattern.c_str(), 2, T, vocab, 1, err);
    r.check(!opened && contains(err, file) && contains(err, word), "shards: %s refused, naming file and '%s': %s",
            what, word, opened ? "(opened!)" : err.c_str());
    dataloader_close(dl);
}

}  // namespace

void test_shard_loader(TestReport& r) {
    char dir_template[] = "/tmp/test_shards_XXXXXX";
    if (!mkdtemp(dir_template)) {
        r.check(false, "shards: cannot make a temporary directory under /tmp");
        return;
    }
    Fixtures fx;
    fx.dir = dir_template;
    const int T = 16;

    // Good shards. The uint32 ramp lies above 65535 so a uint16 read of it could not pass. Windows:
    // u16 992 tokens -> 61 (a tail of T tokens is one short of a window), u32 1000 -> 62,
    // pair_a 497 -> 31 (the last window ends on the last token), pair_b 300 -> 18.
    const Ramp u16{100, 992}, u32{70000, 1000}, pair_a{0, 497}, pair_b{1000, 300};
    fx.write_ramp("u16.bin", SHARD_VERSION_U16, u16);
    fx.write_ramp("u32.bin", SHARD_VERSION_U32, u32);
    fx.write_ramp("pair_a.bin", SHARD_VERSION_U16, pair_a);
    fx.write_ramp("pair_b.bin", SHARD_VERSION_U32, pair_b);
    const std::string pair_glob = fx.path("pair_*.bin");
    const std::vector<Ramp> pair = {pair_a, pair_b};

    {
        std::string err;
        DataLoader dl;
        bool ok = dataloader_open(dl, fx.path("u16.bin").c_str(), 4, T, 50257, 7, err);
        r.check(ok && dataloader_num_tokens(dl) == 992, "shards: uint16 v1 shard opens, %lld tokens (expected 992) %s",
                (long long)dataloader_num_tokens(dl), err.c_str());
        if (ok) check_one_epoch(r, "uint16 v1", dl, {u16});
        ok = dataloader_open(dl, fx.path("u32.bin").c_str(), 4, T, 100277, 7, err);
        r.check(ok && dataloader_num_tokens(dl) == 1000, "shards: uint32 v7 shard opens, %lld tokens (expected 1000) %s",
                (long long)dataloader_num_tokens(dl), err.c_str());
        if (ok) check_one_epoch(r, "uint32 v7", dl, {u32});
        ok = dataloader_open(dl, pair_glob.c_str(), 4, T, 50257, 7, err);
        r.check(ok && dl.files.size() == 2 && dataloader_num_tokens(dl) == 797,
                "shards: glob of a uint16 and a uint32 shard opens %zu files, %lld tokens (expected 2, 797) %s",
                dl.files.size(), (long long)dataloader_num_tokens(dl), err.c_str());
        if (ok) check_one_epoch(r, "glob of two", dl, pair);
        dataloader_close(dl);
    }

    // Determinism: 49 windows in the pair, B = 7, so epochs are 7 batches; read 3 epochs.
    {
        std::string err;
        DataLoader a, b, c;
        bool ok = dataloader_open(a, pair_glob.c_str(), 7, T, 50257, 42, err) &&
                  dataloader_open(b, pair_glob.c_str(), 7, T, 50257, 42, err) &&
                  dataloader_open(c, pair_glob.c_str(), 7, T, 50257, 43, err);
        std::vector<int> ra = read_batches(a, 21, err), rb = read_batches(b, 21, err), rc = read_batches(c, 21, err);
        r.check(ok && ra.size() == (size_t)21 * 7 * (T + 1) && ra == rb,
                "shards: same seed, same 21 batches over 3 epochs (%zu tokens each) %s", ra.size(), err.c_str());
        r.check(ok && ra != rc, "shards: another seed gives another order");
        std::vector<Window> w = identify_rows(ra, T, pair);
        w.resize(98, Window{-1, -1});
        std::vector<Window> e0(w.begin(), w.begin() + 49), e1(w.begin() + 49, w.end());
        bool same_set = std::multiset<Window>(e0.begin(), e0.end()) == all_windows(pair, T) &&
                        std::multiset<Window>(e1.begin(), e1.end()) == all_windows(pair, T);
        r.check(ok && same_set && e0 != e1, "shards: epoch 2 has the same windows as epoch 1 in a new order");
        dataloader_close(a);
        dataloader_close(b);
        dataloader_close(c);
    }

    // State and restore, before and after an epoch boundary (49 windows, B = 5), and with another B.
    for (int k : {3, 12}) {
        std::string err;
        DataLoader a, b;
        bool ok = dataloader_open(a, pair_glob.c_str(), 5, T, 50257, 9, err);
        read_batches(a, k, err);
        DataLoaderState s = dataloader_state(a);
        std::vector<int> after = read_batches(a, 15, err);
        ok = ok && dataloader_open(b, pair_glob.c_str(), 5, T, 50257, 9, err) &&
             dataloader_restore(b, s, err);
        std::vector<int> resumed = read_batches(b, 15, err);
        r.check(ok && after.size() == (size_t)15 * 5 * (T + 1) && resumed == after,
                "shards: restore after %d batches (epoch %lld shard %lld window %lld), next 15 batches identical %s",
                k, (long long)s.epoch, (long long)s.shard, (long long)s.window, err.c_str());
        DataLoader one;
        ok = dataloader_open(one, pair_glob.c_str(), 1, T, 50257, 9, err) && dataloader_restore(one, s, err);
        std::vector<int> rows = read_batches(one, 5, err);
        r.check(ok && std::equal(rows.begin(), rows.end(), after.begin()),
                "shards: restore after %d batches into a B=1 loader gives the same 5 rows %s", k, err.c_str());
        dataloader_close(a);
        dataloader_close(b);
        dataloader_close(one);
    }
    {
        std::string err;
        DataLoader dl;
        bool ok = dataloader_open(dl, pair_glob.c_str(), 5, T, 50257, 9, err);
        ok = ok && !dataloader_restore(dl, DataLoaderState{0, 5, 0}, err);
        r.check(ok, "shards: restore of a position outside the data refused: %s", err.c_str());
        dataloader_close(dl);
    }

    // Bad inputs, each in its own file so the message must name the right one.
    std::vector<uint32_t> hundred = Fixtures::ramp_tokens({0, 100});
    std::string f = fx.write("bad_magic.bin", 12345, 1, 100, hundred);
    check_refused(r, "wrong magic 12345", f, f, "magic");
    f = fx.write("bad_version.bin", SHARD_MAGIC_U16, 7, 100, hundred);
    check_refused(r, "magic 20240520 with version 7", f, f, "version");
    f = fx.write("truncated.bin", SHARD_MAGIC_U16, 1, 102, hundred);
    check_refused(r, "file shorter than its header's count", f, f, "truncated");
    f = fx.write("longer.bin", SHARD_MAGIC_U16, 1, 98, hundred);
    check_refused(r, "file longer than its header's count", f, f, "mismatch");
    f = fx.write_bytes("short_header.bin", 100);
    check_refused(r, "100-byte file", f, f, "header");
    f = fx.write_ramp("tiny.bin", SHARD_VERSION_U16, {0, T});
    check_refused(r, "shard of T tokens", f, f, "fewer");
    std::vector<uint32_t> bad_token = hundred;
    bad_token[17] = 50300;
    f = fx.write("bad_token.bin", SHARD_MAGIC_U16, 1, 100, bad_token);
    check_refused(r, "token 50300 >= vocab 50257", f, f, "vocab");
    std::string nothing = fx.path("nothing_*.bin");
    check_refused(r, "glob that matches nothing", nothing, nothing, "no file");
    fx.write_ramp("mixed_a.bin", SHARD_VERSION_U16, {0, 100});
    std::string bad_second = fx.write("mixed_b.bin", SHARD_MAGIC_U16, 1, 100, bad_token);
    {
        // Open reads only the first shard of the shuffled order; a bad later one is found by next.
        std::string err;
        DataLoader dl;
        std::string where = "open";
        bool failed = !dataloader_open(dl, fx.path("mixed_*.bin").c_str(), 2, T, 50257, 3, err);
        for (int i = 0; !failed && i < 10; i++) {
            std::vector<int> tokens(2 * (T + 1));
            failed = !dataloader_next(dl, tokens.data(), err);
            where = "batch " + std::to_string(i);
        }
        r.check(failed && contains(err, bad_second) && contains(err, "vocab"),
                "shards: bad token in one of two shards refused at %s: %s", where.c_str(), err.c_str());
        dataloader_close(dl);
    }
    {
        std::string err;
        DataLoader dl;
        std::string good = fx.path("u16.bin");
        bool refused = !dataloader_open(dl, good.c_str(), 0, T, 50257, 1, err) &&
                       !dataloader_open(dl, good.c_str(), 2, 0, 50257, 1, err) &&
                       !dataloader_open(dl, good.c_str(), 2, T, 0, 1, err);
        r.check(refused, "shards: B, T or vocab <= 0 refused (last: %s)", err.c_str());
    }
    fx.remove_all();

    // The bundled dataset, as llm.c prepared it.
    {
        std::string err;
        DataLoader dl;
        const char* val = "data/tinyshakespeare/tiny_shakespeare_val.bin";
        bool ok = dataloader_open(dl, val, 4, 64, 50257, 1, err);
        std::vector<int> rows = ok ? read_batches(dl, 1, err) : std::vector<int>();
        r.check(ok && dataloader_num_tokens(dl) == 32768 && rows.size() == 4 * 65,
                "shards: %s opens with vocab 50257, %lld tokens (header 32768) %s", val,
                (long long)dataloader_num_tokens(dl), err.c_str());
        dataloader_close(dl);
    }
}
