#include "utf8.h"

static const char REPLACEMENT[] = "\xEF\xBF\xBD";

// The WHATWG decoder's bounds for the first continuation byte after lead byte `c`, and how many
// continuation bytes follow it; 0 for a byte that cannot start a sequence.
static int sequence_rule(unsigned c, unsigned& lower, unsigned& upper) {
    lower = 0x80, upper = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) return 1;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0) lower = 0xA0;  // no overlong 3-byte forms
        if (c == 0xED) upper = 0x9F;  // no UTF-16 surrogates
        return 2;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0) lower = 0x90;  // no overlong 4-byte forms
        if (c == 0xF4) upper = 0x8F;  // nothing above U+10FFFF
        return 3;
    }
    return 0;
}

size_t utf8_repair(const char* str, size_t n, bool final, std::string& out, size_t* invalid) {
    const unsigned char* s = (const unsigned char*)str;
    size_t i = 0, run = 0;  // s[run, i) is valid and not yet appended
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        unsigned lower, upper;
        int need = sequence_rule(s[i], lower, upper);
        size_t j = i + 1;
        int got = 0;
        while (got < need && j < n && s[j] >= lower && s[j] <= upper) {
            lower = 0x80, upper = 0xBF;
            j++, got++;
        }
        if (need > 0 && got == need) { i = j; continue; }
        out.append(str + run, i - run);
        if (j == n && need > 0 && !final) return n - i;  // may complete in the next block
        out.append(REPLACEMENT, 3);
        const size_t next = need > 0 ? j : i + 1;  // the byte that broke the sequence starts afresh
        if (invalid) *invalid += next - i;
        i = run = next;
    }
    out.append(str + run, n - run);
    return 0;
}
