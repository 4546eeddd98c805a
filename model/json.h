// A small JSON reader for the files that carry a model out of the trainer and back (model/safetensors.h: the
// safetensors header and config.json). It reads RFC 8259 JSON into a tree; an error says what is wrong and at
// which byte. Nesting deeper than JSON_MAX_DEPTH is refused, so a hostile file cannot exhaust the stack.
// Writing needs no library: the writers print their few fields themselves.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#define JSON_MAX_DEPTH 64

struct Json {
    enum Type { NUL, BOOLEAN, NUMBER, STRING, ARRAY, OBJECT } type = NUL;
    bool boolean = false;
    double number = 0;
    bool is_integer = false;  // a number written without fraction or exponent that fits an int64
    int64_t integer = 0;
    std::string text;                                  // STRING
    std::vector<Json> items;                           // ARRAY
    std::vector<std::pair<std::string, Json>> members; // OBJECT, in file order; keys are unique

    const Json* get(const std::string& key) const;     // an object's member, or nullptr
};

// Parses the whole of `text` (surrounding whitespace allowed). False with `err` naming the problem and its
// byte offset; duplicate keys in an object are an error.
bool json_parse(const std::string& text, Json& out, std::string& err);

// "an object", "a string", ...: the type of a value, for messages.
const char* json_type_name(const Json& j);
