// GPU checks of sum_partials (kernels/common.cuh) and of kernels/encoder.cuh, rmsnorm.cuh, matmul.cuh, swiglu.cuh and
// crossentropy.cuh against the reference steps (double precision) on fresh random inputs, rounded to what the kernels
// read before the reference sees them.
// Outputs start poisoned (NaN), so an unwritten element fails; accumulated outputs start from known random
// values of the increment's scale, so overwriting instead of adding fails. Sizes are not multiples of 32 or of
// the 16-byte pack, except where the kernel requires it (Vp), and include the model's realistic ones.
#include "test_kernels_small.h"

#include <cmath>
#include <cstdio>
#include <vector>

#include "../kernels/crossentropy.cuh"
#include "../kernels/encoder.cuh"
#include "../kernels/matmul.cuh"
#include "../kernels/rmsnorm.cuh"
#include "../kernels/swiglu.cuh"
#include "../model/reference.h"
#include "gpu_check.cuh"
#include "random_inputs.h"

namespace {

template <typename T>
std::vector<double> random_rounded(size_t n, Random& rng, double scale, double mean = 0.0) {
    std::vector<double> x = random_vector(n, rng, scale);
    for (double& v : x) v += mean;
    round_to<T>(x);
    return x;
}

int* device_tokens(const std::vector<int>& tokens) {
    int* d = nullptr;
    cudaCheck(cudaMalloc(&d, tokens.size() * sizeof(int)));
    cudaCheck(cudaMemcpy(d, tokens.data(), tokens.size() * sizeof(int), cudaMemcpyHostToDevice));
    return d;
}

// Elements that differ, NaN matching NaN.
size_t count_changed(const std::vector<double>& got, const std::vector<double>& want) {
    size_t count = 0;
    for (size_t i = 0; i < got.size(); i++)
        if (!(got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i])))) count++;
    return count;
}

// ---------------------------------------------------------------- encoder

void test_encoder(TestReport& r, int B, int T, int D, int vocab, int Vp, Random& rng) {
    char shape[96];
    snprintf(shape, sizeof(shape), "B=%d T=%d D=%d vocab=%d Vp=%d", B, T, D, vocab, Vp);
    const size_t BTD = (size_t)B * T * D;
    const std::vector<int> tokens = random_tokens(B, T, vocab, rng.next_u64());
    const std::vector<double> wte = random_rounded<floatX>((size_t)Vp * D, rng, 1.0);
    const std::vector<double> dx = random_rounded<floatX>(BTD, rng, 1.0);

    std::vector<double> x(BTD), increment((size_t)Vp * D, 0.0);
    encoder_forward(x.data(), wte.data(), tokens.data(), B, T, D);
    encoder_backward(increment.data(), dx.data(), tokens.data(), B, T, D);
    const std::vector<double> dwte0 = prefill<float>(increment, rng);

    std::vector<int> groups(encoder_groups_ints(B, T));
    const int n_groups = encoder_group_positions(groups.data(), tokens.data(), B, T);
    int* d_tokens = device_tokens(tokens);
    int* d_groups = device_tokens(groups);
    floatX* d_wte = device_upload<floatX>(wte);
    floatX* d_dx = device_upload<floatX>(dx);
    floatX* d_x = device_poisoned<floatX>(BTD);
    float* d_dwte = device_upload<float>(dwte0);
    encoder_forward(d_x, d_wte, d_tokens, B, T, D, 0);
    encoder_backward(d_dwte, d_dx, d_groups, n_groups, B, T, D, 0);
    check_err(r, device_download(d_x, BTD), x, "encoder_forward x", shape);
    check_err(r, device_download(d_dwte, dwte0.size()), plus(dwte0, increment), "encoder_backward dwte (+=)", shape);

    for (void* p : {(void*)d_tokens, (void*)d_groups, (void*)d_wte, (void*)d_dx, (void*)d_x, (void*)d_dwte})
        cudaCheck(cudaFree(p));
}

// ---------------------------------------------------------------- sum_partials

// out += the column sums of (n_parts, n) fp32 partials, against a double sum (fp32 whatever the build: a tolerance
// a dropped or repeated part exceeds), and bitwise the same when run again.
void test_sum_partials(TestReport& r, int n_parts, size_t n, Random& rng) {
    char shape[64];
    snprintf(shape, sizeof(shape), "n_parts=%d n=%zu", n_parts, n);
    const double tolerance = 1e-5;
    const std::vector<double> partials = random_rounded<float>((size_t)n_parts * n, rng, 1.0);
    std::vector<double> sums(n, 0.0);
    for (int p = 0; p < n_parts; p++)
        for (size_t j = 0; j < n; j++) sums[j] += partials[(size_t)p * n + j];
    const std::vector<double> out0 = prefill<float>(sums, rng);

    float* d_partials = device_upload<float>(partials);
    float* d_out = device_upload<float>(out0);
    sum_partials(d_out, d_partials, n_parts, n, 0);
    const std::vector<double> got = device_download(d_out, n);
    const double err = max_rel_err(got.data(), plus(out0, sums).data(), n);
    r.check(err <= tolerance, "sum_partials out (+=) (%s) max rel err %.1e <= %.0e", shape, err, tolerance);
    cudaCheck(cudaFree(d_out));
    d_out = device_upload<float>(out0);
    sum_partials(d_out, d_partials, n_parts, n, 0);
    const size_t changed = count_changed(device_download(d_out, n), got);
    r.check(changed == 0, "sum_partials run again (%s): %zu sums differ bitwise", shape, changed);

    for (void* p : {(void*)d_partials, (void*)d_out}) cudaCheck(cudaFree(p));
}

// ---------------------------------------------------------------- rmsnorm

void test_rmsnorm(TestReport& r, int n, int C, Random& rng) {
    char shape[64];
    snprintf(shape, sizeof(shape), "n=%d C=%d", n, C);
    const size_t nC = (size_t)n * C;
    const std::vector<double> w = random_rounded<float>(C, rng, 0.5, 1.0);
    float* d_w = device_upload<float>(w);

    // rmsnorm_forward
    const std::vector<double> x = random_rounded<floatX>(nC, rng, 2.0);
    std::vector<double> out(nC), rstd(n);
    rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), n, C);
    floatX* d_x = device_upload<floatX>(x);
    floatX* d_out = device_poisoned<floatX>(nC);
    float* d_rstd = device_poisoned<float>(n);
    rmsnorm_forward(d_out, d_rstd, d_x, d_w, n, C, 0);
    check_err(r, device_download(d_out, nC), out, "rmsnorm_forward out", shape);
    check_err(r, device_download(d_rstd, n), rstd, "rmsnorm_forward rstd", shape);

    // rmsnorm_backward of that forward, dx overwritten and then accumulated
    std::vector<double> rstd_in = rstd;
    round_to<float>(rstd_in);
    const std::vector<double> dout = random_rounded<floatX>(nC, rng, 1.0);
    floatX* d_dout = device_upload<floatX>(dout);
    float* d_rstd_in = device_upload<float>(rstd_in);
    float* d_scratch = device_poisoned<float>(rmsnorm_backward_scratch_floats(n, C));
    for (bool accumulate : {false, true}) {
        char what[96];
        std::vector<double> dx(nC, 0.0), dw_increment(C, 0.0);
        rmsnorm_backward(dx.data(), dw_increment.data(), dout.data(), x.data(), w.data(), rstd_in.data(), n, C,
                         false);
        const std::vector<double> dx0 = prefill<floatX>(dx, rng), dw0 = prefill<float>(dw_increment, rng);
        floatX* d_dx = accumulate ? device_upload<floatX>(dx0) : device_poisoned<floatX>(nC);
        float* d_dw = device_upload<float>(dw0);
        rmsnorm_backward(d_dx, d_dw, d_scratch, d_dout, d_x, d_w, d_rstd_in, n, C, accumulate, 0);
        snprintf(what, sizeof(what), "rmsnorm_backward dx (%s)", accumulate ? "+=" : "=");
        check_err(r, device_download(d_dx, nC), accumulate ? plus(dx0, dx) : dx, what, shape);
        check_err(r, device_download(d_dw, C), plus(dw0, dw_increment), "rmsnorm_backward dw (+=)", shape);
        cudaCheck(cudaFree(d_dx));
        cudaCheck(cudaFree(d_dw));
    }

    for (void* p : {(void*)d_w, (void*)d_x, (void*)d_out, (void*)d_rstd, (void*)d_dout, (void*)d_rstd_in,
                    (void*)d_scratch})
        cudaCheck(cudaFree(p));
}

// ---------------------------------------------------------------- matmul

// The model's GEMMs (cuBLASLt): matmul_forward, matmul_forward_residual (the residual add in the epilogue, rounded
// once) and matmul_backward (dx overwritten, dW accumulated).
void test_matmul(TestReport& r, int n, int I, int O, Random& rng) {
    char shape[64];
    snprintf(shape, sizeof(shape), "n=%d I=%d O=%d", n, I, O);
    const std::vector<double> x = random_rounded<floatX>((size_t)n * I, rng, 1.0);
    const std::vector<double> W = random_rounded<floatX>((size_t)O * I, rng, 0.5);
    const std::vector<double> residual = random_rounded<floatX>((size_t)n * O, rng, 1.0);
    const std::vector<double> dout = random_rounded<floatX>((size_t)n * O, rng, 1.0);
    std::vector<double> out((size_t)n * O), joined((size_t)n * O), dx((size_t)n * I), dW_increment((size_t)O * I, 0.0);
    matmul_forward(out.data(), x.data(), W.data(), n, I, O);
    residual_forward(joined.data(), residual.data(), out.data(), joined.size());
    matmul_backward(dx.data(), dW_increment.data(), dout.data(), x.data(), W.data(), n, I, O);
    const std::vector<double> dW0 = prefill<float>(dW_increment, rng);

    Matmul mm;
    char* workspace = nullptr;
    cudaCheck(cudaMalloc(&workspace, MATMUL_WORKSPACE_BYTES));
    matmul_init(mm, workspace);
    floatX* d_x = device_upload<floatX>(x);
    floatX* d_W = device_upload<floatX>(W);
    floatX* d_residual = device_upload<floatX>(residual);
    floatX* d_dout = device_upload<floatX>(dout);
    floatX* d_out = device_poisoned<floatX>(out.size());
    floatX* d_joined = device_poisoned<floatX>(joined.size());
    floatX* d_dx = device_poisoned<floatX>(dx.size());
    float* d_dW = device_upload<float>(dW0);
    matmul_forward(mm, d_out, d_x, d_W, n, I, O, 0);
    matmul_forward_residual(mm, d_joined, d_residual, d_x, d_W, n, I, O, 0);
    matmul_backward(mm, d_dx, d_dW, d_dout, d_x, d_W, n, I, O, 0);
    check_err(r, device_download(d_out, out.size()), out, "matmul_forward out", shape);
    check_err(r, device_download(d_joined, joined.size()), joined, "matmul_forward_residual out", shape);
    check_err(r, device_download(d_dx, dx.size()), dx, "matmul_backward dx", shape);
    check_err(r, device_download(d_dW, dW0.size()), plus(dW0, dW_increment), "matmul_backward dW (+=)", shape);
    // in place, as the decoder runs it: out = out + x Wᵀ
    matmul_forward_residual(mm, d_residual, d_residual, d_x, d_W, n, I, O, 0);
    check_err(r, device_download(d_residual, joined.size()), joined, "matmul_forward_residual in place", shape);
    matmul_destroy(mm);

    for (void* p : {(void*)workspace, (void*)d_x, (void*)d_W, (void*)d_residual, (void*)d_dout, (void*)d_out,
                    (void*)d_joined, (void*)d_dx, (void*)d_dW})
        cudaCheck(cudaFree(p));
}

// ---------------------------------------------------------------- swiglu

void test_swiglu(TestReport& r, int n, int F, Random& rng) {
    char shape[64];
    snprintf(shape, sizeof(shape), "n=%d F=%d", n, F);
    const size_t nF = (size_t)n * F;
    const std::vector<double> up = random_rounded<floatX>(2 * nF, rng, 2.0);
    const std::vector<double> dh = random_rounded<floatX>(nF, rng, 1.0);
    std::vector<double> h(nF), dup(2 * nF);
    swiglu_forward(h.data(), up.data(), n, F);
    swiglu_backward(dup.data(), dh.data(), up.data(), n, F);

    floatX* d_up = device_upload<floatX>(up);
    floatX* d_dh = device_upload<floatX>(dh);
    floatX* d_h = device_poisoned<floatX>(nF);
    floatX* d_dup = device_poisoned<floatX>(2 * nF);
    swiglu_forward(d_h, d_up, n, F, 0);
    swiglu_backward(d_dup, d_dh, d_up, n, F, 0);
    check_err(r, device_download(d_h, nF), h, "swiglu_forward h", shape);
    check_err(r, device_download(d_dup, 2 * nF), dup, "swiglu_backward dup", shape);

    for (void* p : {(void*)d_up, (void*)d_dh, (void*)d_h, (void*)d_dup}) cudaCheck(cudaFree(p));
}

// ---------------------------------------------------------------- crossentropy

void test_crossentropy(TestReport& r, int B, int T, int vocab, int Vp, double scale, Random& rng) {
    char shape[96];
    snprintf(shape, sizeof(shape), "B=%d T=%d vocab=%d Vp=%d", B, T, vocab, Vp);
    const int n = B * T;
    const size_t nV = (size_t)n * Vp;
    // the padded columns hold NaN: the kernel must not let them into the softmax
    std::vector<double> logits = random_vector(nV, rng, scale);
    for (int i = 0; i < n; i++)
        for (int j = vocab; j < Vp; j++) logits[(size_t)i * Vp + j] = NAN;
    round_to<floatX>(logits);
    const std::vector<int> tokens = random_tokens(B, T, vocab, rng.next_u64());

    std::vector<double> probs(nV), dlogits(nV), losses(n);
    crossentropy_forward(probs.data(), logits.data(), tokens.data(), B, T, vocab, Vp);
    crossentropy_backward(dlogits.data(), probs.data(), tokens.data(), B, T, Vp);
    for (int i = 0; i < n; i++) losses[i] = -log(probs[(size_t)i * Vp + tokens[i + i / T + 1]]);

    int* d_tokens = device_tokens(tokens);
    floatX* d_logits = device_upload<floatX>(logits);
    float* d_losses = device_poisoned<float>(n);

    // losses only: the logits stay as they were
    crossentropy_forward_backward(d_losses, d_logits, d_tokens, 0, n, T, vocab, Vp, 0.0f, 0);
    check_err(r, device_download(d_losses, n), losses, "crossentropy_forward_backward losses (no dlogits)", shape);
    const size_t changed = count_changed(device_download(d_logits, nV), logits);
    r.check(changed == 0, "crossentropy_forward_backward without dlogits (%s): %zu logits changed", shape, changed);

    // losses and dlogits in place
    cudaCheck(cudaMemset(d_losses, 0xFF, n * sizeof(float)));
    crossentropy_forward_backward(d_losses, d_logits, d_tokens, 0, n, T, vocab, Vp, 1.0f / (B * T), 0);
    check_err(r, device_download(d_losses, n), losses, "crossentropy_forward_backward losses", shape);
    const std::vector<double> got = device_download(d_logits, nV);
    check_err(r, got, dlogits, "crossentropy_forward_backward dlogits", shape);
    size_t padded_nonzero = 0;
    for (int i = 0; i < n; i++)
        for (int j = vocab; j < Vp; j++) padded_nonzero += got[(size_t)i * Vp + j] != 0.0;
    r.check(padded_nonzero == 0, "crossentropy_forward_backward dlogits (%s): %zu padded columns not exactly 0",
            shape, padded_nonzero);

    for (void* p : {(void*)d_tokens, (void*)d_logits, (void*)d_losses}) cudaCheck(cudaFree(p));
}

}  // namespace

void test_small_kernels(TestReport& r) {
    const unsigned long long seed = (unsigned long long)test_seed();
    printf("sum_partials / encoder / rmsnorm / matmul / swiglu / crossentropy kernels (%s), seed %llu\n",
           PRECISION_NAME, seed);
    Random rng(seed);
    // slices (sum_partials' split of the parts) 1, 4 and 32, one to three batches of loads, a column past the last
    // block's end, and the 410M shapes of rmsnorm's dw (512 × 1024) and the scan's dW (8–32 × 21,504)
    test_sum_partials(r, 1, 53, rng);
    test_sum_partials(r, 37, 1, rng);
    test_sum_partials(r, 1031, 85, rng);
    test_sum_partials(r, 512, 1024, rng);
    test_sum_partials(r, 24, 21504, rng);
    test_encoder(r, 3, 37, 53, 20, 128, rng);          // many repeated tokens: long groups of positions per row
    test_encoder(r, 2, 1024, 768, 4000, 4096, rng);
    // rows of up to 1024 are read once from registers, longer ones in chunks and twice (rmsnorm.cuh)
    test_rmsnorm(r, 37, 53, rng);                      // 1-element packs; one backward block of 37 rows
    test_rmsnorm(r, 37, 136, rng);                     // 17 packs of 8: lanes with none (fp32: 34 of 4)
    test_rmsnorm(r, 37, 1344, rng);                    // the M²RNN gnorm width N·V of the 410M model: two chunks
    test_rmsnorm(r, 1031, 768, rng);                   // 17 backward blocks, the last of 7 rows
    test_rmsnorm(r, 200, 1024, rng);                   // the 410M D: every lane's registers full
    test_rmsnorm(r, 45, 2053, rng);                    // 1-element packs in three chunks
    test_matmul(r, 37, 53, 29, rng);
    test_matmul(r, 1031, 768, 1344, rng);       // the 410M model's out_proj, transposed: N·V = 1344
    test_swiglu(r, 37, 53, rng);
    test_swiglu(r, 1031, 2048, rng);
    test_crossentropy(r, 3, 13, 1000, 1024, 2.0, rng);
    test_crossentropy(r, 5, 7, 997, 1024, 2.0, rng);     // the last real pack is part padding
    test_crossentropy(r, 2, 4, 50257, 50304, 4.0, rng);  // GPT-2's vocabulary, B·T = 8
}
