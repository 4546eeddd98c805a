// tests/tokenizer/fixtures.tsv comes from scripts/make_tokenizer_fixtures.mjs (the npm tiktoken
// package): per line, hex(input bytes), the gpt2 ids, the cl100k_base ids, and hex(the text tiktoken
// encoded, i.e. the input with ill-formed UTF-8 replaced by U+FFFD; "=" when that is the input).
#include "test_tokenizer.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "../data/prepare.h"
#include "../data/tokenizer.h"
#include "../data/utf8.h"
#include "read_file.h"

namespace {

struct Fixture {
    std::string input, text;
    std::vector<uint32_t> ids[2];  // gpt2, cl100k_base
};

std::string unhex(const std::string& h) {
    std::string out;
    for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back((char)strtol(h.substr(i, 2).c_str(), nullptr, 16));
    return out;
}

std::vector<uint32_t> parse_ids(const std::string& s) {
    std::vector<uint32_t> ids;
    const char* p = s.c_str();
    for (char* end; *p; p = end) {
        ids.push_back((uint32_t)strtoul(p, &end, 10));
        if (end == p) break;
    }
    return ids;
}

bool load_fixtures(std::vector<Fixture>& out) {
    std::string data;
    if (!read_file("tests/tokenizer/fixtures.tsv", data)) return false;
    size_t pos = 0;
    while (pos < data.size()) {
        size_t end = data.find('\n', pos);
        std::string line = data.substr(pos, end - pos), col[4];
        pos = end + 1;
        for (int c = 0, start = 0; c < 4; c++) {
            size_t tab = line.find('\t', start);
            col[c] = line.substr(start, tab == std::string::npos ? std::string::npos : tab - start);
            start = (int)tab + 1;
        }
        std::string input = unhex(col[0]);
        out.push_back({input, col[3] == "=" ? input : unhex(col[3]), {parse_ids(col[1]), parse_ids(col[2])}});
    }
    return !out.empty();
}

std::string shard_bytes(const std::string& path) {
    std::string data;
    read_file(path, data);
    return data;
}

// The llm.c header, then the tokens, as the writer makes them (uint16 for gpt2, uint32 otherwise).
std::vector<uint32_t> shard_tokens(const std::string& path, bool u16) {
    std::string d = shard_bytes(path);
    std::vector<uint32_t> t;
    const unsigned char* p = (const unsigned char*)d.data();
    for (size_t i = 1024; i + (u16 ? 2 : 4) <= d.size(); i += u16 ? 2 : 4)
        t.push_back(u16 ? p[i] | p[i + 1] << 8 : p[i] | p[i + 1] << 8 | p[i + 2] << 16 | (uint32_t)p[i + 3] << 24);
    return t;
}

}  // namespace

void test_tokenizer(TestReport& r) {
    const char* names[2] = {"gpt2", "cl100k_base"};
    Tokenizer toks[2];
    for (int e = 0; e < 2; e++) {
        std::string err, path = std::string("data/tokenizers/") + names[e] + ".tiktoken";
        bool ok = tokenizer_load(toks[e], names[e], path.c_str(), err);
        r.check(ok, "%s: rank file loads: %u ids, <|endoftext|> = %u%s", names[e], toks[e].vocab_size, toks[e].eot,
                ok ? "" : (" " + err).c_str());
        if (!ok) return;
    }
    std::string err;
    Tokenizer bad;
    bool refused = !tokenizer_load(bad, "cl100k_base", "data/tokenizers/gpt2.tiktoken", err);
    r.check(refused, "the wrong rank file is refused: %s", err.c_str());
    refused = !tokenizer_load(bad, "gpt2", "no/such.tiktoken", err);
    r.check(refused, "a missing rank file is refused: %s", err.c_str());

    std::vector<Fixture> fixtures;
    bool loaded = load_fixtures(fixtures);
    if (!r.check(loaded, "tests/tokenizer/fixtures.tsv: %zu texts", fixtures.size())) return;
    size_t repaired = 0;
    for (const Fixture& f : fixtures) {
        std::string text;
        utf8_repair(f.input.data(), f.input.size(), true, text);
        repaired += text == f.text;
    }
    r.check(repaired == fixtures.size(), "invalid UTF-8 replaced as TextDecoder does: %zu of %zu texts", repaired,
            fixtures.size());
    for (int e = 0; e < 2; e++) {
        size_t same = 0, round_trips = 0, tokens = 0;
        int first_bad = -1;
        for (size_t k = 0; k < fixtures.size(); k++) {
            const Fixture& f = fixtures[k];
            std::vector<uint32_t> ids;
            tokenizer_encode(toks[e], f.text.data(), f.text.size(), f.text.size(), ids);
            tokens += ids.size();
            if (ids == f.ids[e]) same++;
            else if (first_bad < 0) first_bad = (int)k;
            std::string back;
            round_trips += tokenizer_decode(toks[e], ids.data(), ids.size(), back, err) && back == f.text;
        }
        std::string where = first_bad < 0 ? "" : "; first mismatch on line " + std::to_string(first_bad + 1);
        r.check(same == fixtures.size(), "%s: %zu of %zu texts give tiktoken's ids (%zu tokens)%s", names[e], same,
                fixtures.size(), tokens, where.c_str());
        r.check(round_trips == fixtures.size(), "%s: decode(encode(text)) == text for %zu of %zu texts", names[e],
                round_trips, fixtures.size());
    }
    std::vector<uint32_t> unknown = {100256};
    std::string back;
    refused = !tokenizer_decode(toks[1], unknown.data(), 1, back, err);
    r.check(refused, "decoding an id with no bytes fails: %s", err.c_str());

    // The streaming path against encoding at once: Shakespeare and every fixture (invalid UTF-8
    // included) as one document of 2.5 MB, laid out so that the fixtures straddle the 1 MB marks where
    // reads end and chunks are cut.
    std::string shakespeare, stream, all_fixtures;
    bool have_input = read_file("data/tinyshakespeare/input.txt", shakespeare);
    if (!r.check(have_input, "data/tinyshakespeare/input.txt: %zu bytes", shakespeare.size())) return;
    for (const Fixture& f : fixtures) all_fixtures += f.input;
    stream = shakespeare.substr(0, 1000000 - all_fixtures.size() / 2) + all_fixtures + shakespeare + all_fixtures;
    char dir[] = "/tmp/test_tokenizer_XXXXXX";
    if (!r.check(mkdtemp(dir) != nullptr, "temporary directory %s", dir)) return;
    const std::string in = std::string(dir) + "/stream.txt";
    FILE* f = fopen(in.c_str(), "wb");
    fwrite(stream.data(), 1, stream.size(), f);
    fclose(f);
    std::string text;
    utf8_repair(stream.data(), stream.size(), true, text);
    for (int e = 0; e < 2; e++) {
        PrepareOptions opt;
        opt.inputs = {in};
        opt.out_prefix = std::string(dir) + "/" + names[e];
        opt.threads = 2;
        PrepareStats stats;
        bool ok = prepare_shards(toks[e], opt, stats, err);
        std::vector<uint32_t> want = {toks[e].eot};
        tokenizer_encode(toks[e], text.data(), text.size(), text.size(), want);
        std::vector<uint32_t> got = shard_tokens(opt.out_prefix + "_train.bin", e == 0);
        r.check(ok && got == want, "%s: a %zu-byte document streamed in chunks = encoded at once (%zu tokens)%s",
                names[e], stream.size(), want.size(), ok ? "" : (" " + err).c_str());
        for (const std::string& o : stats.outputs) remove(o.c_str());
    }

    // llm.c's tinyshakespeare: an <|endoftext|> before the text and after every "\n\n", gpt2, the
    // first 32768 tokens to val.
    PrepareOptions opt;
    opt.inputs = {"data/tinyshakespeare/input.txt"};
    opt.out_prefix = std::string(dir) + "/tiny_shakespeare";
    opt.separator = "\n\n";
    opt.val_tokens = 32768;
    opt.threads = 2;
    PrepareStats stats;
    bool ok = prepare_shards(toks[0], opt, stats, err);
    r.check(ok, "tinyshakespeare: %lld documents, %lld tokens%s", (long long)stats.documents, (long long)stats.tokens,
            ok ? "" : (" " + err).c_str());
    for (const char* split : {"val", "train"}) {
        std::string mine = shard_bytes(opt.out_prefix + "_" + split + ".bin");
        std::string theirs = shard_bytes(std::string("data/tinyshakespeare/tiny_shakespeare_") + split + ".bin");
        r.check(!theirs.empty() && mine == theirs, "tinyshakespeare %s shard byte for byte as llm.c's (%zu bytes)",
                split, theirs.size());
    }
    for (const std::string& o : stats.outputs) remove(o.c_str());
    remove(in.c_str());
    rmdir(dir);
}
