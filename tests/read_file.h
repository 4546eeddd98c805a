// Reading a whole file into memory, for the host checks.
#pragma once
#include <cstdio>
#include <string>

// Appends the bytes of `path` to `bytes`; false when it cannot be opened.
static inline bool read_file(const std::string& path, std::string& bytes) {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) return false;
    char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, got);
    fclose(f);
    return true;
}
