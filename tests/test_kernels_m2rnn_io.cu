// GPU checks of kernels/m2rnn_input.cuh, kernels/m2rnn_gate.cuh and kernels/adamw.cuh against the reference
// steps (double precision) on fresh random inputs, rounded to what the kernels read before the reference sees
// them. Outputs start poisoned, so an unwritten element fails; accumulated outputs start from known random
// values of the increment's scale, so overwriting instead of adding fails; columns a kernel must leave alone
// are checked to be unchanged.
#include "test_kernels_m2rnn_io.h"

#include <cmath>
#include <cstdio>
#include <vector>

#include "../kernels/adamw.cuh"
#include "../kernels/m2rnn_gate.cuh"
#include "../kernels/m2rnn_input.cuh"
#include "../model/reference.h"
#include "gpu_check.cuh"

namespace {

struct MixerShape {
    int B, T;
    M2RNNLayout L;
    int n_pos() const { return B * T; }
};

const MixerShape SHAPES[] = {
    {2, 29, {4, 8, 4, 1, 1}},     // tiny, shared q/k
    {3, 65, {3, 6, 5, 3, 3}},     // per-head q/k; the last time chunk of the conv is one step long
    {2, 101, {84, 64, 16, 1, 1}}, // the paper's 410M mixer: gate rows of 1344
};

void describe(char* buf, size_t size, const MixerShape& s) {
    snprintf(buf, size, "B=%d T=%d N=%d K=%d V=%d Nq=%d Nk=%d", s.B, s.T, s.L.N, s.L.K, s.L.V, s.L.Nq, s.L.Nk);
}

// Elements of columns [c0, c1) of a (rows, stride) floatX device tensor that are no longer poison (all 0xFF).
size_t count_written(const floatX* d, size_t rows, int stride, int c0, int c1) {
    std::vector<floatX> h(rows * stride);
    cudaCheck(cudaDeviceSynchronize());
    cudaCheck(cudaMemcpy(h.data(), d, h.size() * sizeof(floatX), cudaMemcpyDeviceToHost));
    size_t count = 0;
    for (size_t i = 0; i < rows; i++)
        for (int c = c0; c < c1; c++) {
            const unsigned char* bytes = reinterpret_cast<const unsigned char*>(&h[i * stride + c]);
            for (size_t k = 0; k < sizeof(floatX); k++)
                if (bytes[k] != 0xFF) { count++; break; }
        }
    return count;
}


std::vector<double> random_params(size_t n, Random& rng, double mean, double scale) {
    std::vector<double> x = random_vector(n, rng, scale);
    for (double& v : x) v += mean;
    round_to<float>(x);
    return x;
}

// ---------------------------------------------------------------- m2rnn_input

void test_input(TestReport& r, const MixerShape& s, Random& rng) {
    char shape[128];
    describe(shape, sizeof(shape), s);
    const M2RNNLayout& L = s.L;
    const int B = s.B, T = s.T, N = L.N, Cc = L.Cc(), Cp = L.Cp(), Cps = L.Cp_stride();
    const size_t BT = s.n_pos();

    std::vector<double> proj = random_vector(BT * Cp, rng, 1.0);
    round_to<floatX>(proj);
    std::vector<double> conv = random_params((size_t)Cc * CONV_WIDTH, rng, 0.0, 0.5);
    std::vector<double> A_log(N), dt_bias(N);
    for (int n = 0; n < N; n++) {
        A_log[n] = log(rng.uniform(0.5, 4.0));
        dt_bias[n] = rng.normal();
    }
    round_to<float>(A_log);
    round_to<float>(dt_bias);

    // forward
    std::vector<double> pre(BT * Cc), qkv(BT * Cc), f(BT * N);
    m2rnn_input_forward(qkv.data(), pre.data(), f.data(), proj.data(), conv.data(), A_log.data(), dt_bias.data(), L, B,
                        T);

    floatX* d_proj = device_upload<floatX>(padded_rows(proj, BT, Cp, Cps));
    float* d_conv = device_upload<float>(conv);
    float* d_A_log = device_upload<float>(A_log);
    float* d_dt_bias = device_upload<float>(dt_bias);
    floatX* d_qkv = device_poisoned<floatX>(BT * Cc);
    float* d_f = device_poisoned<float>(BT * N);
    m2rnn_input_forward(d_qkv, d_f, d_proj, d_conv, d_A_log, d_dt_bias, L, B, T, 0);
    check_err(r, device_download(d_qkv, BT * Cc), qkv, "m2rnn_input_forward qkv", shape);
    check_err(r, device_download(d_f, BT * N), f, "m2rnn_input_forward f", shape);

    // backward
    std::vector<double> dqkv = random_vector(BT * Cc, rng, 1.0), df = random_vector(BT * N, rng, 1.0);
    round_to<float>(dqkv);
    round_to<float>(df);
    std::vector<double> dproj(BT * Cp, 0.0), dconv_inc((size_t)Cc * CONV_WIDTH, 0.0), dA_log_inc(N, 0.0),
        ddt_bias_inc(N, 0.0);
    m2rnn_input_backward(dproj.data(), dconv_inc.data(), dA_log_inc.data(), ddt_bias_inc.data(), dqkv.data(), df.data(),
                         pre.data(), proj.data(), conv.data(), A_log.data(), dt_bias.data(), L, B, T);
    const std::vector<double> dconv0 = prefill<float>(dconv_inc, rng), dA_log0 = prefill<float>(dA_log_inc, rng),
                              ddt_bias0 = prefill<float>(ddt_bias_inc, rng);

    float* d_dqkv = device_upload<float>(dqkv);
    float* d_df = device_upload<float>(df);
    floatX* d_dproj = device_poisoned<floatX>(BT * Cps);
    float* d_dconv = device_upload<float>(dconv0);
    float* d_dA_log = device_upload<float>(dA_log0);
    float* d_ddt_bias = device_upload<float>(ddt_bias0);
    float* d_scratch = device_poisoned<float>(m2rnn_input_backward_scratch_floats(L, B, T));
    m2rnn_input_backward(d_dproj, d_dconv, d_dA_log, d_ddt_bias, d_scratch, d_dqkv, d_df, d_proj, d_conv, d_A_log,
                         d_dt_bias, L, B, T, 0);
    const std::vector<double> got_dproj = device_download(d_dproj, BT * Cps);
    check_err(r, columns(got_dproj, BT, Cps, 0, Cc), columns(dproj, BT, Cp, 0, Cc),
              "m2rnn_input_backward dproj q|k|v columns", shape);
    check_err(r, columns(got_dproj, BT, Cps, Cc, Cc + N), columns(dproj, BT, Cp, Cc, Cc + N),
              "m2rnn_input_backward dproj f_raw columns", shape);
    const size_t touched = count_written(d_dproj, BT, Cps, Cc + N, Cps);
    r.check(touched == 0, "m2rnn_input_backward dproj g and padding columns left alone (%s): %zu of %zu written",
            shape, touched, BT * (Cps - Cc - N));
    check_err(r, device_download(d_dconv, dconv0.size()), plus(dconv0, dconv_inc), "m2rnn_input_backward dconv +=",
              shape);
    check_err(r, device_download(d_dA_log, N), plus(dA_log0, dA_log_inc), "m2rnn_input_backward dA_log +=", shape);
    check_err(r, device_download(d_ddt_bias, N), plus(ddt_bias0, ddt_bias_inc), "m2rnn_input_backward ddt_bias +=",
              shape);

    for (void* p : {(void*)d_proj, (void*)d_conv, (void*)d_A_log, (void*)d_dt_bias, (void*)d_qkv, (void*)d_f,
                    (void*)d_dqkv, (void*)d_df, (void*)d_dproj, (void*)d_dconv, (void*)d_dA_log, (void*)d_ddt_bias,
                    (void*)d_scratch})
        cudaCheck(cudaFree(p));
}

// ---------------------------------------------------------------- m2rnn_gate

void test_gate(TestReport& r, const MixerShape& s, Random& rng) {
    char shape[128];
    describe(shape, sizeof(shape), s);
    const M2RNNLayout& L = s.L;
    const int NV = L.NV(), Cc = L.Cc(), Cp = L.Cp(), Cps = L.Cp_stride(), v_col = L.v_col(0), g_col = L.g_col(0),
              n_pos = s.n_pos();
    const size_t BT = n_pos;

    std::vector<double> y = random_vector(BT * NV, rng, 1.0), qkv = random_vector(BT * Cc, rng, 1.0),
                        proj = random_vector(BT * Cp, rng, 1.0);
    round_to<floatX>(y);
    round_to<floatX>(qkv);
    round_to<floatX>(proj);
    const std::vector<double> skip = random_params(NV, rng, 1.0, 0.5), gnorm = random_params(NV, rng, 1.0, 0.5);

    // forward
    std::vector<double> gated(BT * NV), out(BT * NV), rstd(BT);
    m2rnn_gate_forward(out.data(), rstd.data(), gated.data(), y.data(), qkv.data(), proj.data(), skip.data(),
                       gnorm.data(), L, n_pos);

    floatX* d_y = device_upload<floatX>(y);
    floatX* d_qkv = device_upload<floatX>(qkv);
    floatX* d_proj = device_upload<floatX>(padded_rows(proj, BT, Cp, Cps));
    float* d_skip = device_upload<float>(skip);
    float* d_gnorm = device_upload<float>(gnorm);
    floatX* d_out = device_poisoned<floatX>(BT * NV);
    float* d_rstd = device_poisoned<float>(BT);
    m2rnn_gate_forward(d_out, d_rstd, d_y, d_qkv, d_proj, d_skip, d_gnorm, L, n_pos, 0);
    check_err(r, device_download(d_out, BT * NV), out, "m2rnn_gate_forward out", shape);
    check_err(r, device_download(d_rstd, BT), rstd, "m2rnn_gate_forward rstd", shape);

    // backward, from the reference's rstd as the kernel reads it (fp32)
    std::vector<double> dout = random_vector(BT * NV, rng, 1.0);
    round_to<floatX>(dout);
    round_to<float>(rstd);
    std::vector<double> dgnorm_inc(NV, 0.0), dy(BT * NV), dqkv_inc(BT * Cc, 0.0), dproj(BT * Cp, 0.0),
        dskip_inc(NV, 0.0);
    m2rnn_gate_backward(dy.data(), dqkv_inc.data(), dproj.data(), dskip_inc.data(), dgnorm_inc.data(), dout.data(),
                        y.data(), qkv.data(), proj.data(), skip.data(), gnorm.data(), gated.data(), rstd.data(), L,
                        n_pos);
    const std::vector<double> dqkv0 = prefill<float>(dqkv_inc, rng), dskip0 = prefill<float>(dskip_inc, rng),
                              dgnorm0 = prefill<float>(dgnorm_inc, rng);

    floatX* d_dout = device_upload<floatX>(dout);
    float* d_rstd_ref = device_upload<float>(rstd);
    floatX* d_dy = device_poisoned<floatX>(BT * NV);
    float* d_dqkv = device_upload<float>(dqkv0);
    floatX* d_dproj = device_poisoned<floatX>(BT * Cps);
    float* d_dskip = device_upload<float>(dskip0);
    float* d_dgnorm = device_upload<float>(dgnorm0);
    float* d_scratch = device_poisoned<float>(m2rnn_gate_backward_scratch_floats(L, n_pos));
    m2rnn_gate_backward(d_dy, d_dqkv, d_dproj, d_dskip, d_dgnorm, d_scratch, d_dout, d_y, d_qkv, d_proj, d_skip,
                        d_gnorm, d_rstd_ref, L, n_pos, 0);
    check_err(r, device_download(d_dy, BT * NV), dy, "m2rnn_gate_backward dy", shape);
    const std::vector<double> got_dqkv = device_download(d_dqkv, BT * Cc), want_dqkv = plus(dqkv0, dqkv_inc);
    check_err(r, columns(got_dqkv, BT, Cc, v_col, Cc), columns(want_dqkv, BT, Cc, v_col, Cc),
              "m2rnn_gate_backward dqkv v columns +=", shape);
    size_t changed = 0;
    for (size_t i = 0; i < BT; i++)
        for (int c = 0; c < v_col; c++) changed += got_dqkv[i * Cc + c] != dqkv0[i * Cc + c];
    r.check(changed == 0, "m2rnn_gate_backward dqkv q|k columns left alone (%s): %zu of %zu changed", shape, changed,
            BT * v_col);
    const std::vector<double> got_dproj = device_download(d_dproj, BT * Cps);
    check_err(r, columns(got_dproj, BT, Cps, g_col, Cp), columns(dproj, BT, Cp, g_col, Cp),
              "m2rnn_gate_backward dproj g columns", shape);
    const size_t touched = count_written(d_dproj, BT, Cps, 0, g_col) + count_written(d_dproj, BT, Cps, Cp, Cps);
    r.check(touched == 0, "m2rnn_gate_backward dproj q|k|v|f_raw and padding columns left alone (%s): %zu of %zu "
            "written", shape, touched, BT * (g_col + Cps - Cp));
    check_err(r, device_download(d_dskip, NV), plus(dskip0, dskip_inc), "m2rnn_gate_backward dD_skip +=", shape);
    check_err(r, device_download(d_dgnorm, NV), plus(dgnorm0, dgnorm_inc), "m2rnn_gate_backward dgnorm +=", shape);

    for (void* p : {(void*)d_y, (void*)d_qkv, (void*)d_proj, (void*)d_skip, (void*)d_gnorm, (void*)d_out,
                    (void*)d_rstd, (void*)d_dout, (void*)d_rstd_ref, (void*)d_dy, (void*)d_dqkv, (void*)d_dproj,
                    (void*)d_dskip, (void*)d_dgnorm, (void*)d_scratch})
        cudaCheck(cudaFree(p));
}

// ---------------------------------------------------------------- adamw

void test_global_norm(TestReport& r, Random& rng) {
    const size_t n = 1000003;
    std::vector<double> grads = random_vector(n, rng, 1.0);
    round_to<float>(grads);
    double want = 0;
    for (double g : grads) want += g * g;
    float* d_grads = device_upload<float>(grads);
    float* d_norm = device_poisoned<float>(1);
    float* d_scratch = device_poisoned<float>(global_norm_scratch_floats());
    global_norm_squared(d_norm, d_scratch, d_grads, n, 0);
    const double got = device_download(d_norm, 1)[0];
    const double err = fabs(got - want) / want;
    r.check(err <= GPU_TOLERANCE, "global_norm_squared (n=%zu) %.6e vs %.6e rel err %.1e <= %.0e", n, got, want, err,
            GPU_TOLERANCE);
    cudaCheck(cudaFree(d_grads));
    cudaCheck(cudaFree(d_norm));
    cudaCheck(cudaFree(d_scratch));
}

// Three AdamW steps on one tensor of n elements (steps 5, 6, 7, from random moments), the gradient norm and
// clip factor computed on the device each step, against reference_grad_norm + reference_adamw.
// n a multiple of 4 takes the kernel's 16-byte path, others the 1-wide one.
void test_adamw(TestReport& r, Random& rng, size_t n, bool decay, bool clip_bites, bool with_lowp) {
    const float lr = 1e-2f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-10f, weight_decay = 0.1f;
    const double grad_scale_std = 1.0;  // |grad| ≈ sqrt(n) ≈ 71
    const float max_norm = clip_bites ? 1.0f : 1000.0f;

    ParameterTable table;
    ParamTensor p{};
    p.name = "table";
    p.kind = P_W;
    p.layer = 0;
    p.shape[0] = (int)n; p.shape[1] = p.shape[2] = 1;
    p.ndim = 1;
    p.numel = n;
    p.offset = p.file_offset = 0;
    p.init = INIT_NORMAL;
    p.decay = decay;
    table.tensors = {p};
    table.total = table.count = n;

    // moments as training leaves them: m² <= v
    std::vector<double> params = random_params(n, rng, 0.0, 1.0), m = random_params(n, rng, 0.0, 0.01),
                        v = random_vector(n, rng, 0.01);
    for (size_t i = 0; i < n; i++) v[i] = m[i] * m[i] + v[i] * v[i];
    round_to<float>(v);
    const std::vector<double> params0 = params;

    float* d_params = device_upload<float>(params);
    float* d_m = device_upload<float>(m);
    float* d_v = device_upload<float>(v);
    floatX* d_lowp = with_lowp ? device_poisoned<floatX>(n) : nullptr;
    float* d_grads = device_poisoned<float>(n);
    float* d_norm = device_poisoned<float>(1);
    float* d_scratch = device_poisoned<float>(global_norm_scratch_floats());
    double min_norm = INFINITY, max_seen = 0;
    for (int step = 5; step <= 7; step++) {
        std::vector<double> grads = random_vector(n, rng, grad_scale_std);
        round_to<float>(grads);
        std::vector<float> grads_f(grads.begin(), grads.end());
        cudaCheck(cudaMemcpy(d_grads, grads_f.data(), n * sizeof(float), cudaMemcpyHostToDevice));
        global_norm_squared(d_norm, d_scratch, d_grads, n, 0);
        adamw_update(d_params, d_lowp, d_grads, d_m, d_v, n, step, lr, beta1, beta2, eps, decay ? weight_decay : 0.0f,
                     d_norm, max_norm, 0);
        const double norm = reference_grad_norm(grads.data(), n);
        min_norm = fmin(min_norm, norm);
        max_seen = fmax(max_seen, norm);
        reference_adamw(table, params.data(), grads.data(), m.data(), v.data(), step, lr, beta1, beta2, eps,
                        weight_decay, fmin(1.0, max_norm / norm));
    }
    char what[160];
    snprintf(what, sizeof(what), "n %zu, decay %s, |g| %.1f..%.1f %s max_norm %.0f%s", n, decay ? "on" : "off",
             min_norm, max_seen, clip_bites ? ">" : "<", max_norm, with_lowp ? "" : ", no floatX copy");
    r.check(clip_bites ? min_norm > max_norm : max_seen < max_norm, "adamw test case clips as intended (%s)", what);

    // the parameters move by ~lr per step: compare the moves, not the parameters, so a missing update shows
    std::vector<double> got_params = device_download(d_params, n), got_move(n), want_move(n);
    for (size_t i = 0; i < n; i++) {
        got_move[i] = got_params[i] - params0[i];
        want_move[i] = params[i] - params0[i];
    }
    check_err(r, got_move, want_move, "adamw_update params - params_before", what);
    check_err(r, device_download(d_m, n), m, "adamw_update m", what);
    check_err(r, device_download(d_v, n), v, "adamw_update v", what);
    if (with_lowp) check_err(r, device_download(d_lowp, n), params, "adamw_update params_lowp", what);

    for (void* q : {(void*)d_params, (void*)d_m, (void*)d_v, (void*)d_lowp, (void*)d_grads, (void*)d_norm,
                    (void*)d_scratch})
        cudaCheck(cudaFree(q));
}

}  // namespace

void test_m2rnn_io_kernels(TestReport& r) {
    const unsigned long long seed = (unsigned long long)test_seed();
    printf("m2rnn_input / m2rnn_gate / adamw kernels (%s), seed %llu\n", PRECISION_NAME, seed);
    Random rng(seed);
    for (const MixerShape& s : SHAPES) test_input(r, s, rng);
    for (const MixerShape& s : SHAPES) test_gate(r, s, rng);
    test_global_norm(r, rng);
    test_adamw(r, rng, 5003, true, true, true);
    test_adamw(r, rng, 5003, false, false, false);
    test_adamw(r, rng, 5004, true, true, true);
    test_adamw(r, rng, 4096, false, false, false);
}
