// GPU checks of kernels/attention.cuh against the reference steps attention_forward and attention_backward (double
// precision, RoPE by rope_rotate_heads) on fresh random inputs, RoPE off and on: the forward's in-place rotation of
// q and k, its y and per-row log-sum-exp lse, the backward's dqkv.
// The reference sees what the kernels compute from: qkv and dy rounded to floatX and, with RoPE, the rotated q and k
// rounded to floatX again (the forward stores them so). The reference's backward runs on its own probabilities; the
// kernels recompute theirs from the GPU forward's lse and use its y, so the dqkv figure covers both. lse has no
// reference step: the test forms it from the rotated q and k. Outputs start poisoned (NaN), so an unwritten element
// fails.
// Sizes: every head size the kernels take (8, 16, 32, 64, 128) at T = 1, 77, 300, 1024 and 4096 (not multiples of
// the tiles, or one or many of them), several heads and batch rows, many blocks (the d12 model's width at T = 300).
// On a Hopper GPU the head sizes with Hopper kernels (64, 128) are checked on the mma.sync kernels too.
#include "test_kernels_attention.h"

#include <cmath>
#include <cstdio>
#include <vector>

#include "../kernels/attention.cuh"
#include "../model/reference.h"
#include "gpu_check.cuh"

namespace {

// lse[b,h,t] = log Σ_{s≤t} exp(q_t·k_s / sqrt(hd)) for qkv (B,T,3D).
std::vector<double> reference_lse(const std::vector<double>& qkv, int B, int T, int D, int heads) {
    const int hd = D / heads;
    std::vector<double> lse((size_t)B * heads * T), score(T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < heads; h++)
            for (int t = 0; t < T; t++) {
                const double* q = qkv.data() + ((size_t)b * T + t) * 3 * D + h * hd;
                double max_score = -INFINITY;
                for (int s = 0; s <= t; s++) {
                    const double* k = qkv.data() + ((size_t)b * T + s) * 3 * D + D + h * hd;
                    double dot = 0;
                    for (int i = 0; i < hd; i++) dot += q[i] * k[i];
                    score[s] = dot / sqrt((double)hd);
                    max_score = fmax(max_score, score[s]);
                }
                double sum = 0;
                for (int s = 0; s <= t; s++) sum += exp(score[s] - max_score);
                lse[((size_t)b * heads + h) * T + t] = max_score + log(sum);
            }
    return lse;
}

void test_attention(TestReport& r, int B, int T, int D, int heads, bool rope, AttentionKernels kernels, Random& rng) {
    char shape[128];
    snprintf(shape, sizeof(shape), "B=%d T=%d D=%d heads=%d%s%s", B, T, D, heads, rope ? " RoPE" : "",
             kernels == AttentionKernels::portable ? " mma.sync kernels" : "");
    const int hd = D / heads;
    const size_t BTD = (size_t)B * T * D, n_qkv = 3 * BTD, n_lse = (size_t)B * heads * T;
    std::vector<double> qkv = random_vector(n_qkv, rng, 1.0);
    std::vector<double> dy = random_vector(BTD, rng, 1.0);
    round_to<floatX>(qkv);
    round_to<floatX>(dy);
    floatX* d_qkv = device_upload<floatX>(qkv);
    floatX* d_dy = device_upload<floatX>(dy);
    float2* d_rope = nullptr;
    if (rope) {
        d_rope = device_poisoned<float2>((size_t)T * (hd / 2));
        rope_table(d_rope, T, hd, 0);
        rope_rotate_heads(qkv.data(), B, T, D, heads, +1.0);
        round_to<floatX>(qkv);
    }

    floatX* d_y = device_poisoned<floatX>(BTD);
    float* d_lse = device_poisoned<float>(n_lse);
    attention_forward(d_y, d_lse, d_qkv, d_rope, B, T, D, heads, 0, kernels);
    std::vector<double> y(BTD), prob((size_t)B * heads * T * T);
    attention_forward(y.data(), prob.data(), qkv.data(), B, T, D, heads, false);  // on q, k rotated above
    check_err(r, device_download(d_y, BTD), y, "attention_forward y", shape);
    check_err(r, device_download(d_lse, n_lse), reference_lse(qkv, B, T, D, heads), "attention_forward lse", shape);
    if (rope) check_err(r, device_download(d_qkv, n_qkv), qkv, "attention_forward q, k rotated in place", shape);

    floatX* d_dqkv = device_poisoned<floatX>(n_qkv);
    attention_backward(d_dqkv, d_dy, d_y, d_lse, d_qkv, d_rope, B, T, D, heads, 0, kernels);
    std::vector<double> dqkv(n_qkv);
    attention_backward(dqkv.data(), dy.data(), qkv.data(), prob.data(), B, T, D, heads, false);
    if (rope) rope_rotate_heads(dqkv.data(), B, T, D, heads, -1.0);
    check_err(r, device_download(d_dqkv, n_qkv), dqkv, "attention_backward dqkv", shape);

    for (void* p : {(void*)d_qkv, (void*)d_dy, (void*)d_rope, (void*)d_y, (void*)d_lse, (void*)d_dqkv})
        cudaCheck(cudaFree(p));
}

}  // namespace

void test_attention_kernels(TestReport& r) {
    const unsigned long long seed = (unsigned long long)test_seed();
    printf("attention kernels (%s, Hopper kernels %s), seed %llu\n", PRECISION_NAME,
           attention_hopper_available() ? "on" : "off", seed);
    Random rng(seed);
    for (bool rope : {false, true}) {
        for (int hd : {8, 16, 32, 64, 128})
            for (int T : {1, 77, 300, 1024, 4096}) {
                const int heads = T < 4096 ? 2 : 1;  // one at 4096 keeps the reference's T×T probabilities small
                test_attention(r, 1, T, hd * heads, heads, rope, AttentionKernels::best, rng);
                // on Hopper the mma.sync kernels run only on Ampere and at other head sizes: checked here too
                if ((hd == 64 || hd == 128) && attention_hopper_available())
                    test_attention(r, 1, T, hd * heads, heads, rope, AttentionKernels::portable, rng);
            }
        test_attention(r, 3, 50, 40, 5, rope, AttentionKernels::best, rng);      // hd 8, several heads and rows
        test_attention(r, 2, 300, 768, 12, rope, AttentionKernels::best, rng);   // hd 64 (the models'), many blocks
    }
}
