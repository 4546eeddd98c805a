// UTF-8 as tiktoken receives it. tiktoken encodes strings, never raw bytes: its JS package passes a
// JS string to WebAssembly (wasm-bindgen's TextEncoder), and Python passes a str. Bytes that are not
// valid UTF-8 therefore reach it only after decoding to text, which replaces them with U+FFFD.
// We reproduce the WHATWG Encoding Standard's decoder (TextDecoder, Node's Buffer.toString, and
// Python's bytes.decode(errors="replace") agree on it): each maximal subpart of an ill-formed
// sequence becomes one U+FFFD (bytes EF BF BD), e.g. C0 80 -> two, E2 82 (cut short) -> one,
// ED A0 80 (a UTF-16 surrogate) -> three, F4 90 80 80 (above U+10FFFF) -> four.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

// Appends `n` bytes to `out` with every ill-formed subpart replaced by EF BF BD, as above. When
// `final` is false, a well-formed but incomplete sequence at the very end is left out and its
// length returned, so a stream can be repaired block by block (the caller passes those bytes again
// in front of the next block); when `final` is true it becomes U+FFFD and 0 is returned. `invalid`, when
// given, is increased by the number of bytes replaced.
size_t utf8_repair(const char* s, size_t n, bool final, std::string& out, size_t* invalid = nullptr);

// Decodes the code point starting at s[i] of valid UTF-8 (as utf8_repair leaves it); sets its length.
static inline uint32_t utf8_decode(const unsigned char* s, size_t i, int& len) {
    unsigned c = s[i];
    if (c < 0x80) { len = 1; return c; }
    if (c < 0xE0) { len = 2; return ((c & 0x1F) << 6) | (s[i + 1] & 0x3F); }
    if (c < 0xF0) { len = 3; return ((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F); }
    len = 4;
    return ((c & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
}
