// Text files to llm.c token shards, the work of the `tokenize` tool: documents, each preceded by
// <|endoftext|> as llm.c's data scripts do, encoded with tiktoken's rules (tokenizer.h), the first
// `val_tokens` tokens to a validation shard and the rest to training shards.
//
// Documents: an <|endoftext|> starts every input file and follows every occurrence of `separator`
// (non-overlapping, left to right); the separator stays with the text before it. So one file with
// separator "\n\n" gives llm.c's tinyshakespeare ("<|endoftext|>" + text with every "\n\n" replaced by
// "\n\n<|endoftext|>"), and no separator gives one document per file. Each document is encoded on its
// own, as tiktoken encodes the text between special tokens; "<|endoftext|>" written in the text is
// ordinary text. Input bytes that are not valid UTF-8 become U+FFFD first (utf8.h).
//
// Streaming: input is read in blocks, repaired, cut into chunks of about 1 MB at document ends or
// at piece boundaries that cannot depend on later text (pretokenize_safe_split), and the chunks of a
// batch are encoded by all threads at once, then written in order. Memory stays a few chunks per
// thread, except inside a document of more than a chunk with no such boundary (no "\n" before a
// letter and no "a b"), which is held whole.
//
// Outputs, each written to `<name>.tmp` and renamed when complete: `<prefix>_val.bin` (when
// val_tokens > 0) and `<prefix>_train.bin`, or with shard_tokens > 0 training shards of at most that
// many tokens, `<prefix>_train_000000.bin`, `_000001`, ... Shards hold uint16 tokens (magic 20240520,
// version 1) when the vocabulary fits, else uint32 (magic 20240801, version 7): gpt2 and cl100k_base.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer.h"

struct PrepareOptions {
    std::vector<std::string> inputs;  // text files, in order; "-" is standard input
    std::string out_prefix;
    std::string separator;            // empty: one document per file
    int64_t val_tokens = 0;
    int64_t shard_tokens = 0;         // 0: a single training shard
    int threads = 1;
    bool progress = false;            // a progress line on stderr for inputs that take over a second
    bool binary = false;              // encode input that looks binary (below) instead of refusing it
};

// An input looks binary when over BINARY_FRACTION of its first block (1 MB) are NUL bytes or bytes of
// invalid UTF-8: an executable or a shard, not text (a text with a few bad bytes stays far below it).
const double BINARY_FRACTION = 0.1;

struct PrepareStats {
    int64_t bytes = 0, tokens = 0, documents = 0;
    std::vector<std::string> outputs;  // the files written
};

bool prepare_shards(const Tokenizer& tok, const PrepareOptions& opt, PrepareStats& stats, std::string& err);
