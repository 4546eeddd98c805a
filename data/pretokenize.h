// The pre-tokenizer: splits text into the pieces that byte-level BPE then encodes one at a time, as
// tiktoken's regex does. Hand-written, not a regex engine; each rule below is one alternative of the
// pattern, tried in order at the current position (the regex's leftmost-first alternation):
//
//   gpt2:         's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   cl100k_base:  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//                 ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// (the patterns of the npm tiktoken package 1.0.22; recent Python tiktoken releases use a possessive
// variant of cl100k_base's, with \s++$, that keeps a whitespace run ending the text in one piece).
// \p{L}, \p{N} and \s are Unicode's Letter, Number and White_Space, from data/unicode_tables.h.
// (?i:) matches case-insensitively by Unicode simple case folding, so 'S is a contraction in
// cl100k_base and so is 'ſ (U+017F LATIN SMALL LETTER LONG S, which folds to s; no cl100k_base
// token holds its bytes, so this cannot change ids, but it is what the pattern means).
//
// The text must be valid UTF-8 (see utf8.h). Pieces never depend on text before them, and on text
// after them only through a lookahead of one code point, so a caller may encode a long text in
// chunks that end at a piece boundary (pretokenize_safe_split).
#pragma once
#include <cstddef>

enum Pattern { PATTERN_GPT2, PATTERN_CL100K };

// The end of the piece that starts at text[i], 0 <= i < n; the text ends at n (the regex's end of text).
size_t pretokenize_next(Pattern p, const char* text, size_t i, size_t n);

// True when a piece boundary falls at text[i] whatever follows the code point at i, so the pieces of
// [0, i) are those of any text that holds [0, i) and that code point: either a letter right after
// "\n", or a space between two ASCII letters ("a b"). Needs 0 < i and i + 1 < n. Both patterns agree.
bool pretokenize_safe_split(const char* text, size_t i, size_t n);
