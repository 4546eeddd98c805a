#include "shards.h"

#include <glob.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <utility>

#include "../model/model_math.h"

static const int64_t HEADER_BYTES = SHARD_HEADER_INTS * sizeof(int32_t);

// Sets err to "path: <message>" and returns false, so every problem names its file.
static bool fail(std::string& err, const std::string& path, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(std::string& err, const std::string& path, const char* fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err = path + ": " + msg;
    return false;
}

static int token_bytes(int version) { return version == SHARD_VERSION_U16 ? 2 : 4; }

// Text, not a shard: no byte below 0x20 but tab, newline and carriage return (a shard's header has zero bytes).
static bool looks_like_text(const unsigned char* s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') return false;
    return n > 0;
}

bool shard_read_header(const char* path, int& version, int64_t& ntok, std::string& err) {
    struct stat st;
    if (stat(path, &st) != 0) return fail(err, path, "cannot open: %s", strerror(errno));
    if (!S_ISREG(st.st_mode)) return fail(err, path, "not a regular file");

    int32_t header[SHARD_HEADER_INTS];
    FILE* f = fopen(path, "rb");
    if (!f) return fail(err, path, "cannot open: %s", strerror(errno));
    size_t got = fread(header, 1, HEADER_BYTES, f);
    fclose(f);
    if (looks_like_text((const unsigned char*)header, got)) {
        const std::string p = path;
        const size_t base = p.rfind('/') + 1, dot = p.rfind('.');  // rfind's npos + 1 = 0: no directory
        const std::string prefix = dot != std::string::npos && dot > base ? p.substr(0, dot) : p;  // input.txt -> input
        return fail(err, path, "looks like text, not a token shard; make shards of it with `make tokenize && "
                    "./tokenize -o %s %s` (writes %s_train.bin; ./tokenize -h for a validation split)", prefix.c_str(),
                    path, prefix.c_str());
    }
    if (st.st_size < HEADER_BYTES)
        return fail(err, path, "file is %lld bytes, shorter than the %lld-byte header", (long long)st.st_size,
                    (long long)HEADER_BYTES);
    if (got != (size_t)HEADER_BYTES) return fail(err, path, "cannot read the %lld-byte header", (long long)HEADER_BYTES);

    int magic = header[0];
    version = header[1];
    if (magic != SHARD_MAGIC_U16 && magic != SHARD_MAGIC_U32)
        return fail(err, path, "bad magic %d (expected %d for uint16 v%d or %d for uint32 v%d)", magic,
                    SHARD_MAGIC_U16, SHARD_VERSION_U16, SHARD_MAGIC_U32, SHARD_VERSION_U32);
    int expected_version = magic == SHARD_MAGIC_U16 ? SHARD_VERSION_U16 : SHARD_VERSION_U32;
    if (version != expected_version)
        return fail(err, path, "bad version %d for magic %d (expected %d)", version, magic, expected_version);

    ntok = header[2];
    if (ntok < 0) return fail(err, path, "header says %lld tokens", (long long)ntok);
    int64_t width = token_bytes(version);
    int64_t payload = st.st_size - HEADER_BYTES;
    if (payload != ntok * width) {
        char stray[64] = "";
        if (payload % width) snprintf(stray, sizeof stray, " and %lld stray byte(s)", (long long)(payload % width));
        return fail(err, path, "header says %lld tokens but the file holds %lld%s (%s)", (long long)ntok,
                    (long long)(payload / width), stray, payload < ntok * width ? "truncated?" : "count mismatch");
    }
    return true;
}

// Windows start at multiples of T and need T+1 tokens, so a shard of n tokens holds (n-1)/T of them.
static int64_t shard_windows(const DataLoader& dl, int64_t file) { return (dl.file_tokens[file] - 1) / dl.T; }

// A permutation of 0..n-1 that depends only on (seed, epoch, stream): Fisher-Yates driven by
// splitmix64 (model/model_math.h), written out because std::shuffle's draws differ between standard libraries.
static std::vector<int64_t> shuffled(int64_t n, uint64_t seed, int64_t epoch, uint64_t stream) {
    std::vector<int64_t> order(n);
    for (int64_t i = 0; i < n; i++) order[i] = i;
    uint64_t state = splitmix64_mix(splitmix64_mix(splitmix64_mix(seed) ^ (uint64_t)epoch) ^ stream);
    for (int64_t i = n - 1; i > 0; i--) {
        state += SPLITMIX64_GAMMA;
        std::swap(order[i], order[splitmix64_mix(state) % (uint64_t)(i + 1)]);
    }
    return order;
}

// Stream 0 orders the shards of an epoch; stream 1 + file orders that file's windows.
static std::vector<int64_t> shard_order_of(const DataLoader& dl, int64_t epoch) {
    return shuffled((int64_t)dl.files.size(), dl.seed, epoch, 0);
}

// Reads one shard's tokens into dl.tokens, checking each against vocab.
static bool load_shard(DataLoader& dl, int64_t file, std::string& err) {
    const std::string& path = dl.files[file];
    int64_t n = dl.file_tokens[file];
    int width = token_bytes(dl.file_version[file]);
    dl.loaded_file = -1;  // dl.tokens is overwritten below, also when this fails
    std::vector<unsigned char> raw((size_t)(n * width));
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) return fail(err, path, "cannot open: %s", strerror(errno));
    bool ok = fseeko(f, HEADER_BYTES, SEEK_SET) == 0 && fread(raw.data(), width, (size_t)n, f) == (size_t)n;
    fclose(f);
    if (!ok) return fail(err, path, "cannot read its %lld tokens (file changed since open?)", (long long)n);

    dl.tokens.resize((size_t)n);
    for (int64_t i = 0; i < n; i++) {
        uint32_t token;
        if (width == 2) {
            uint16_t t16;
            memcpy(&t16, &raw[i * 2], 2);
            token = t16;
        } else {
            memcpy(&token, &raw[i * 4], 4);
        }
        if (token >= (uint32_t)dl.vocab)
            return fail(err, path, "token %u at index %lld is >= vocab %d", token, (long long)i, dl.vocab);
        dl.tokens[i] = (int32_t)token;
    }
    dl.loaded_file = file;
    return true;
}

// Moves the position past a shard whose windows are used up, starting the next epoch after the last
// shard. Ends because open made sure every shard holds a window.
static void settle(DataLoader& dl) {
    while (dl.window >= shard_windows(dl, dl.shard_order[dl.shard])) {
        dl.window = 0;
        if (++dl.shard == (int64_t)dl.files.size()) {
            dl.shard = 0;
            dl.epoch++;
            dl.shard_order = shard_order_of(dl, dl.epoch);
        }
    }
}

// Makes the shard at the position the one in memory, with its window order for this epoch.
static bool prepare_shard(DataLoader& dl, std::string& err) {
    int64_t file = dl.shard_order[dl.shard];
    if (dl.loaded_file != file && !load_shard(dl, file, err)) return false;
    if (dl.order_file != file || dl.order_epoch != dl.epoch) {
        dl.window_order = shuffled(shard_windows(dl, file), dl.seed, dl.epoch, 1 + (uint64_t)file);
        dl.order_file = file;
        dl.order_epoch = dl.epoch;
    }
    return true;
}

bool dataloader_open(DataLoader& dl, const char* pattern, int B, int T, int vocab, uint64_t seed, std::string& err) {
    dataloader_close(dl);
    if (B <= 0 || T <= 0 || vocab <= 0)
        return fail(err, pattern, "B, T and vocab must be positive (got B=%d T=%d vocab=%d)", B, T, vocab);

    // Filled in a local loader so that dl stays empty unless everything succeeds.
    DataLoader d;
    glob_t g{};
    int rc = glob(pattern, 0, nullptr, &g);  // glob sorts its matches by name
    if (rc == 0) d.files.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    globfree(&g);
    if (rc == GLOB_NOMATCH) {
        err = std::string("no file matches '") + pattern + "'";
        return false;
    }
    if (rc != 0) return fail(err, pattern, "glob failed (error %d)", rc);

    d.B = B; d.T = T; d.vocab = vocab; d.seed = seed;
    for (const std::string& path : d.files) {
        int version;
        int64_t ntok;
        if (!shard_read_header(path.c_str(), version, ntok, err)) return false;
        if (ntok < T + 1)
            return fail(err, path, "holds only %lld tokens, fewer than T+1 = %d for one window", (long long)ntok,
                        T + 1);
        d.file_version.push_back(version);
        d.file_tokens.push_back(ntok);
    }

    // every token of every shard against vocab now, so a bad one cannot stop a run midway (one read of the set;
    // a single shard is read below anyway)
    for (int64_t file = 0; d.files.size() > 1 && file < (int64_t)d.files.size(); file++)
        if (!load_shard(d, file, err)) return false;
    d.shard_order = shard_order_of(d, 0);
    settle(d);
    if (!prepare_shard(d, err)) return false;
    dl = std::move(d);
    return true;
}

bool dataloader_next(DataLoader& dl, int* tokens, std::string& err) {
    const int row = dl.T + 1;
    for (int b = 0; b < dl.B; b++) {
        if (!prepare_shard(dl, err)) return false;
        int64_t start = dl.window_order[dl.window] * dl.T;
        std::copy(dl.tokens.begin() + start, dl.tokens.begin() + start + row, tokens + (size_t)b * row);
        dl.window++;
        settle(dl);
    }
    return true;
}

DataLoaderState dataloader_state(const DataLoader& dl) { return {dl.epoch, dl.shard, dl.window}; }

bool dataloader_restore(DataLoader& dl, const DataLoaderState& s, std::string& err) {
    const char* what = "data loader state";
    if (s.epoch < 0 || s.shard < 0 || s.shard >= (int64_t)dl.files.size())
        return fail(err, what, "epoch %lld, shard %lld is outside %zu shards", (long long)s.epoch,
                    (long long)s.shard, dl.files.size());
    std::vector<int64_t> order = shard_order_of(dl, s.epoch);
    int64_t n = shard_windows(dl, order[s.shard]);
    if (s.window < 0 || s.window > n)
        return fail(err, what, "window %lld is outside the %lld windows of shard %lld here (saved with other data "
                    "or T?)", (long long)s.window, (long long)n, (long long)s.shard);
    dl.epoch = s.epoch;
    dl.shard_order = std::move(order);
    dl.shard = s.shard;
    dl.window = s.window;
    settle(dl);
    return prepare_shard(dl, err);
}

int64_t dataloader_num_tokens(const DataLoader& dl) {
    int64_t total = 0;
    for (int64_t n : dl.file_tokens) total += n;
    return total;
}

void dataloader_close(DataLoader& dl) { dl = DataLoader{}; }

bool shard_writer_open(ShardWriter& w, const std::string& path, bool u16, std::string& err) {
    w = ShardWriter();
    w.path = path;
    w.tmp = path + ".tmp";
    w.u16 = u16;
    w.f = fopen(w.tmp.c_str(), "wb");
    if (!w.f) { err = w.tmp + ": cannot create: " + strerror(errno); return false; }
    const int32_t header[SHARD_HEADER_INTS] = {0};
    if (fwrite(header, sizeof header, 1, w.f) != 1) { err = w.tmp + ": write error"; return false; }
    return true;
}

bool shard_writer_append(ShardWriter& w, const uint32_t* tokens, size_t n, std::string& err) {
    bool ok;
    if (w.u16) {
        const std::vector<uint16_t> narrow(tokens, tokens + n);
        ok = fwrite(narrow.data(), 2, n, w.f) == n;
    } else {
        ok = fwrite(tokens, 4, n, w.f) == n;
    }
    if (!ok) { err = w.tmp + ": write error"; return false; }
    w.count += n;
    return true;
}

bool shard_writer_close(ShardWriter& w, std::string& err) {
    const int32_t head[3] = {w.u16 ? SHARD_MAGIC_U16 : SHARD_MAGIC_U32, w.u16 ? SHARD_VERSION_U16 : SHARD_VERSION_U32,
                             (int32_t)w.count};
    bool ok = w.count <= INT32_MAX && fseek(w.f, 0, SEEK_SET) == 0 && fwrite(head, sizeof head, 1, w.f) == 1;
    ok = fclose(w.f) == 0 && ok;
    w.f = nullptr;
    if (!ok) {
        err = w.tmp + (w.count > INT32_MAX ? ": more than 2^31 - 1 tokens do not fit a shard header" : ": write error");
    } else if (rename(w.tmp.c_str(), w.path.c_str()) != 0) {
        err = w.path + ": cannot rename into place: " + strerror(errno);
        ok = false;
    }
    if (!ok) remove(w.tmp.c_str());
    return ok;
}

void shard_writer_discard(ShardWriter& w) {
    if (w.f) fclose(w.f), remove(w.tmp.c_str());
    w.f = nullptr;
}
