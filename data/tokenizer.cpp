#include "tokenizer.h"

#include <cstdio>
#include <cstring>
#include <algorithm>
#include <cerrno>
#include <functional>

static const char EOT_NAME[] = "<|endoftext|>";
static const uint32_t NO_TOKEN = UINT32_MAX;

// FNV-1a: short keys, good spread, no dependencies.
static uint64_t hash_bytes(const unsigned char* s, size_t n) {
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

// The id of the token whose bytes are s[0, n), or NO_TOKEN.
static uint32_t token_id(const Tokenizer& tok, const unsigned char* s, size_t n) {
    size_t mask = tok.slots.size() - 1;
    for (size_t slot = hash_bytes(s, n) & mask;; slot = (slot + 1) & mask) {
        uint32_t v = tok.slots[slot];
        if (v == 0) return NO_TOKEN;
        const std::string& b = tok.bytes[v - 1];
        if (b.size() == n && memcmp(b.data(), s, n) == 0) return v - 1;
    }
}

static int base64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

// Decodes standard padded base64; false on anything else.
static bool base64_decode(const char* s, size_t n, std::string& out) {
    out.clear();
    if (n == 0 || n % 4 != 0) return false;
    for (size_t i = 0; i < n; i += 4) {
        int pad = (s[i + 3] == '=') + (s[i + 2] == '=' && s[i + 3] == '=');
        if (pad && i + 4 != n) return false;
        uint32_t v = 0;
        for (int k = 0; k < 4 - pad; k++) {
            int d = base64_value((unsigned char)s[i + k]);
            if (d < 0) return false;
            v |= (uint32_t)d << (18 - 6 * k);
        }
        out.push_back((char)(v >> 16));
        if (pad < 2) out.push_back((char)(v >> 8));
        if (pad < 1) out.push_back((char)v);
    }
    return true;
}

static bool read_file(const char* path, std::string& data, std::string& err) {
    FILE* f = fopen(path, "rb");
    if (!f) { err = std::string(path) + ": cannot open: " + strerror(errno); return false; }
    char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, got);
    bool ok = !ferror(f);
    fclose(f);
    if (!ok) err = std::string(path) + ": read error";
    return ok;
}

bool tokenizer_load(Tokenizer& tok, const char* encoding, const char* rank_file, std::string& err) {
    tok = Tokenizer();
    uint32_t ranks;
    if (strcmp(encoding, "gpt2") == 0) {
        tok.pattern = PATTERN_GPT2, ranks = 50256, tok.eot = 50256, tok.vocab_size = 50257;
    } else if (strcmp(encoding, "cl100k_base") == 0) {
        tok.pattern = PATTERN_CL100K, ranks = 100256, tok.eot = 100257, tok.vocab_size = 100277;
    } else {
        err = std::string("unknown encoding '") + encoding + "' (gpt2 or cl100k_base)";
        return false;
    }
    tok.encoding = encoding;
    std::string data;
    if (!read_file(rank_file, data, err)) return false;

    tok.bytes.assign(tok.vocab_size, std::string());
    std::vector<bool> seen(ranks, false);
    std::string token;
    size_t line = 0, count = 0;
    for (size_t pos = 0; pos < data.size(); line++) {
        size_t end = data.find('\n', pos);
        if (end == std::string::npos) end = data.size();
        const char* s = data.data() + pos;
        size_t len = end - pos, space = data.find(' ', pos) - pos;
        pos = end + 1;
        char* rank_end = nullptr;
        unsigned long rank = space < len ? strtoul(s + space + 1, &rank_end, 10) : 0;
        if (space >= len || rank_end != s + len || space + 1 == len || !base64_decode(s, space, token)) {
            err = std::string(rank_file) + ":" + std::to_string(line + 1) + ": not a `base64 rank` line";
            return false;
        }
        if (rank >= ranks || seen[rank]) {
            err = std::string(rank_file) + ":" + std::to_string(line + 1) + ": rank " + std::to_string(rank) +
                  (rank >= ranks ? " out of range for " + tok.encoding : " listed twice");
            return false;
        }
        seen[rank] = true;
        tok.bytes[rank] = token;
        count++;
    }
    if (count != ranks) {
        err = std::string(rank_file) + ": " + std::to_string(count) + " ranks, " + tok.encoding + " has " +
              std::to_string(ranks) + " (is it the right encoding?)";
        return false;
    }
    size_t size = 1;
    while (size < 2 * (size_t)ranks) size *= 2;
    tok.slots.assign(size, 0);
    for (uint32_t id = 0; id < ranks; id++) {
        const std::string& b = tok.bytes[id];
        size_t slot = hash_bytes((const unsigned char*)b.data(), b.size()) & (size - 1);
        while (tok.slots[slot] != 0) slot = (slot + 1) & (size - 1);
        tok.slots[slot] = id + 1;
    }
    tok.bytes[tok.eot] = EOT_NAME;  // for decoding only: the table above never finds it
    return true;
}

namespace {
// A pair of adjacent parts that is a token: parts `left` and the one after it span [left, end).
struct Merge {
    uint32_t rank, left, end;
    bool operator>(const Merge& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
};
}  // namespace

// Byte-level BPE of one piece s[0, n) that is not itself a token. Parts are named by their first
// byte; next[i] is the start of the part after part i (n for the last), and a part that merged into
// its left neighbour is marked dead in prev. A min-heap of (rank, left) gives the lowest-ranked pair,
// leftmost among equals, as tiktoken's linear scan does; entries made stale by a merge are recognised
// by their end and skipped. O(n log n), so long pieces (whitespace runs) stay cheap.
static void bpe_merge(const Tokenizer& tok, const unsigned char* s, uint32_t n, std::vector<uint32_t>& out) {
    const uint32_t DEAD = UINT32_MAX;
    thread_local std::vector<uint32_t> next, prev;
    thread_local std::vector<Merge> heap;
    next.resize(n);
    prev.resize(n);
    heap.clear();
    auto push_pair = [&](uint32_t left) {  // the pair of part `left` and its successor, if it is a token
        uint32_t mid = next[left];
        if (mid >= n) return;
        uint32_t rank = token_id(tok, s + left, next[mid] - left);
        if (rank == NO_TOKEN) return;
        heap.push_back({rank, left, next[mid]});
        std::push_heap(heap.begin(), heap.end(), std::greater<Merge>());
    };
    for (uint32_t i = 0; i < n; i++) next[i] = i + 1, prev[i] = i > 0 ? i - 1 : 0;  // prev[0] is never followed
    for (uint32_t i = 0; i + 1 < n; i++) push_pair(i);
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), std::greater<Merge>());
        Merge m = heap.back();
        heap.pop_back();
        uint32_t mid = next[m.left];
        if (prev[m.left] == DEAD || mid >= n || next[mid] != m.end) continue;  // stale
        next[m.left] = m.end;  // part `mid` joins part `left`
        if (m.end < n) prev[m.end] = m.left;
        prev[mid] = DEAD;
        if (m.left > 0) push_pair(prev[m.left]);
        push_pair(m.left);
    }
    for (uint32_t i = 0; i < n; i = next[i]) out.push_back(token_id(tok, s + i, next[i] - i));
}

void tokenizer_encode(const Tokenizer& tok, const char* text, size_t stop, size_t n, std::vector<uint32_t>& out) {
    for (size_t i = 0, end; i < stop; i = end) {
        end = pretokenize_next(tok.pattern, text, i, n);
        const unsigned char* piece = (const unsigned char*)text + i;
        uint32_t id = token_id(tok, piece, end - i);
        if (id != NO_TOKEN) out.push_back(id);
        else bpe_merge(tok, piece, (uint32_t)(end - i), out);
    }
}

bool tokenizer_decode(const Tokenizer& tok, const uint32_t* ids, size_t n, std::string& out, std::string& err) {
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= tok.vocab_size || tok.bytes[ids[i]].empty()) {
            err = "token " + std::to_string(ids[i]) + " is not a token of " + tok.encoding;
            return false;
        }
        out += tok.bytes[ids[i]];
    }
    return true;
}
