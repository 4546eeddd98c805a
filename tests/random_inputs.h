// Inputs shared by the checks: tiny configurations, random parameters and random tokens.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../model/config.h"
#include "../model/parameters.h"
#include "../model/random.h"

// Random parameters for the checks: the model's initialisation (from `seed`) with the constant tensors
// (norms, W = I, D = 1) perturbed by N(0, constant_noise), so that no derivative is special because a
// weight is exactly 1 or 0 (a gnorm applied twice would be invisible at gnorm = 1), and the matrices
// perturbed by N(0, matrix_noise). A_log and dt_bias are random already.
static inline std::vector<double> random_parameters(const ParameterTable& t, const Config& c, uint64_t seed,
                                                    double constant_noise, double matrix_noise) {
    std::vector<double> p(t.total);
    parameters_init(t, c, seed, p.data());
    Random rng(seed + 1);
    for (const ParamTensor& pt : t.tensors) {
        double scale = pt.init == INIT_ONES || pt.init == INIT_IDENTITY ? constant_noise
                       : pt.init == INIT_NORMAL || pt.init == INIT_NORMAL_RESIDUAL ? matrix_noise : 0.0;
        for (size_t i = pt.offset; i < pt.offset + pt.numel; i++) p[i] += scale * rng.normal();
    }
    return p;
}

static inline std::vector<int> random_tokens(int B, int T, int vocab, uint64_t seed) {
    Random rng(seed);
    std::vector<int> tokens((size_t)B * (T + 1));
    for (int& x : tokens) x = rng.below(vocab);
    return tokens;
}

// A tiny config: D=32, F=48, 4 attention heads, K=8, V=4, Nq = Nk, vocab 67 (Vp 128), T=16, no clipping.
static inline Config tiny_config(const char* pattern, int N, int Nq, int rope) {
    Config c;
    memset(&c, 0, sizeof(c));
    std::string err;
    config_set_pattern(c, pattern, err);
    c.D = 32; c.F = 48; c.heads = 4; c.rope = rope;
    c.N = N; c.K = 8; c.V = 4; c.Nq = Nq; c.Nk = Nq;
    c.clip = 0;
    c.vocab = 67; c.Vp = 128; c.T = 16;
    return c;
}

