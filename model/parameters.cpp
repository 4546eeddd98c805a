#include "parameters.h"

#include <cassert>
#include <cmath>

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

void parameters_init(const ParameterTable& t, const Config& c, unsigned long long seed, double* params) {
    Random rng(seed);
    const double residual_std = 0.02 / sqrt(2.0 * c.L);
    for (const ParamTensor& p : t.tensors) {
        double* x = params + p.offset;
        switch (p.init) {
        case INIT_NORMAL:
            for (size_t i = 0; i < p.numel; i++) x[i] = 0.02 * rng.normal();
            break;
        case INIT_NORMAL_RESIDUAL:
            for (size_t i = 0; i < p.numel; i++) x[i] = residual_std * rng.normal();
            break;
        case INIT_ONES:
            for (size_t i = 0; i < p.numel; i++) x[i] = 1.0;
            break;
        case INIT_IDENTITY:  // shape (N, V, V)
            for (int n = 0; n < p.shape[0]; n++)
                for (int i = 0; i < p.shape[1]; i++)
                    for (int j = 0; j < p.shape[2]; j++) x[((size_t)n * p.shape[1] + i) * p.shape[2] + j] = i == j;
            break;
        case INIT_A_LOG:
            // U(0,16) can return 0; draw from (0,16] so the log is finite.
            for (size_t i = 0; i < p.numel; i++) x[i] = log(16.0 * (1.0 - rng.uniform()));
            break;
        case INIT_DT_BIAS:
            for (size_t i = 0; i < p.numel; i++) {
                double dt = exp(rng.uniform(log(1e-3), log(0.1)));
                if (dt < 1e-4) dt = 1e-4;
                x[i] = dt + log(-expm1(-dt));  // inverse of softplus(y) = log(1 + e^y)
            }
            break;
        }
    }
}

std::string param_shape_string(const ParamTensor& p) {
    std::string s = std::to_string(p.shape[0]);
    for (int d = 1; d < p.ndim; d++) s += "x" + std::to_string(p.shape[d]);
    return s;
}
