// Checks of the CPU reference: it computes docs/model.md's model (golden vectors), its gradient is the
// derivative of its loss (finite differences, also from random initial states), its state-gradient clipping is
// docs/model.md's rule (an independent unrolled computation, from a zero and a random initial state),
// --state-noise's initial states are the uniform draws they should be, and it learns (a short run on
// tinyshakespeare).
#include "test_reference.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../data/shards.h"
#include "../model/parallel.h"
#include "../model/random.h"
#include "../model/reference.h"
#include "../model/schedule.h"
#include "random_inputs.h"

// ---------------------------------------------------------------- golden vectors

struct Golden {
    Config c;
    int B = 0, T = 0;
    size_t P = 0;
    std::vector<std::pair<std::string, std::string>> tensors;  // name, "shape offset" as the .txt lists them
    std::vector<int> tokens;
    std::vector<double> params, logits, grads;
    double loss = 0;
};

// Reads tests/golden/<name>.txt (config, tensor list) and <name>.bin (tokens | params | loss | logits | grads).
static bool golden_load(const std::string& base, Golden& g, std::string& err) {
    FILE* f = fopen((base + ".txt").c_str(), "r");
    if (!f) { err = base + ".txt: cannot open"; return false; }
    memset(&g.c, 0, sizeof(g.c));
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        char key[64], value[256], shape[64];
        size_t offset;
        if (line[0] == '#') continue;
        if (sscanf(line, "tensor %63s %63s offset %zu", value, shape, &offset) == 3) {
            g.tensors.push_back({value, std::string(shape) + " " + std::to_string(offset)});
            continue;
        }
        if (sscanf(line, "%63s = %255s", key, value) != 2) continue;
        std::string k = key;
        if (k == "pattern") config_set_pattern(g.c, value, err);
        else if (k == "D") g.c.D = atoi(value);
        else if (k == "F") g.c.F = atoi(value);
        else if (k == "heads") g.c.heads = atoi(value);
        else if (k == "rope") g.c.rope = atoi(value);
        else if (k == "N") g.c.N = atoi(value);
        else if (k == "K") g.c.K = atoi(value);
        else if (k == "V") g.c.V = atoi(value);
        else if (k == "Nq") g.c.Nq = atoi(value);
        else if (k == "Nk") g.c.Nk = atoi(value);
        else if (k == "clip") g.c.clip = strcmp(value, "none") == 0 ? 0.0 : atof(value);
        else if (k == "Vocab") g.c.vocab = atoi(value);
        else if (k == "Vp") g.c.Vp = atoi(value);
        else if (k == "B") g.B = atoi(value);
        else if (k == "T") g.T = g.c.T = atoi(value);
        else if (k == "P") g.P = strtoull(value, nullptr, 10);
    }
    fclose(f);
    if (!config_validate(g.c, err)) { err = base + ".txt: " + err; return false; }
    f = fopen((base + ".bin").c_str(), "rb");
    if (!f) { err = base + ".bin: cannot open"; return false; }
    const size_t ntok = (size_t)g.B * (g.T + 1), nlogits = (size_t)g.B * g.T * g.c.Vp;
    g.tokens.resize(ntok);
    g.params.resize(g.P);
    g.logits.resize(nlogits);
    g.grads.resize(g.P);
    bool ok = fread(g.tokens.data(), 4, ntok, f) == ntok && fread(g.params.data(), 8, g.P, f) == g.P &&
              fread(&g.loss, 8, 1, f) == 1 && fread(g.logits.data(), 8, nlogits, f) == nlogits &&
              fread(g.grads.data(), 8, g.P, f) == g.P && fgetc(f) == EOF;
    fclose(f);
    if (!ok) { err = base + ".bin: size does not match its .txt"; return false; }
    return true;
}

static void test_golden(TestReport& r) {
    const char* names[] = {"golden_hybrid_MAM_shared_qk_clip", "golden_hybrid_AM_rope_grouped_noclip",
                           "golden_m2rnn_MM_perhead_qk_clip"};
    for (const char* name : names) {
        Golden g;
        std::string err;
        printf("golden %s\n", name);
        if (!r.check(golden_load(std::string("tests/golden/") + name, g, err), "load: %s", err.c_str())) continue;
        printf("  config: %s, B=%d\n", config_describe(g.c).c_str(), g.B);
        ParameterTable t = parameter_table_build(g.c);
        // the golden files hold the tensors back to back, as checkpoints do
        bool layout = t.count == g.P && t.tensors.size() == g.tensors.size();
        for (size_t i = 0; layout && i < t.tensors.size(); i++)
            layout = t.tensors[i].name == g.tensors[i].first &&
                     param_shape_string(t.tensors[i]) + " " + std::to_string(t.tensors[i].file_offset) ==
                         g.tensors[i].second;
        r.check(layout, "parameter table matches the golden tensor list (%zu tensors, %zu elements)",
                t.tensors.size(), t.count);
        if (!layout) continue;
        std::vector<double> params(t.total);
        parameters_unpack(t, g.params.data(), params.data());
        Reference<double> m;
        reference_init(m, g.c, g.B, g.T);
        double loss = reference_forward(m, params.data(), g.tokens.data());
        std::vector<double> grads(t.total, 0.0);
        reference_backward(m, params.data(), grads.data());
        printf("  %-16s %-10s %s\n", "tensor", "shape", "max rel err");
        double worst = 0;
        double e = fabs(loss - g.loss) / fabs(g.loss);
        printf("  %-16s %-10s %.2e\n", "loss", "1", e);
        worst = fmax(worst, e);
        e = max_rel_err(m.logits.data(), g.logits.data(), g.logits.size());
        printf("  %-16s %-10s %.2e\n", "logits", "B*T*Vp", e);
        worst = fmax(worst, e);
        for (const ParamTensor& p : t.tensors) {
            e = max_rel_err(grads.data() + p.offset, g.grads.data() + p.file_offset, p.numel);
            printf("  %-16s %-10s %.2e\n", ("d" + p.name).c_str(), param_shape_string(p).c_str(), e);
            if (!(e <= worst)) worst = e;
        }
        r.check(worst <= 1e-10, "%s: loss %.12f (golden %.12f), worst rel err over loss, logits and %zu grads %.2e <= 1e-10",
                name, loss, g.loss, t.tensors.size(), worst);
    }
}

// ---------------------------------------------------------------- finite differences

// The loss's gradient against five-point central differences, on sampled elements of every tensor. The cases with
// state noise start every scan from a random H_{−1} (amplitude 0.9: the t = 0 terms of dW and df, which vanish at
// H_{−1} = 0, are then as large as any), the same draw in every forward of a case.
static void test_finite_differences(TestReport& r) {
    struct Case { const char* name; Config c; StateNoise noise; };
    const StateNoise random_h0{0.9f, 0x5eedull};
    const Case cases[] = {
        {"all-M MM (Nq=Nk=2)", tiny_config("MM", 4, 2, 0), {}},
        {"all-A AA RoPE", tiny_config("AA", 4, 1, 1), {}},
        {"hybrid MAM Nq=Nk=1", tiny_config("MAM", 4, 1, 0), {}},
        {"hybrid MAM Nq=Nk=N", tiny_config("MAM", 4, 4, 0), {}},
        {"all-M MM (Nq=Nk=2), random H_{-1} (state noise 0.9)", tiny_config("MM", 4, 2, 0), random_h0},
        {"hybrid MAM Nq=Nk=1, random H_{-1} (state noise 0.9)", tiny_config("MAM", 4, 1, 0), random_h0},
    };
    const int B = 2, T = 16, samples = 12;
    const double h = 1e-3;
    for (const Case& cs : cases) {
        const Config& c = cs.c;
        std::string err;
        if (!r.check(config_validate(c, err), "%s: config valid %s", cs.name, err.c_str())) continue;
        ParameterTable t = parameter_table_build(c);
        std::vector<double> params = random_parameters(t, c, 1234, 0.2, 0.1);
        std::vector<int> tokens = random_tokens(B, T, c.vocab, 99);
        Reference<double> m;
        reference_init(m, c, B, T);
        reference_forward(m, params.data(), tokens.data(), cs.noise);
        std::vector<double> grads(t.total, 0.0);
        reference_backward(m, params.data(), grads.data());
        printf("finite differences, %s (five-point central, h=%g, up to %d elements per tensor)\n", cs.name, h, samples);
        printf("  %-16s %-10s %s\n", "tensor", "shape", "max rel err");
        Random rng(7);
        double worst = 0;
        for (const ParamTensor& p : t.tensors) {
            std::vector<double> fd, an;
            const int n = p.numel <= (size_t)samples ? (int)p.numel : samples;  // small tensors: every element
            for (int s = 0; s < n; s++) {
                // wte: rows of input tokens (other rows have no gradient); lm_head: real vocabulary rows.
                size_t i;
                if (n == (int)p.numel)
                    i = s;
                else if (p.kind == P_WTE)
                    i = (size_t)tokens[rng.below(B) * (T + 1) + rng.below(T)] * c.D + rng.below(c.D);
                else if (p.kind == P_LM_HEAD)
                    i = (size_t)rng.below(c.vocab) * c.D + rng.below(c.D);
                else
                    i = rng.next_u64() % p.numel;
                // five-point central difference: error O(h⁴) + rounding O(ε/h)
                double* x = &params[p.offset + i];
                const double saved = *x;
                double loss_at[4];
                const double offsets[4] = {-2 * h, -h, h, 2 * h};
                for (int j = 0; j < 4; j++) {
                    *x = saved + offsets[j];
                    loss_at[j] = reference_forward(m, params.data(), tokens.data(), cs.noise);
                }
                *x = saved;
                fd.push_back((loss_at[0] - 8 * loss_at[1] + 8 * loss_at[2] - loss_at[3]) / (12 * h));
                an.push_back(grads[p.offset + i]);
            }
            double e = max_rel_err(an.data(), fd.data(), fd.size());
            printf("  %-16s %-10s %.2e\n", p.name.c_str(), param_shape_string(p).c_str(), e);
            if (!(e <= worst)) worst = e;
        }
        r.check(worst <= 1e-5, "%s: worst finite-difference rel err over all %zu tensors %.2e <= 1e-5", cs.name,
                t.tensors.size(), worst);
    }
}

// ---------------------------------------------------------------- state-gradient clipping

// A small dense matrix for the unrolled computation below.
struct Mat {
    int rows, cols;
    std::vector<double> a;
    Mat(int r_, int c_) : rows(r_), cols(c_), a((size_t)r_ * c_, 0.0) {}
    double& operator()(int i, int j) { return a[(size_t)i * cols + j]; }
    double operator()(int i, int j) const { return a[(size_t)i * cols + j]; }
};
static Mat matmul(const Mat& x, const Mat& y) {
    Mat z(x.rows, y.cols);
    for (int i = 0; i < x.rows; i++)
        for (int j = 0; j < y.cols; j++)
            for (int k = 0; k < x.cols; k++) z(i, j) += x(i, k) * y(k, j);
    return z;
}
static Mat transpose(const Mat& x) {
    Mat z(x.cols, x.rows);
    for (int i = 0; i < x.rows; i++)
        for (int j = 0; j < x.cols; j++) z(j, i) = x(i, j);
    return z;
}
static Mat outer(const std::vector<double>& u, const std::vector<double>& w) {
    Mat z((int)u.size(), (int)w.size());
    for (int i = 0; i < z.rows; i++)
        for (int j = 0; j < z.cols; j++) z(i, j) = u[i] * w[j];
    return z;
}
static Mat combine(double s, const Mat& x, double t, const Mat& y) {
    Mat z(x.rows, x.cols);
    for (size_t i = 0; i < z.a.size(); i++) z.a[i] = s * x.a[i] + t * y.a[i];
    return z;
}

// docs/model.md's clamp rule written out step by step for T = 3 (K = 3, V = 2, one head), from whole
// matrices, and compared with m2rnn_scan_backward. The clip is small enough that it bites. With random_h0 the
// recurrence starts from a random H_{−1} (as under --state-noise), which step 0's dW and df terms then read.
static void test_state_gradient_clipping(TestReport& r, bool random_h0) {
    const int T = 3, K = 3, V = 2;
    Random rng(random_h0 ? 43 : 42);
    std::vector<std::vector<double>> q(T, std::vector<double>(K)), k = q, v(T, std::vector<double>(V)), dy = v;
    std::vector<double> f(T);
    Mat W(V, V);
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < K; i++) { q[t][i] = rng.normal(); k[t][i] = rng.normal(); }
        for (int j = 0; j < V; j++) { v[t][j] = rng.normal(); dy[t][j] = rng.normal(); }
        f[t] = rng.uniform(0.2, 0.8);
    }
    for (double& w : W.a) w = rng.normal();
    const double clip = 0.05;
    Mat H0(K, V);  // H_{-1}
    if (random_h0)
        for (double& h : H0.a) h = rng.uniform(-0.9, 0.9);

    // forward, unrolled
    std::vector<Mat> H, Z;
    Mat Hprev = H0;
    for (int t = 0; t < T; t++) {
        Mat pre = combine(1, matmul(Hprev, W), 1, outer(k[t], v[t]));
        Mat z(K, V);
        for (size_t i = 0; i < z.a.size(); i++) z.a[i] = tanh(pre.a[i]);
        Hprev = combine(f[t], Hprev, 1 - f[t], z);
        Z.push_back(z);
        H.push_back(Hprev);
    }
    auto clamp = [&](Mat x, int& bites) {
        for (double& e : x.a) {
            if (fabs(e) > clip) bites++;
            e = fmax(-clip, fmin(clip, e));
        }
        return x;
    };
    auto dA_of = [&](const Mat& G, int t) {  // ((1 − f_t) G_t) ⊙ (1 − Z_t²)
        Mat d(K, V);
        for (size_t i = 0; i < d.a.size(); i++) d.a[i] = (1 - f[t]) * G.a[i] * (1 - Z[t].a[i] * Z[t].a[i]);
        return d;
    };
    int bites = 0;
    Mat G2 = outer(q[2], dy[2]);
    Mat dA2 = dA_of(G2, 2);
    Mat C1 = combine(f[2], G2, 1, matmul(dA2, transpose(W)));
    Mat G1 = combine(1, outer(q[1], dy[1]), 1, clamp(C1, bites));
    Mat dA1 = dA_of(G1, 1);
    Mat C0 = combine(f[1], G1, 1, matmul(dA1, transpose(W)));
    Mat G0 = combine(1, outer(q[0], dy[0]), 1, clamp(C0, bites));
    Mat dA0 = dA_of(G0, 0);
    const Mat* Gs[T] = {&G0, &G1, &G2};
    const Mat* dAs[T] = {&dA0, &dA1, &dA2};
    Mat dW = combine(1, matmul(transpose(H[1]), dA2), 1, matmul(transpose(H[0]), dA1));
    dW = combine(1, dW, 1, matmul(transpose(H0), dA0));  // nothing when H_{-1} = 0
    std::vector<double> want_dq, want_dk, want_dv, want_df;
    for (int t = 0; t < T; t++) {
        Mat dqt = matmul(H[t], transpose(outer({1.0}, dy[t])));           // H_t dy_t
        Mat dkt = matmul(*dAs[t], transpose(outer({1.0}, v[t])));         // dA_t v_t
        Mat dvt = matmul(transpose(*dAs[t]), transpose(outer({1.0}, k[t])));  // dA_tᵀ k_t
        want_dq.insert(want_dq.end(), dqt.a.begin(), dqt.a.end());
        want_dk.insert(want_dk.end(), dkt.a.begin(), dkt.a.end());
        want_dv.insert(want_dv.end(), dvt.a.begin(), dvt.a.end());
        double s = 0;
        for (int i = 0; i < K; i++)
            for (int j = 0; j < V; j++) s += (*Gs[t])(i, j) * ((t > 0 ? H[t - 1] : H0)(i, j) - Z[t](i, j));
        want_df.push_back(s);
    }

    // the reference, with and without the clip: one batch row, one head, rows [q | k | v] of Cc = 2K + V channels
    const M2RNNLayout L{1, K, V, 1, 1};
    const int Cc = L.Cc();
    std::vector<double> qkv((size_t)T * Cc);
    for (int t = 0; t < T; t++) {
        std::copy(q[t].begin(), q[t].end(), qkv.begin() + (size_t)t * Cc + L.q_col(0));
        std::copy(k[t].begin(), k[t].end(), qkv.begin() + (size_t)t * Cc + L.k_col(0));
        std::copy(v[t].begin(), v[t].end(), qkv.begin() + (size_t)t * Cc + L.v_col(0));
    }
    std::vector<double> dyf;
    for (int t = 0; t < T; t++) dyf.insert(dyf.end(), dy[t].begin(), dy[t].end());
    std::vector<double> Hs(T * K * V), Zs(T * K * V), y(T * V);
    const double* h0 = random_h0 ? H0.a.data() : nullptr;
    m2rnn_scan_forward(y.data(), Hs.data(), Zs.data(), qkv.data(), f.data(), W.a.data(), h0, L, 1, T);
    double e_H = 0;
    for (int t = 0; t < T; t++) e_H = fmax(e_H, max_rel_err(Hs.data() + (size_t)t * K * V, H[t].a.data(), K * V));
    // out: dq, dk, dv (columns of dqkv), df, dW
    auto run_backward = [&](double c, std::vector<double>* out) {
        std::vector<double> dqkv((size_t)T * Cc, 0.0);
        out[3].assign(T, 0);
        out[4].assign(V * V, 0);
        m2rnn_scan_backward(dqkv.data(), out[3].data(), out[4].data(), dyf.data(), qkv.data(), f.data(), W.a.data(),
                            h0, Hs.data(), Zs.data(), c, L, 1, T);
        const int begin[3] = {L.q_col(0), L.k_col(0), L.v_col(0)}, width[3] = {K, K, V};
        for (int part = 0; part < 3; part++) {
            out[part].clear();
            for (int t = 0; t < T; t++)
                out[part].insert(out[part].end(), dqkv.begin() + (size_t)t * Cc + begin[part],
                                 dqkv.begin() + (size_t)t * Cc + begin[part] + width[part]);
        }
    };
    std::vector<double> clipped[5], exact[5];
    run_backward(clip, clipped);
    run_backward(0.0, exact);
    double e = 0;
    e = fmax(e, max_rel_err(clipped[0].data(), want_dq.data(), want_dq.size()));
    e = fmax(e, max_rel_err(clipped[1].data(), want_dk.data(), want_dk.size()));
    e = fmax(e, max_rel_err(clipped[2].data(), want_dv.data(), want_dv.size()));
    e = fmax(e, max_rel_err(clipped[3].data(), want_df.data(), want_df.size()));
    e = fmax(e, max_rel_err(clipped[4].data(), dW.a.data(), dW.a.size()));
    const char* from = random_h0 ? "from a random H_{-1}" : "from H_{-1} = 0";
    printf("state-gradient clipping (T=%d, K=%d, V=%d, c=%g, %s): %d of %d carried elements clamped\n", T, K, V,
           clip, from, bites, 2 * K * V);
    r.check(bites > 0, "the clip bites (%s): %d carried elements clamped", from, bites);
    r.check(e_H <= 1e-15, "scan forward %s vs the unrolled recurrence: H_t max rel err %.2e <= 1e-15", from, e_H);
    r.check(e <= 1e-13, "clipped scan backward %s vs the unrolled clamp rule: max rel err over dq, dk, dv, df, dW "
            "%.2e <= 1e-13", from, e);
    double diff = max_rel_err(clipped[4].data(), exact[4].data(), V * V);
    diff = fmax(diff, max_rel_err(clipped[1].data(), exact[1].data(), T * K));
    r.check(diff > 1e-3, "clipped gradient differs from the exact one (%s): dW, dk rel diff %.2e > 1e-3", from, diff);
}

// ---------------------------------------------------------------- the random initial state of --state-noise

// m2rnn_initial_state_fill's draws (B=2, N=3, K=16, V=8, amplitude 0.5): within [−A, A), of mean ~0 and variance
// ~A²/3 (a uniform's), the same in float and double, and fresh for another layer and another key.
static void test_state_noise_draws(TestReport& r) {
    const M2RNNLayout L{3, 16, 8, 1, 1};
    const int B = 2;
    const size_t n = (size_t)B * L.N * L.K * L.V;
    const StateNoise noise{0.5f, 1234}, other_key{0.5f, 1235};
    std::vector<double> layer1(n), layer2(n), keyed(n);
    std::vector<float> layer1_float(n);
    m2rnn_initial_state_fill(layer1.data(), noise, 1, L, B);
    m2rnn_initial_state_fill(layer1_float.data(), noise, 1, L, B);
    m2rnn_initial_state_fill(layer2.data(), noise, 2, L, B);
    m2rnn_initial_state_fill(keyed.data(), other_key, 1, L, B);
    double lo = 1, hi = -1, mean = 0, var = 0;
    size_t float_differs = 0, same_layer2 = 0, same_key = 0;
    for (size_t e = 0; e < n; e++) {
        lo = fmin(lo, layer1[e]);
        hi = fmax(hi, layer1[e]);
        mean += layer1[e] / n;
        var += layer1[e] * layer1[e] / n;
        float_differs += (double)layer1_float[e] != layer1[e];
        same_layer2 += layer2[e] == layer1[e];
        same_key += keyed[e] == layer1[e];
    }
    const double A = noise.amplitude, sd_mean = A / sqrt(3.0 * n);  // the mean's standard deviation
    printf("state noise draws, B=%d N=%d K=%d V=%d, amplitude %g: %zu elements in [%.4f, %.4f], mean %.4f, "
           "variance %.4f (A²/3 = %.4f)\n", B, L.N, L.K, L.V, A, n, lo, hi, mean, var - mean * mean, A * A / 3);
    r.check(lo >= -A && hi < A && fabs(mean) < 4 * sd_mean && fabs(var - mean * mean - A * A / 3) < 0.15 * A * A / 3,
            "initial states uniform in [-%g, %g): min %.4f, max %.4f, mean %.4f (|mean| < %.4f), variance %.4f "
            "(A²/3 %.4f within 15%%)", A, A, lo, hi, mean, 4 * sd_mean, var - mean * mean, A * A / 3);
    r.check(float_differs == 0, "initial states in float and double identical: %zu of %zu elements differ",
            float_differs, n);
    r.check(same_layer2 == 0 && same_key == 0, "another layer, another key draw other states: %zu and %zu of %zu "
            "elements equal", same_layer2, same_key, n);
}

// ---------------------------------------------------------------- a short training run

static void test_reference_training(TestReport& r) {
    Config c = tiny_config("MAM", 4, 1, 0);
    c.vocab = 50257; c.Vp = config_padded_vocab(c.vocab);
    c.clip = 1.0;
    const int B = 4, T = 32, steps = 30;
    c.T = T;
    DataLoader dl;
    std::string err;
    const char* path = "data/tinyshakespeare/tiny_shakespeare_train.bin";
    if (!r.check(dataloader_open(dl, path, B, T, c.vocab, 1337, err), "open %s %s", path, err.c_str())) return;
    ParameterTable t = parameter_table_build(c);
    std::vector<double> params(t.total), grads(t.total), m(t.total, 0.0), v(t.total, 0.0);
    parameters_init(t, c, 1337, params.data());
    Reference<double> model;
    reference_init(model, c, B, T);
    std::vector<int> tokens((size_t)B * (T + 1));
    double first = 0, last = 0;
    printf("reference training: %s, B=%d T=%d, %zu parameters\n", config_describe(c).c_str(), B, T, t.total);
    for (int step = 0; step < steps; step++) {
        if (!dataloader_next(dl, tokens.data(), err)) { r.check(false, "next batch: %s", err.c_str()); break; }
        double loss = reference_forward(model, params.data(), tokens.data());
        std::fill(grads.begin(), grads.end(), 0.0);
        reference_backward(model, params.data(), grads.data());
        double norm = reference_grad_norm(grads.data(), t.total);
        double lr = lr_schedule(step, steps, 3, 1e-2, 0.1);
        reference_adamw(t, params.data(), grads.data(), m.data(), v.data(), step + 1, lr, 0.9, 0.95, 1e-10, 0.1,
                        norm > 1.0 ? 1.0 / norm : 1.0);
        if (step % 5 == 0 || step == steps - 1) printf("  step %2d loss %.4f grad norm %.3f lr %.2e\n", step, loss, norm, lr);
        if (step < 3) first += loss / 3;
        if (step >= steps - 3) last += loss / 3;
    }
    dataloader_close(dl);
    r.check(last < first - 2.0, "training loss falls: first 3 steps %.3f, last 3 steps %.3f (must drop by > 2)", first,
            last);
}

// parameters_init on one thread and on three: the same bits; and the values of one generator drawn in order: wte's
// (two draws each: Random::normal; 50304 × 32 values, seven tasks of parameters_init), then the next tensor that draws
// (ln1 draws nothing), its first value
static void test_parameters_init_threads(TestReport& r) {
    Config c = tiny_config("MAM", 4, 1, 0);
    c.vocab = 50257; c.Vp = config_padded_vocab(c.vocab);
    const ParameterTable t = parameter_table_build(c);
    std::vector<double> one(t.total), three(t.total);
    const int threads = parallel_threads();
    parallel_set_threads(1);
    parameters_init(t, c, 99, one.data());
    parallel_set_threads(3);
    parameters_init(t, c, 99, three.data());
    parallel_set_threads(threads);
    size_t differ = 0;
    for (size_t i = 0; i < t.total; i++) differ += memcmp(&one[i], &three[i], sizeof(double)) != 0;
    r.check(differ == 0, "parameters_init on 1 and 3 threads: %zu of %zu values differ", differ, t.total);
    Random rng(99);
    const ParamTensor& wte = t.tensors[0];
    size_t wrong = 0;
    for (size_t i = 0; i < wte.numel; i++) wrong += one[wte.offset + i] != 0.02 * rng.normal();
    size_t next = 1;
    while (t.tensors[next].init != INIT_NORMAL) next++;
    const ParamTensor& p = t.tensors[next];
    const double drawn = 0.02 * rng.normal();
    r.check(wrong == 0 && one[p.offset] == drawn, "parameters_init against one generator drawn in order: %zu of %zu "
            "wte values differ; %s[0] %.17g, drawn next %.17g", wrong, wte.numel, p.name.c_str(), one[p.offset], drawn);
}

void test_reference(TestReport& r) {
    test_parameters_init_threads(r);
    test_golden(r);
    test_finite_differences(r);
    test_state_gradient_clipping(r, false);
    test_state_gradient_clipping(r, true);
    test_state_noise_draws(r);
    test_reference_training(r);
}
