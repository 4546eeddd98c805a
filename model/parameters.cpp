#include "parameters.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "parallel.h"
#include "random.h"

static void add(ParameterTable& t, ParamKind kind, int layer, const char* name, int d0, int d1, int d2, int ndim,
                InitRule init, bool decay) {
    ParamTensor p;
    p.name = layer < 0 ? std::string(name) : "l" + std::to_string(layer) + "." + name;
    p.kind = kind;
    p.layer = layer;
    p.shape[0] = d0; p.shape[1] = d1; p.shape[2] = d2;
    p.ndim = ndim;
    p.numel = (size_t)d0 * d1 * d2;
    p.offset = t.total;
    p.file_offset = t.count;
    p.init = init;
    p.decay = decay;
    const size_t rows_multiple = ndim == 2 ? WEIGHT_ROWS_MULTIPLE : 1;
    const size_t rows = (d0 + rows_multiple - 1) / rows_multiple * rows_multiple;
    const size_t slot = rows * d1 * d2;
    t.total += (slot + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
    t.count += p.numel;
    int index = (int)t.tensors.size();
    t.tensors.push_back(p);
    if (layer >= 0) t.by_layer[layer][kind] = index;
}

ParameterTable parameter_table_build(const Config& c) {
    ParameterTable t;
    t.total = 0;
    t.count = 0;
    t.by_layer.assign(c.L, std::vector<int>(NUM_PARAM_KINDS, -1));
    const bool decay = true, no_decay = false;
    t.wte = (int)t.tensors.size();
    add(t, P_WTE, -1, "wte", c.Vp, c.D, 1, 2, INIT_NORMAL, decay);
    for (int l = 0; l < c.L; l++) {
        add(t, P_LN1, l, "ln1", c.D, 1, 1, 1, INIT_ONES, no_decay);
        if (c.pattern[l] == 'M') {
            add(t, P_IN_PROJ, l, "in_proj", config_m2rnn_layout(c).Cp(), c.D, 1, 2, INIT_NORMAL, decay);
            add(t, P_CONV, l, "conv", config_m2rnn_layout(c).Cc(), CONV_WIDTH, 1, 2, INIT_NORMAL, no_decay);
            add(t, P_A_LOG, l, "A_log", c.N, 1, 1, 1, INIT_A_LOG, no_decay);
            add(t, P_DT_BIAS, l, "dt_bias", c.N, 1, 1, 1, INIT_DT_BIAS, no_decay);
            add(t, P_W, l, "W", c.N, c.V, c.V, 3, INIT_IDENTITY, decay);
            add(t, P_SKIP, l, "D", c.N, c.V, 1, 2, INIT_ONES, no_decay);
            add(t, P_GNORM, l, "gnorm", c.N * c.V, 1, 1, 1, INIT_ONES, no_decay);
            add(t, P_OUT_PROJ, l, "out_proj", c.D, c.N * c.V, 1, 2, INIT_NORMAL_RESIDUAL, decay);
        } else {
            add(t, P_QKV, l, "qkv", 3 * c.D, c.D, 1, 2, INIT_NORMAL, decay);
            add(t, P_ATTN_OUT, l, "attn_out", c.D, c.D, 1, 2, INIT_NORMAL_RESIDUAL, decay);
        }
        add(t, P_LN2, l, "ln2", c.D, 1, 1, 1, INIT_ONES, no_decay);
        add(t, P_UP, l, "up", 2 * c.F, c.D, 1, 2, INIT_NORMAL, decay);
        add(t, P_DOWN, l, "down", c.D, c.F, 1, 2, INIT_NORMAL_RESIDUAL, decay);
    }
    t.lnf = (int)t.tensors.size();
    add(t, P_LNF, -1, "lnf", c.D, 1, 1, 1, INIT_ONES, no_decay);
    t.lm_head = (int)t.tensors.size();
    add(t, P_LM_HEAD, -1, "lm_head", c.Vp, c.D, 1, 2, INIT_NORMAL, decay);
    return t;
}

std::vector<DecayRun> parameter_decay_runs(const ParameterTable& t) {
    std::vector<DecayRun> runs;
    for (size_t i = 0; i < t.tensors.size(); i++) {
        const size_t offset = t.tensors[i].offset, end = i + 1 < t.tensors.size() ? t.tensors[i + 1].offset : t.total;
        if (!runs.empty() && runs.back().decay == t.tensors[i].decay)
            runs.back().numel = end - runs.back().offset;
        else
            runs.push_back({offset, end - offset, t.tensors[i].decay});
    }
    return runs;
}

size_t param_offset(const ParameterTable& t, int layer, ParamKind kind) {
    int index = t.by_layer[layer][kind];
    assert(index >= 0 && "this layer has no tensor of that kind");
    return t.tensors[index].offset;
}

// Generator draws one element of a tensor of this rule takes (Random::normal takes two).
static int draws_per_element(InitRule rule) {
    switch (rule) {
    case INIT_NORMAL: case INIT_NORMAL_RESIDUAL: return 2;
    case INIT_A_LOG: case INIT_DT_BIAS: return 1;
    case INIT_ONES: case INIT_IDENTITY: return 0;
    }
    return 0;
}

// Element i of a tensor of a drawn rule, from the generator at that element's first draw.
static double drawn_value(InitRule rule, Random& rng, double residual_std) {
    switch (rule) {
    case INIT_NORMAL: return 0.02 * rng.normal();
    case INIT_NORMAL_RESIDUAL: return residual_std * rng.normal();
    case INIT_A_LOG: return log(16.0 * (1.0 - rng.uniform()));  // U(0,16) can return 0: draw from (0,16]
    case INIT_DT_BIAS: {
        double dt = exp(rng.uniform(log(1e-3), log(0.1)));
        if (dt < 1e-4) dt = 1e-4;
        return dt + log(-expm1(-dt));  // inverse of softplus(y) = log(1 + e^y)
    }
    case INIT_ONES: case INIT_IDENTITY: break;
    }
    assert(false && "a rule that draws nothing");
    return 0;
}

// One generator from the seed, its draws taken tensor by tensor in canonical order. Its n-th draw depends on n
// alone (Random::at_draw), so the drawn tensors are filled in chunks on the host's threads (parallel_for), each
// chunk from its own first draw: the same numbers as one pass, for any thread count. 410M parameters take 25 s in
// one pass.
void parameters_init(const ParameterTable& t, const Config& c, unsigned long long seed, double* params) {
    constexpr size_t CHUNK = 1 << 18;  // elements a task
    const double residual_std = 0.02 / sqrt(2.0 * c.L);
    uint64_t first_draw = 0;  // the draw the next tensor starts at
    for (const ParamTensor& p : t.tensors) {
        double* x = params + p.offset;
        const int per = draws_per_element(p.init);
        if (p.init == INIT_ONES) {
            for (size_t i = 0; i < p.numel; i++) x[i] = 1.0;
        } else if (p.init == INIT_IDENTITY) {  // shape (N, V, V)
            for (int n = 0; n < p.shape[0]; n++)
                for (int i = 0; i < p.shape[1]; i++)
                    for (int j = 0; j < p.shape[2]; j++) x[((size_t)n * p.shape[1] + i) * p.shape[2] + j] = i == j;
        } else {
            parallel_for((int)((p.numel + CHUNK - 1) / CHUNK), [&](int task) {
                const size_t i0 = (size_t)task * CHUNK, i1 = std::min(p.numel, i0 + CHUNK);
                Random rng = Random::at_draw(seed, first_draw + i0 * per);
                for (size_t i = i0; i < i1; i++) x[i] = drawn_value(p.init, rng, residual_std);
            });
        }
        first_draw += p.numel * per;
    }
}

std::string param_shape_string(const ParamTensor& p) {
    std::string s = std::to_string(p.shape[0]);
    for (int d = 1; d < p.ndim; d++) s += "x" + std::to_string(p.shape[d]);
    return s;
}
