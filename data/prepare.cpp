#include "prepare.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "shards.h"
#include "utf8.h"

static const size_t READ_BYTES = 1 << 20;   // one fread
static const size_t CHUNK_BYTES = 1 << 20;  // the unit of parallel work

namespace {

// ---------------------------------------------------------------- chunks of documents

// Text [begin, stop) of a chunk is encoded as a text that ends at `end`: end == stop at a document's
// end, else end - stop is the code point after a safe split. `eot`: an <|endoftext|> goes first.
struct Segment {
    size_t begin, stop, end;
    bool eot;
};

struct Chunk {
    std::string text;
    std::vector<Segment> segments;
    std::vector<uint32_t> tokens;  // the result
};

void encode_chunk(const Tokenizer& tok, Chunk& c) {
    for (const Segment& s : c.segments) {
        if (s.eot) c.tokens.push_back(tok.eot);
        tokenizer_encode(tok, c.text.data() + s.begin, s.stop - s.begin, s.end - s.begin, c.tokens);
    }
}

// Cuts repaired text into chunks: at every document end, and inside a long document at safe splits.
// `pending[off, size)` is text not yet cut; no separator starts before `scan`, no safe split before `split_scan`.
struct Chunker {
    std::string separator;
    std::string pending;
    size_t off = 0, scan = 0, split_scan = 0;
    bool doc_start = true;   // the next segment begins a document
    Chunk current;
    std::vector<Chunk> ready;
    int64_t documents = 0;

    // Moves pending[off, stop) into the current chunk, with lookahead up to `end`.
    void cut(size_t stop, size_t end, bool doc_end) {
        size_t base = current.text.size();
        current.segments.push_back({base, base + (stop - off), base + (end - off), doc_start});
        current.text.append(pending, off, end - off);
        off = stop;
        doc_start = doc_end;
        if (doc_end) documents++;
        if (current.text.size() >= CHUNK_BYTES) {
            ready.push_back(std::move(current));
            current = Chunk();
        }
    }

    // Cuts what can be cut now; at the end of a file, the rest as the end of a document.
    void feed(bool file_end) {
        const size_t sep = separator.size();
        for (;;) {
            size_t n = pending.size();
            if (sep > 0) {
                size_t p = pending.find(separator, std::max(scan, off));
                if (p != std::string::npos) {
                    cut(p + sep, p + sep, true);
                    scan = off;
                    continue;
                }
                scan = std::max(off, n >= sep ? n - sep + 1 : 0);
            } else {
                scan = n;
            }
            if (n - off <= CHUNK_BYTES) break;
            // A long document: the first safe split past a chunk's length, before any separator could start.
            size_t i = std::max(split_scan, off + CHUNK_BYTES), limit = std::min(scan, n - 1);
            while (i < limit && !pretokenize_safe_split(pending.data(), i, n)) i++;
            split_scan = i;
            if (i >= limit) break;
            int len;
            utf8_decode((const unsigned char*)pending.data(), i, len);
            cut(i, i + len, false);
        }
        if (file_end) cut(pending.size(), pending.size(), true);
        if (off > 0 && off >= pending.size() / 2) {
            pending.erase(0, off);
            scan -= std::min(scan, off);
            split_scan -= std::min(split_scan, off);
            off = 0;
        }
    }

    void flush() {
        if (!current.segments.empty()) ready.push_back(std::move(current));
        current = Chunk();
    }
};

// ---------------------------------------------------------------- shards

// Routes tokens in order: the first val_tokens to <prefix>_val.bin, the rest to training shards.
struct Outputs {
    const PrepareOptions* opt = nullptr;
    bool u16 = true;
    ShardWriter file;
    bool val_done = false;
    int train_shards = 0;
    std::vector<std::string> written;

    bool open(std::string& err) {
        bool val = opt->val_tokens > 0 && !val_done;
        char suffix[32];
        if (val) snprintf(suffix, sizeof suffix, "_val.bin");
        else if (opt->shard_tokens > 0) snprintf(suffix, sizeof suffix, "_train_%06d.bin", train_shards);
        else snprintf(suffix, sizeof suffix, "_train.bin");
        if (!val && opt->shard_tokens == 0 && train_shards > 0) {
            err = "more than 2^31 - 1 training tokens do not fit one shard's header: use --shard-tokens";
            return false;
        }
        if (!val) train_shards++;
        return shard_writer_open(file, opt->out_prefix + suffix, u16, err);
    }

    // The header now that the count is known, then the final name.
    bool close(std::string& err) {
        if (!shard_writer_close(file, err)) return false;
        if (opt->val_tokens > 0 && !val_done) val_done = true;
        written.push_back(file.path);
        return true;
    }

    int64_t capacity() const {
        if (opt->val_tokens > 0 && !val_done) return opt->val_tokens;
        if (opt->shard_tokens > 0) return opt->shard_tokens;
        return INT32_MAX;  // the header's count is an int32
    }

    bool write(const uint32_t* t, size_t n, std::string& err) {
        while (n > 0) {
            if (!file.f && !open(err)) return false;
            size_t take = (size_t)std::min<int64_t>((int64_t)n, capacity() - file.count);
            if (!shard_writer_append(file, t, take, err)) return false;
            t += take, n -= take;
            if (file.count == capacity() && !close(err)) return false;
        }
        return true;
    }

    // Closes the open shard; a validation split or a training shard that got no tokens is still written.
    bool finish(std::string& err) {
        if (file.f && !close(err)) return false;
        while ((opt->val_tokens > 0 && !val_done) || train_shards == 0)
            if (!open(err) || !close(err)) return false;
        return true;
    }

    void discard() { shard_writer_discard(file); }  // on failure: the temporary file goes, finished shards stay
};

void encode_all(const Tokenizer& tok, std::vector<Chunk>& chunks, int threads) {
    std::atomic<size_t> next{0};
    auto work = [&]() {
        for (size_t k; (k = next++) < chunks.size();) encode_chunk(tok, chunks[k]);
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads && (size_t)t < chunks.size(); t++) pool.emplace_back(work);
    work();
    for (std::thread& th : pool) th.join();
}

}  // namespace

bool prepare_shards(const Tokenizer& tok, const PrepareOptions& opt, PrepareStats& stats, std::string& err) {
    typedef std::chrono::steady_clock Clock;
    const Clock::time_point start = Clock::now();
    Clock::time_point shown = start;
    bool progress_shown = false;
    auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };

    stats = PrepareStats();
    Chunker chunker;
    chunker.separator = opt.separator;
    Outputs out;
    out.opt = &opt;
    out.u16 = tok.vocab_size <= 65536;
    const size_t batch = 2 * (size_t)std::max(1, opt.threads);

    // Encodes the chunks ready (all of them when `all`) and writes their tokens in order.
    auto drain = [&](bool all) -> bool {
        if (all) chunker.flush();
        if (chunker.ready.empty() || (!all && chunker.ready.size() < batch)) return true;
        encode_all(tok, chunker.ready, opt.threads);
        for (Chunk& c : chunker.ready) {
            if (!out.write(c.tokens.data(), c.tokens.size(), err)) return false;
            stats.tokens += c.tokens.size();
        }
        chunker.ready.clear();
        Clock::time_point now = Clock::now();
        if (opt.progress && seconds(now - shown) >= 1.0) {
            fprintf(stderr, "\rtokenize: %.1f MB read, %.2fM tokens, %.1f MB/s   ", stats.bytes / 1e6,
                    stats.tokens / 1e6, stats.bytes / 1e6 / seconds(now - start));
            shown = now, progress_shown = true;
        }
        return true;
    };

    std::vector<char> buf(READ_BYTES);
    std::string raw;
    bool ok = true;
    for (size_t k = 0; ok && k < opt.inputs.size(); k++) {
        const std::string& path = opt.inputs[k];
        bool is_stdin = path == "-";
        FILE* f = is_stdin ? stdin : fopen(path.c_str(), "rb");
        if (!f) { err = path + ": cannot open: " + strerror(errno); ok = false; break; }
        raw.clear();
        for (bool first = true;; first = false) {
            size_t got = fread(buf.data(), 1, buf.size(), f);
            if (ferror(f)) { err = path + ": read error: " + strerror(errno); ok = false; break; }
            bool eof = got < buf.size() && feof(f);
            stats.bytes += got;
            raw.append(buf.data(), got);
            size_t invalid = 0;
            size_t held = utf8_repair(raw.data(), raw.size(), eof, chunker.pending, &invalid);
            if (first && !opt.binary) {
                const size_t bad = invalid + std::count(buf.data(), buf.data() + got, '\0');
                if (bad > BINARY_FRACTION * got) {
                    char what[160];
                    snprintf(what, sizeof what, "looks binary, not text: %zu of its first %zu bytes are NUL or "
                             "invalid UTF-8; pass --binary to encode it anyway", bad, got);
                    err = path + ": " + what;
                    ok = false;
                    break;
                }
            }
            raw.erase(0, raw.size() - held);
            chunker.feed(eof);
            if (!drain(false)) { ok = false; break; }
            if (eof) break;
        }
        if (!is_stdin) fclose(f);
    }
    ok = ok && drain(true);
    if (ok && opt.val_tokens > 0 && stats.tokens <= opt.val_tokens) {
        err = "--val-tokens " + std::to_string(opt.val_tokens) + " takes all " + std::to_string(stats.tokens) +
              " tokens of the input, leaving none to train on; give fewer than " + std::to_string(stats.tokens);
        ok = false;
        for (const std::string& o : out.written) remove(o.c_str());  // a full validation shard: write nothing
        out.written.clear();
    }
    ok = ok && out.finish(err);
    if (progress_shown) {
        double s = seconds(Clock::now() - start);
        fprintf(stderr, "\rtokenize: %.1f MB read, %.2fM tokens, %.1f MB/s, %.1f s\n", stats.bytes / 1e6,
                stats.tokens / 1e6, stats.bytes / 1e6 / s, s);
    }
    if (!ok) out.discard();
    stats.documents = chunker.documents;
    stats.outputs = out.written;
    return ok;
}
