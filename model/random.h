// A small deterministic random generator (splitmix64), so the CPU reference, the GPU code and the
// tests draw the same numbers from the same seed on every machine.
#pragma once
#include <cmath>
#include <cstdint>

#include "model_math.h"

struct Random {
    uint64_t state;
    explicit Random(uint64_t seed) : state(seed) {}
    // Random(seed) after n draws: draw n is splitmix64 of seed + (n + 1)·γ, so no draw before it need be made.
    static Random at_draw(uint64_t seed, uint64_t n) { return Random(seed + n * SPLITMIX64_GAMMA); }

    uint64_t next_u64() { return splitmix64_mix(state += SPLITMIX64_GAMMA); }
    // Uniform in [0, 1) with 53 random bits.
    double uniform() { return (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0); }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Standard normal by Box-Muller (one value per call; the second is discarded for simplicity).
    double normal() {
        double u1 = 1.0 - uniform();  // (0, 1]: log is finite
        double u2 = uniform();
        return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    }
    int below(int n) { return (int)(next_u64() % (uint64_t)n); }
};
