// tiktoken's byte-level BPE, exactly: the one rank-file loader, encoder and decoder, shared by the
// `tokenize` tool and the trainer's sampler.
//
// A rank file (data/tokenizers/*.tiktoken) lists every mergeable token as `base64(bytes) rank`, one
// per line; a token's id is its rank. Encoding text: the pre-tokenizer (pretokenize.h) splits it
// into pieces; a piece that is itself a token is that token; any other piece starts as one token per
// byte and repeatedly merges the adjacent pair whose concatenation has the lowest rank (the leftmost
// of equal ones) until no adjacent pair is a token. The special token <|endoftext|> (50256 in gpt2,
// 100257 in cl100k_base) is never produced by encoding: text is encoded as ordinary text (tiktoken's
// encode_ordinary), so callers insert it between documents themselves.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pretokenize.h"

struct Tokenizer {
    std::string encoding;              // "gpt2" or "cl100k_base"
    Pattern pattern = PATTERN_GPT2;
    uint32_t eot = 0;                  // <|endoftext|>
    uint32_t vocab_size = 0;           // ids are < vocab_size: 50257 for gpt2, 100277 for cl100k_base
    std::vector<std::string> bytes;    // token id -> its bytes; empty for ids that are not mergeable tokens
    std::vector<uint32_t> slots;       // hash table bytes -> id: id + 1 per slot, 0 = empty; size a power of 2
};

// Reads `rank_file` as the rank file of `encoding` ("gpt2" or "cl100k_base", which chooses the
// pre-tokenizer and the special token) and checks it: well-formed lines, ranks 0..N-1 each once with
// N = 50256 or 100256. False with a message naming the file (and line) otherwise.
bool tokenizer_load(Tokenizer& tok, const char* encoding, const char* rank_file, std::string& err);

// Appends the ids of text[0, stop) to `out`, where `text` holds n >= stop bytes of valid UTF-8 (see
// utf8.h) and the text is taken to end at n: stop == n for a whole text, or stop < n at a boundary
// from pretokenize_safe_split, whose code point must lie inside [stop, n).
void tokenizer_encode(const Tokenizer& tok, const char* text, size_t stop, size_t n, std::vector<uint32_t>& out);

// Appends the bytes of the tokens `ids` to `out` (<|endoftext|> as its name). False with a message
// for an id that has no bytes. The bytes of a prefix of the ids need not be complete UTF-8.
bool tokenizer_decode(const Tokenizer& tok, const uint32_t* ids, size_t n, std::string& out, std::string& err);
