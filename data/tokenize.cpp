// tokenize: text to llm.c token shards with tiktoken's gpt2 or cl100k_base encoding, and back.
// The work is in prepare.h (documents, streaming, shards) and tokenizer.h (the encoding); this file
// reads the flags. E.g. llm.c's tinyshakespeare shards:
//
//   ./tokenize -o data/tinyshakespeare/tiny_shakespeare --sep '\n\n' --val-tokens 32768 input.txt
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <algorithm>
#include <thread>
#include <vector>

#include "prepare.h"
#include "shards.h"
#include "tokenizer.h"

static void usage(FILE* out) {
    fprintf(out,
            "usage: tokenize [options] [file ...]   text files (none, or -, for standard input) to llm.c shards\n"
            "       tokenize --decode [options] shard ...   the text of token shards\n"
            "  -e, --encoding NAME  gpt2 (default; uint16 shards) or cl100k_base (uint32 shards); --decode\n"
            "                       defaults to the one of the first shard's token width\n"
            "  -r, --ranks PATH     rank file (default data/tokenizers/NAME.tiktoken)\n"
            "  -o, --out PREFIX     writes PREFIX_val.bin and PREFIX_train.bin (required; not a directory:\n"
            "                       DIR/name writes DIR/name_train.bin); with --decode, the text goes to the\n"
            "                       file PREFIX instead of standard output\n"
            "  -s, --sep STR        documents end after each STR (escapes \\n \\r \\t \\\\); default: one per file.\n"
            "                       An <|endoftext|> starts every file and follows every STR\n"
            "  --val-tokens N       the first N tokens go to PREFIX_val.bin (default 0: no validation shard);\n"
            "                       fewer than the input's tokens\n"
            "  --shard-tokens N     training shards of at most N tokens, PREFIX_train_000000.bin, ... (default: one)\n"
            "  -t, --threads N      encoding threads (default: every core)\n"
            "  -q, --quiet          nothing on standard output or progress lines: errors only\n"
            "  --binary             encode input that looks binary (over %.0f%% of its first MB NUL bytes or\n"
            "                       invalid UTF-8) instead of refusing it\n"
            "  -h, --help\n"
            "Text that is not valid UTF-8 is read as tiktoken's callers decode it: each bad sequence is U+FFFD.\n",
            100 * BINARY_FRACTION);
}

static int fail(const std::string& msg) {
    fprintf(stderr, "tokenize: %s\n", msg.c_str());
    return 1;
}

// A count > 0 (or >= 0 with allow_zero); false for anything else.
static bool parse_count(const char* s, bool allow_zero, int64_t& v) {
    char* end = nullptr;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end || x < (allow_zero ? 0 : 1)) return false;
    v = x;
    return true;
}

// \n \r \t \\ in a separator given on the command line; false for any other escape.
static bool unescape(const char* s, std::string& out) {
    for (; *s; s++) {
        if (*s != '\\') { out += *s; continue; }
        switch (*++s) {
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case '\\': out += '\\'; break;
            default: return false;
        }
    }
    return true;
}

// Writes the text of each shard in turn, to `out_path` (under a temporary name, renamed at the end) or stdout.
static int decode_shards(const Tokenizer& tok, const std::vector<std::string>& shards, const std::string& out_path) {
    std::string tmp = out_path.empty() ? "" : out_path + ".tmp";
    FILE* out = out_path.empty() ? stdout : fopen(tmp.c_str(), "wb");
    if (!out) return fail(tmp + ": cannot create: " + strerror(errno));
    std::string err, text;
    bool ok = true;
    for (const std::string& path : shards) {
        int version;
        int64_t ntok;
        if (!(ok = shard_read_header(path.c_str(), version, ntok, err))) break;
        size_t width = version == SHARD_VERSION_U16 ? 2 : 4;
        if (width == 2 && tok.vocab_size > 65536) {  // a uint16 shard cannot hold this encoding's ids
            err = path + ": uint16 tokens (gpt2's shards), not " + tok.encoding + "'s; pass -e gpt2";
            ok = false;
            break;
        }
        std::vector<unsigned char> raw(ntok * width);
        FILE* f = fopen(path.c_str(), "rb");
        ok = f && fseek(f, SHARD_HEADER_INTS * 4, SEEK_SET) == 0 && fread(raw.data(), 1, raw.size(), f) == raw.size();
        if (f) fclose(f);
        if (!ok) { err = path + ": read error"; break; }
        std::vector<uint32_t> ids(ntok);
        for (int64_t i = 0; i < ntok; i++) {
            const unsigned char* p = raw.data() + i * width;
            ids[i] = width == 2 ? p[0] | p[1] << 8 : p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
        }
        text.clear();
        if (!(ok = tokenizer_decode(tok, ids.data(), ids.size(), text, err))) {
            err = path + ": " + err + (width == 4 && tok.vocab_size <= 65536 ? " (uint32 tokens: pass -e cl100k_base?)" : "");
            break;
        }
        if (!(ok = fwrite(text.data(), 1, text.size(), out) == text.size())) { err = "write error"; break; }
    }
    if (out_path.empty()) {
        ok = fflush(stdout) == 0 && ok;
        return ok ? 0 : fail(err.empty() ? "write error" : err);
    }
    ok = fclose(out) == 0 && ok;
    if (ok && rename(tmp.c_str(), out_path.c_str()) != 0) err = out_path + ": cannot rename into place", ok = false;
    if (!ok) remove(tmp.c_str());
    return ok ? 0 : fail(err.empty() ? tmp + ": write error" : err);
}

int main(int argc, char** argv) {
    std::string encoding = "gpt2", ranks;
    bool encoding_given = false;
    PrepareOptions opt;
    opt.threads = std::max(1u, std::thread::hardware_concurrency());
    opt.progress = true;
    bool decode = false, quiet = false;
    std::vector<std::string> files;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&](const char* what) -> const char* {
            if (i + 1 >= argc) {
                fprintf(stderr, "tokenize: %s needs %s\n", a.c_str(), what);
                exit(2);
            }
            return argv[++i];
        };
        auto bad = [&](const char* v) {
            fprintf(stderr, "tokenize: bad value '%s' for %s\n", v, a.c_str());
            exit(2);
        };
        int64_t n;
        if (a == "-h" || a == "--help") { usage(stdout); return 0; }
        else if (a == "-e" || a == "--encoding") encoding = value("a name"), encoding_given = true;
        else if (a == "-r" || a == "--ranks") ranks = value("a path");
        else if (a == "-o" || a == "--out") opt.out_prefix = value("a path");
        else if (a == "-s" || a == "--sep") {
            const char* v = value("a string");
            if (!unescape(v, opt.separator) || opt.separator.empty()) bad(v);
        } else if (a == "--val-tokens") {
            const char* v = value("a count");
            if (!parse_count(v, true, opt.val_tokens)) bad(v);
        } else if (a == "--shard-tokens") {
            const char* v = value("a count");
            if (!parse_count(v, false, opt.shard_tokens) || opt.shard_tokens > INT32_MAX) bad(v);
        } else if (a == "-t" || a == "--threads") {
            const char* v = value("a count");
            if (!parse_count(v, false, n) || n > 1024) bad(v);
            opt.threads = (int)n;
        } else if (a == "-q" || a == "--quiet") opt.progress = false, quiet = true;
        else if (a == "--binary") opt.binary = true;
        else if (a == "--decode") decode = true;
        else if (a.size() > 1 && a[0] == '-') {
            fprintf(stderr, "tokenize: unknown flag %s\n", a.c_str());
            usage(stderr);
            return 2;
        } else files.push_back(a);
    }
    struct stat st;
    if (!opt.out_prefix.empty() && stat(opt.out_prefix.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        return fail("-o " + opt.out_prefix + " is a directory; -o takes " +
                    (decode ? "the file to write" : "a prefix: -o " + opt.out_prefix + "/name writes " +
                     opt.out_prefix + "/name_train.bin"));
    int version;
    int64_t ntok;
    std::string err;
    if (decode && !encoding_given && !files.empty() && shard_read_header(files[0].c_str(), version, ntok, err) &&
        version == SHARD_VERSION_U32)
        encoding = "cl100k_base";  // uint32 tokens: the encoding whose ids need them
    if (ranks.empty()) ranks = "data/tokenizers/" + encoding + ".tiktoken";
    Tokenizer tok;
    if (!tokenizer_load(tok, encoding.c_str(), ranks.c_str(), err)) return fail(err);

    if (decode) {
        if (files.empty()) return fail("--decode needs shard files");
        return decode_shards(tok, files, opt.out_prefix);
    }
    if (opt.out_prefix.empty()) {
        fprintf(stderr, "tokenize: -o PREFIX is required\n");
        usage(stderr);
        return 2;
    }
    opt.inputs = files.empty() ? std::vector<std::string>{"-"} : files;
    PrepareStats stats;
    auto start = std::chrono::steady_clock::now();
    if (!prepare_shards(tok, opt, stats, err)) return fail(err);
    if (quiet) return 0;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    printf("%s: %lld bytes, %lld documents, %lld tokens in %.2f s (%.1f MB/s, %d threads) ->", encoding.c_str(),
           (long long)stats.bytes, (long long)stats.documents, (long long)stats.tokens, s, stats.bytes / 1e6 / s,
           opt.threads);
    for (const std::string& o : stats.outputs) printf(" %s", o.c_str());
    printf("\n");
    return 0;
}
