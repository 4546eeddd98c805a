// Carving an arena: one allocation made at start-up, handed out as aligned slices. The same code sizes an
// arena (base == nullptr: it only counts) and then carves the allocation, so the two can never disagree.
#pragma once
#include <cstddef>

struct Carver {
    char* base;
    size_t used;
    // The next `count` elements of T, 256-byte aligned; nullptr while only counting.
    template <typename T> T* take(size_t count) {
        size_t offset = (used + 255) / 256 * 256;
        used = offset + count * sizeof(T);
        return base ? (T*)(base + offset) : nullptr;
    }
};
