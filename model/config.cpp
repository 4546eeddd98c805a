#include "config.h"

#include <cstdio>
#include <cstring>

M2RNNLayout config_m2rnn_layout(const Config& c) { return M2RNNLayout{c.N, c.K, c.V, c.Nq, c.Nk}; }

int config_count(const Config& c, char mixer) {
    int n = 0;
    for (int l = 0; l < c.L; l++) n += c.pattern[l] == mixer;
    return n;
}

int config_padded_vocab(int vocab) { return (vocab + 127) / 128 * 128; }

bool config_set_pattern(Config& c, const char* pattern, std::string& err) {
    size_t n = strlen(pattern);
    if (n == 0) { err = "pattern: empty; give one letter per layer, M (M2RNN) or A (attention)"; return false; }
    if (n > MAX_LAYERS) { err = "pattern: " + std::to_string(n) + " layers, at most " + std::to_string(MAX_LAYERS); return false; }
    for (size_t i = 0; i < n; i++) {
        if (pattern[i] != 'M' && pattern[i] != 'A') {
            err = std::string("pattern: letter '") + pattern[i] + "' at position " + std::to_string(i) +
                  " is neither M (M2RNN) nor A (attention)";
            return false;
        }
    }
    memcpy(c.pattern, pattern, n + 1);
    c.L = (int)n;
    return true;
}

struct Preset {
    const char* name;
    const char* pattern;
    int D, F, heads, rope, N, K, V, Nq, Nk, vocab, T;
};

// The reference configurations of docs/model.md §7. "tiny" is a small hybrid for quick runs.
static const Preset presets[] = {
    {"tiny", "MAM", 64, 128, 4, 0, 4, 8, 4, 1, 1, 50257, 64},
    {"d12-hybrid", "MMMAMMMAMMMA", 768, 2048, 12, 0, 64, 64, 16, 1, 1, 50257, 1024},
    {"paper-410M-hybrid", "MMMMAMMMMMMMAMMMMMMMAMMM", 1024, 2752, 16, 0, 84, 64, 16, 1, 1, 100277, 4096},
    {"paper-410M-attention", "AAAAAAAAAAAAAAAAAAAAAAAA", 1024, 2752, 16, 1, 84, 64, 16, 1, 1, 100277, 4096},
};

const char* config_tokenizer(const Config& c) {
    if (c.vocab == 50257) return "gpt2";
    if (c.vocab == 100277) return "cl100k_base";
    return nullptr;
}

const char* config_preset_names() { return "tiny, d12-hybrid, paper-410M-hybrid, paper-410M-attention"; }

bool config_preset(const char* name, Config& c, std::string& err) {
    for (const Preset& p : presets) {
        if (strcmp(p.name, name) != 0) continue;
        memset(&c, 0, sizeof(c));
        config_set_pattern(c, p.pattern, err);
        c.D = p.D; c.F = p.F; c.heads = p.heads; c.rope = p.rope;
        c.N = p.N; c.K = p.K; c.V = p.V; c.Nq = p.Nq; c.Nk = p.Nk;
        c.clip = 1.0;
        c.vocab = p.vocab; c.Vp = config_padded_vocab(p.vocab);
        c.T = p.T;
        return true;
    }
    err = std::string("unknown preset '") + name + "'; the presets are " + config_preset_names();
    return false;
}

// Sizes are capped so that every derived count (rows of a projection, elements of a tensor row) fits an int.
static const int MAX_WIDTH = 1 << 16;      // D, F, heads, N, K, V, Nq, Nk
static const int MAX_TOKENS = 1 << 24;     // vocab, Vp, T

static bool positive(const char* field, int value, std::string& err, int max = MAX_WIDTH) {
    if (value > 0 && value <= max) return true;
    err = std::string(field) + " = " + std::to_string(value) + ": must be in 1.." + std::to_string(max);
    return false;
}

bool config_validate(const Config& c, std::string& err) {
    if (c.L <= 0 || c.L > MAX_LAYERS || (int)strnlen(c.pattern, MAX_LAYERS + 1) != c.L) {
        err = "pattern: missing or inconsistent with the layer count";
        return false;
    }
    Config copy = c;
    if (!config_set_pattern(copy, c.pattern, err)) return false;
    if (!positive("D", c.D, err) || !positive("F", c.F, err) || !positive("vocab", c.vocab, err, MAX_TOKENS) ||
        !positive("Vp", c.Vp, err, MAX_TOKENS) || !positive("T", c.T, err, MAX_TOKENS)) return false;
    if (config_count(c, 'A') > 0) {
        if (!positive("heads", c.heads, err)) return false;
        if (c.D % c.heads != 0) {
            err = "heads = " + std::to_string(c.heads) + ": does not divide D = " + std::to_string(c.D);
            return false;
        }
        int hd = c.D / c.heads;
        if (c.rope && hd % 2 != 0) {
            err = "rope: the head size D/heads = " + std::to_string(hd) + " must be even to rotate halves";
            return false;
        }
    }
    if (c.rope != 0 && c.rope != 1) { err = "rope = " + std::to_string(c.rope) + ": must be 0 or 1"; return false; }
    if (config_count(c, 'M') > 0) {
        if (!positive("N", c.N, err) || !positive("K", c.K, err) || !positive("V", c.V, err) ||
            !positive("Nq", c.Nq, err) || !positive("Nk", c.Nk, err)) return false;
        const long long rows = (long long)(c.Nq + c.Nk) * c.K + 2ll * c.N * c.V + c.N;
        if (rows > MAX_TOKENS) {
            err = "in_proj has " + std::to_string(rows) + " rows ((Nq+Nk)·K + 2·N·V + N): at most " +
                  std::to_string(MAX_TOKENS);
            return false;
        }
        if (c.N % c.Nq != 0) {
            err = "Nq = " + std::to_string(c.Nq) + ": does not divide N = " + std::to_string(c.N);
            return false;
        }
        if (c.N % c.Nk != 0) {
            err = "Nk = " + std::to_string(c.Nk) + ": does not divide N = " + std::to_string(c.N);
            return false;
        }
        if (!(c.clip >= 0.0)) {
            err = "clip = " + std::to_string(c.clip) + ": must be > 0, or 0 for no state-gradient clipping";
            return false;
        }
    }
    if (c.Vp < c.vocab || c.Vp % 128 != 0) {
        err = "Vp = " + std::to_string(c.Vp) + ": must be a multiple of 128 and >= vocab = " + std::to_string(c.vocab);
        return false;
    }
    return true;
}

double config_flops_per_token(const Config& c) {
    const double D = c.D, F = c.F, T = c.T, N = c.N, K = c.K, V = c.V;
    // A GEMM with an (out, in) weight costs per token 2·out·in FLOPs forward (y = x Wᵀ) and 4·out·in backward
    // (dx = dy W and dW += dyᵀ x): 6 per weight.
    const double mlp = 6.0 * (2.0 * F * D + D * F);                              // up (2F, D), down (D, F)
    const double m2rnn_gemms = 6.0 * ((double)config_m2rnn_layout(c).Cp() * D + D * N * V);  // in_proj, out_proj
    const double attention_gemms = 6.0 * (3.0 * D * D + D * D);                 // qkv (3D, D), attn_out (D, D)
    // Attention's scores and mix, per token over all heads: q kᵀ against T keys (2·T·D) and p v (2·T·D)
    // forward, twice that backward (dq and dk, dp and dv). The causal half that is masked out is counted, as
    // llm.c and PaLM count it.
    const double attention_scores = 3.0 * (2.0 * T * D + 2.0 * T * D);
    // The M²RNN scan, per token and head: H_{t-1} W (K×V by V×V: 2·K·V² FLOPs) and y = Hᵀq (2·K·V) forward;
    // backward twice that (dZ Wᵀ and W's gradient Hᵀ dZ; dq = H dy and dH += q dyᵀ). Not counted: the rank-1
    // k vᵀ, tanh and the forget-gate blend (~7·K·V, elementwise), nor the forward the backward recomputes
    // from each checkpoint.
    const double m2rnn_scan = 3.0 * N * (2.0 * K * V * V + 2.0 * K * V);
    // The classifier, lm_head (Vp, D), over the padded vocabulary as the GEMM computes it; the embedding is a
    // gather (no FLOPs).
    const double classifier = 6.0 * c.Vp * D;
    double flops = classifier;
    for (int l = 0; l < c.L; l++)
        flops += mlp + (c.pattern[l] == 'M' ? m2rnn_gemms + m2rnn_scan : attention_gemms + attention_scores);
    return flops;
}

std::string config_describe(const Config& c) {
    char buf[512];
    snprintf(buf, sizeof(buf),
             "pattern %s (L=%d) D=%d F=%d heads=%d rope=%d N=%d K=%d V=%d Nq=%d Nk=%d clip=%g vocab=%d Vp=%d T=%d",
             c.pattern, c.L, c.D, c.F, c.heads, c.rope, c.N, c.K, c.V, c.Nq, c.Nk, c.clip, c.vocab, c.Vp, c.T);
    return buf;
}
