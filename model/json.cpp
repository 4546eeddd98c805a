#include "json.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

const Json* Json::get(const std::string& key) const {
    for (const auto& m : members)
        if (m.first == key) return &m.second;
    return nullptr;
}

const char* json_type_name(const Json& j) {
    static const char* names[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
    return names[j.type];
}

namespace {

// A recursive-descent parser over text[pos ..]; every method returns false after setting err.
struct Parser {
    const std::string& s;
    size_t pos;
    std::string& err;

    bool fail(const std::string& what) {
        err = what + " at byte " + std::to_string(pos);
        return false;
    }
    void skip_space() {
        while (pos < s.size() && (s[pos] == ' ' || s[pos] == '\t' || s[pos] == '\n' || s[pos] == '\r')) pos++;
    }
    bool literal(const char* word) {
        const size_t n = strlen(word);
        if (s.compare(pos, n, word) != 0) return fail("unexpected character '" + std::string(1, s[pos]) + "'");
        pos += n;
        return true;
    }
    static int hex_digit(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }
    bool hex4(unsigned& u) {
        u = 0;
        for (int i = 0; i < 4; i++, pos++) {
            const int d = pos < s.size() ? hex_digit(s[pos]) : -1;
            if (d < 0) return fail("bad \\u escape");
            u = u * 16 + d;
        }
        return true;
    }
    static void append_utf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += (char)cp;
        } else if (cp < 0x800) {
            out += (char)(0xC0 | cp >> 6);
            out += (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += (char)(0xE0 | cp >> 12);
            out += (char)(0x80 | (cp >> 6 & 0x3F));
            out += (char)(0x80 | (cp & 0x3F));
        } else {
            out += (char)(0xF0 | cp >> 18);
            out += (char)(0x80 | (cp >> 12 & 0x3F));
            out += (char)(0x80 | (cp >> 6 & 0x3F));
            out += (char)(0x80 | (cp & 0x3F));
        }
    }
    bool string(std::string& out) {
        pos++;  // the opening quote
        while (true) {
            if (pos >= s.size()) return fail("unterminated string");
            const unsigned char c = s[pos];
            if (c == '"') { pos++; return true; }
            if (c < 0x20) return fail("control character in a string");
            if (c != '\\') { out += (char)c; pos++; continue; }
            if (++pos >= s.size()) return fail("unterminated string");
            const char e = s[pos++];
            switch (e) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                unsigned cp;
                if (!hex4(cp)) return false;
                if (cp >= 0xD800 && cp < 0xDC00) {  // a high surrogate: its low half follows as \uDC00..\uDFFF
                    unsigned low;
                    if (s.compare(pos, 2, "\\u") != 0) return fail("lone surrogate in \\u escape");
                    pos += 2;
                    if (!hex4(low)) return false;
                    if (low < 0xDC00 || low >= 0xE000) return fail("lone surrogate in \\u escape");
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                } else if (cp >= 0xDC00 && cp < 0xE000) {
                    return fail("lone surrogate in \\u escape");
                }
                append_utf8(out, cp);
                break;
            }
            default: pos--; return fail(std::string("bad escape \\") + e);
            }
        }
    }
    bool number(Json& out) {
        const size_t start = pos;
        bool integral = true;
        if (s[pos] == '-') pos++;
        auto digits = [&]() {
            const size_t first = pos;
            while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') pos++;
            return pos > first;
        };
        if (pos < s.size() && s[pos] == '0') pos++;
        else if (!digits()) return fail("bad number");
        if (pos < s.size() && s[pos] == '.') {
            pos++;
            integral = false;
            if (!digits()) return fail("bad number");
        }
        if (pos < s.size() && (s[pos] == 'e' || s[pos] == 'E')) {
            pos++;
            integral = false;
            if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) pos++;
            if (!digits()) return fail("bad number");
        }
        const std::string literal = s.substr(start, pos - start);
        out.type = Json::NUMBER;
        out.number = strtod(literal.c_str(), nullptr);
        if (integral) {
            errno = 0;
            out.integer = strtoll(literal.c_str(), nullptr, 10);
            out.is_integer = errno == 0;
        }
        return true;
    }
    bool value(Json& out, int depth) {
        skip_space();
        if (pos >= s.size()) return fail("unexpected end of text");
        const char c = s[pos];
        if (c == '{' || c == '[') {
            if (depth >= JSON_MAX_DEPTH) return fail("nesting deeper than " + std::to_string(JSON_MAX_DEPTH));
            return c == '{' ? object(out, depth + 1) : array(out, depth + 1);
        }
        if (c == '"') { out.type = Json::STRING; return string(out.text); }
        if (c == 't') { out.type = Json::BOOLEAN; out.boolean = true; return literal("true"); }
        if (c == 'f') { out.type = Json::BOOLEAN; out.boolean = false; return literal("false"); }
        if (c == 'n') { out.type = Json::NUL; return literal("null"); }
        if (c == '-' || (c >= '0' && c <= '9')) return number(out);
        return fail("unexpected character '" + std::string(1, c) + "'");
    }
    bool array(Json& out, int depth) {
        out.type = Json::ARRAY;
        pos++;
        skip_space();
        if (pos < s.size() && s[pos] == ']') { pos++; return true; }
        while (true) {
            out.items.emplace_back();
            if (!value(out.items.back(), depth)) return false;
            skip_space();
            if (pos < s.size() && s[pos] == ',') { pos++; continue; }
            if (pos < s.size() && s[pos] == ']') { pos++; return true; }
            return fail("expected ',' or ']' in an array");
        }
    }
    bool object(Json& out, int depth) {
        out.type = Json::OBJECT;
        pos++;
        skip_space();
        if (pos < s.size() && s[pos] == '}') { pos++; return true; }
        while (true) {
            skip_space();
            if (pos >= s.size() || s[pos] != '"') return fail("expected a string key in an object");
            std::string key;
            if (!string(key)) return false;
            if (out.get(key)) return fail("duplicate key \"" + key + "\"");
            skip_space();
            if (pos >= s.size() || s[pos] != ':') return fail("expected ':' after key \"" + key + "\"");
            pos++;
            out.members.emplace_back(key, Json());
            if (!value(out.members.back().second, depth)) return false;
            skip_space();
            if (pos < s.size() && s[pos] == ',') { pos++; continue; }
            if (pos < s.size() && s[pos] == '}') { pos++; return true; }
            return fail("expected ',' or '}' in an object");
        }
    }
};

}  // namespace

bool json_parse(const std::string& text, Json& out, std::string& err) {
    out = Json();
    Parser p{text, 0, err};
    if (!p.value(out, 0)) return false;
    p.skip_space();
    if (p.pos != text.size()) return p.fail("text after the JSON value");
    return true;
}
