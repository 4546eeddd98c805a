// GPU checks of kernels/attention.cuh against the reference steps rope_forward, attention_forward,
// attention_backward and rope_backward (double precision), run in the model's order on fresh random inputs.
// Each step's reference sees exactly what the kernel read: the inputs rounded to floatX, and for the later steps
// the GPU's own outputs of the earlier ones (rotated qkv, prob, dqkv), so each figure measures one kernel.
// Outputs start poisoned (NaN), so an unwritten element, prob's zeros above the diagonal included, fails.
// Sizes: head sizes 16, 8 and 128 (the largest, whose backward needs over 48 KB of shared memory) with T not a
// multiple of the 32-row tile, and the d12 model's width.
#include "test_kernels_attention.h"

#include <cstdio>
#include <vector>

#include "../kernels/attention.cuh"
#include "../model/reference.h"
#include "gpu_check.cuh"

namespace {

void test_attention(TestReport& r, int B, int T, int D, int heads, bool rope, Random& rng) {
    char shape[96];
    snprintf(shape, sizeof(shape), "B=%d T=%d D=%d heads=%d%s", B, T, D, heads, rope ? " RoPE" : "");
    const size_t BTD = (size_t)B * T * D, n_qkv = 3 * BTD, n_prob = (size_t)B * heads * T * T;
    std::vector<double> qkv = random_vector(n_qkv, rng, 1.0);
    std::vector<double> dy = random_vector(BTD, rng, 1.0);
    round_to<floatX>(qkv);
    round_to<floatX>(dy);
    floatX* d_qkv = device_upload<floatX>(qkv);
    floatX* d_dy = device_upload<floatX>(dy);

    if (rope) {
        rope_forward(d_qkv, B, T, D, heads, 0);
        rope_forward(qkv.data(), B, T, D, heads);
        const std::vector<double> rotated = device_download(d_qkv, n_qkv);
        check_err(r, rotated, qkv, "rope_forward qkv", shape);
        qkv = rotated;
    }

    floatX* d_y = device_poisoned<floatX>(BTD);
    float* d_prob = device_poisoned<float>(n_prob);
    attention_forward(d_y, d_prob, d_qkv, B, T, D, heads, 0);
    std::vector<double> y(BTD), prob(n_prob);
    attention_forward(y.data(), prob.data(), qkv.data(), B, T, D, heads);
    check_err(r, device_download(d_y, BTD), y, "attention_forward y", shape);
    const std::vector<double> gpu_prob = device_download(d_prob, n_prob);
    check_err(r, gpu_prob, prob, "attention_forward prob", shape);

    floatX* d_dqkv = device_poisoned<floatX>(n_qkv);
    attention_backward(d_dqkv, d_dy, d_qkv, d_prob, B, T, D, heads, 0);
    std::vector<double> dqkv(n_qkv);
    attention_backward(dqkv.data(), dy.data(), qkv.data(), gpu_prob.data(), B, T, D, heads);
    const std::vector<double> gpu_dqkv = device_download(d_dqkv, n_qkv);
    check_err(r, gpu_dqkv, dqkv, "attention_backward dqkv", shape);

    if (rope) {
        rope_backward(d_dqkv, B, T, D, heads, 0);
        dqkv = gpu_dqkv;
        rope_backward(dqkv.data(), B, T, D, heads);
        check_err(r, device_download(d_dqkv, n_qkv), dqkv, "rope_backward dqkv", shape);
    }

    for (void* p : {(void*)d_qkv, (void*)d_dy, (void*)d_y, (void*)d_prob, (void*)d_dqkv}) cudaCheck(cudaFree(p));
}

}  // namespace

void test_attention_kernels(TestReport& r) {
    const unsigned long long seed = (unsigned long long)test_seed();
    printf("attention / RoPE kernels (%s), seed %llu\n", PRECISION_NAME, seed);
    Random rng(seed);
    for (bool rope : {false, true}) {
        test_attention(r, 2, 37, 48, 3, rope, rng);
        test_attention(r, 3, 50, 40, 5, rope, rng);
        test_attention(r, 1, 70, 256, 2, rope, rng);
        test_attention(r, 2, 256, 768, 12, rope, rng);
    }
}
