#include "pretokenize.h"

#include <cstdint>

#include "unicode_tables.h"
#include "utf8.h"

static CodepointClass ascii_class(unsigned c) {
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return CP_LETTER;
    if (c >= '0' && c <= '9') return CP_NUMBER;
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return CP_SPACE;
    return CP_OTHER;
}

static CodepointClass codepoint_class(uint32_t cp) {
    size_t lo = 0, hi = sizeof CODEPOINT_RANGES / sizeof CODEPOINT_RANGES[0];
    while (lo < hi) {  // the first range whose last >= cp
        size_t mid = (lo + hi) / 2;
        if (CODEPOINT_RANGES[mid].last < cp) lo = mid + 1;
        else hi = mid;
    }
    bool inside = lo < sizeof CODEPOINT_RANGES / sizeof CODEPOINT_RANGES[0] && CODEPOINT_RANGES[lo].first <= cp;
    return inside ? CODEPOINT_RANGES[lo].cls : CP_OTHER;
}

namespace {

// A cursor over valid UTF-8 that classifies the code point under it.
struct Text {
    const unsigned char* s;
    size_t n;

    // Class and length of the code point at i; i must be < n.
    CodepointClass at(size_t i, int& len) const {
        if (s[i] < 0x80) { len = 1; return ascii_class(s[i]); }
        return codepoint_class(utf8_decode(s, i, len));
    }
    bool is(size_t i, CodepointClass c) const {
        int len;
        return i < n && at(i, len) == c;
    }
    // The end of the run of code points of class c starting at i (i itself when there is none).
    size_t run(size_t i, CodepointClass c) const {
        int len;
        while (i < n && at(i, len) == c) i += len;
        return i;
    }
    bool newline(size_t i) const { return i < n && (s[i] == '\r' || s[i] == '\n'); }
};

}  // namespace

// 's 't 're 've 'm 'll 'd at i (text[i] == '\''): the contraction's length, or 0. In cl100k_base they
// match case-insensitively: S/s/ſ (U+017F, UTF-8 C5 BF), T/t, and each letter of re/ve/m/ll/d in either case.
static size_t contraction(Pattern p, const Text& t, size_t i) {
    const bool fold = p == PATTERN_CL100K;
    auto letter = [&](size_t j, char lower) -> size_t {  // bytes of `lower` at j, or 0
        if (j >= t.n) return 0;
        if (t.s[j] == (unsigned char)lower || (fold && t.s[j] == (unsigned char)(lower - 32))) return 1;
        if (fold && lower == 's' && j + 1 < t.n && t.s[j] == 0xC5 && t.s[j + 1] == 0xBF) return 2;
        return 0;
    };
    size_t a;
    if ((a = letter(i + 1, 's')) || (a = letter(i + 1, 't')) || (a = letter(i + 1, 'm')) || (a = letter(i + 1, 'd')))
        return 1 + a;
    static const char* const TWO[3] = {"re", "ve", "ll"};
    for (const char* two : TWO) {
        size_t b = letter(i + 1, two[0]);
        size_t c = b ? letter(i + 1 + b, two[1]) : 0;
        if (c) return 1 + b + c;
    }
    return 0;
}

// \s+(?!\S)|\s+ at i, the start of a whitespace run: the whole run when it reaches the end of the text,
// else all but its last code point (which then leads the next piece), or the single one when that is all.
static size_t whitespace_run(const Text& t, size_t i) {
    size_t end = t.run(i, CP_SPACE);
    if (end == t.n) return end;
    size_t last = end - 1;
    while ((t.s[last] & 0xC0) == 0x80) last--;  // back to the last code point's first byte
    return last > i ? last : end;
}

static size_t next_gpt2(const Text& t, size_t i) {
    int len;
    CodepointClass c = t.at(i, len);
    if (t.s[i] == '\'') {
        size_t k = contraction(PATTERN_GPT2, t, i);
        if (k) return i + k;
    }
    size_t j = i;
    if (t.s[i] == ' ' && i + 1 < t.n) {  // " ?" then the class of what follows the space
        j = i + 1;
        c = t.at(j, len);
        if (c == CP_SPACE) return whitespace_run(t, i);
    }
    if (c == CP_SPACE) return whitespace_run(t, i);
    if (c == CP_OTHER) {
        size_t k = j;
        while (k < t.n && t.at(k, len) == CP_OTHER) k += len;
        return k;
    }
    return t.run(j, c);  // letters or numbers
}

static size_t next_cl100k(const Text& t, size_t i) {
    int len;
    CodepointClass c = t.at(i, len);
    if (t.s[i] == '\'') {
        size_t k = contraction(PATTERN_CL100K, t, i);
        if (k) return i + k;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (c == CP_LETTER) return t.run(i, CP_LETTER);
    if (c != CP_NUMBER && !t.newline(i) && t.is(i + len, CP_LETTER)) return t.run(i + len, CP_LETTER);
    // \p{N}{1,3}
    if (c == CP_NUMBER) {
        size_t k = i;
        for (int d = 0; d < 3 && k < t.n && t.at(k, len) == CP_NUMBER; d++) k += len;
        return k;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    size_t j = t.s[i] == ' ' && t.is(i + 1, CP_OTHER) ? i + 1 : i;
    if (t.is(j, CP_OTHER)) {
        size_t k = j;
        while (k < t.n && t.at(k, len) == CP_OTHER) k += len;
        while (t.newline(k)) k++;
        return k;
    }
    // \s*[\r\n]+ : the whitespace run up to and including its last \r or \n
    size_t end = t.run(i, CP_SPACE);
    for (size_t k = end; k > i; k--)
        if (t.newline(k - 1)) return k;
    return whitespace_run(t, i);
}

size_t pretokenize_next(Pattern p, const char* text, size_t i, size_t n) {
    Text t{(const unsigned char*)text, n};
    return p == PATTERN_GPT2 ? next_gpt2(t, i) : next_cl100k(t, i);
}

bool pretokenize_safe_split(const char* text, size_t i, size_t n) {
    Text t{(const unsigned char*)text, n};
    if (text[i - 1] == '\n') return t.is(i, CP_LETTER);
    auto ascii_letter = [&](size_t k) { return ascii_class((unsigned char)text[k]) == CP_LETTER; };
    return text[i] == ' ' && ascii_letter(i - 1) && ascii_letter(i + 1);
}
