// bench_attention: causal attention with RoPE (kernels/attention.cuh) alone, as one layer of the models runs it.
//
// For each head size hd (64, 128) and length T (1024, 4096, 16384) at D = 1024 (heads = D/hd) and B·T = 32768
// positions: forward (the RoPE table and the kernel) and forward+backward medians over BENCH_REPS runs (CUDA events,
// after a warm-up), and their rates counted as FlashAttention counts them: the forward's two products over the
// visible pairs, 4·B·heads·hd·T(T+1)/2 FLOPs, and forward+backward 3.5 times that (the backward's five products at
// the least). The ratio is to the H200's measured bf16 GEMM rate, BENCH_GEMM_TFLOPS.
// Inputs are random: qkv, dy ~ N(0, 1).
//   usage: ./bench_attention             (the table; run by `make bench`)
//          ./bench_attention HD T [norope]   (one shape, e.g. under ncu; norope: without RoPE)
#include <cstdlib>
#include <cstring>

#include "../kernels/attention.cuh"
#include "bench_common.h"

static const double BENCH_GEMM_TFLOPS = 717.0;
static const int BENCH_POSITIONS = 32768, BENCH_D = 1024;

static void bench_shape(int hd, int T, bool rope_on, Random& rng) {
    const int B = BENCH_POSITIONS / T, heads = BENCH_D / hd;
    const size_t BTD = (size_t)B * T * BENCH_D;
    floatX* qkv = upload<floatX>(random_normal(3 * BTD, rng, 0.0, 1.0));
    floatX* dy = upload<floatX>(random_normal(BTD, rng, 0.0, 1.0));
    floatX *y = nullptr, *dqkv = nullptr;
    float* lse = nullptr;
    float2* rope = nullptr;
    cudaCheck(cudaMalloc(&y, BTD * sizeof(floatX)));
    cudaCheck(cudaMalloc(&dqkv, 3 * BTD * sizeof(floatX)));
    cudaCheck(cudaMalloc(&lse, (size_t)B * heads * T * sizeof(float)));
    if (rope_on) cudaCheck(cudaMalloc(&rope, (size_t)T * (hd / 2) * sizeof(float2)));
    auto forward = [&]() {
        if (rope) rope_table(rope, T, hd, 0);
        attention_forward(y, lse, qkv, rope, B, T, BENCH_D, heads, 0);
    };
    auto forward_backward = [&]() {
        forward();
        attention_backward(dqkv, dy, y, lse, qkv, rope, B, T, BENCH_D, heads, 0);
    };
    const float fwd = median_ms(forward), both = median_ms(forward_backward);
    const double flops = 4.0 * B * heads * hd * ((double)T * (T + 1) / 2);
    const double fwd_tflops = flops / fwd * 1e-9, both_tflops = 3.5 * flops / both * 1e-9;
    char name[64];
    snprintf(name, sizeof(name), "hd=%d T=%d B=%d heads=%d%s", hd, T, B, heads, rope ? "" : " noRoPE");
    printf("%-28s %8.3f %8.0f %7.2f %9.3f %8.0f %7.2f\n", name, fwd, fwd_tflops, fwd_tflops / BENCH_GEMM_TFLOPS,
           both, both_tflops, both_tflops / BENCH_GEMM_TFLOPS);
    for (void* p : {(void*)qkv, (void*)dy, (void*)y, (void*)dqkv, (void*)lse, (void*)rope}) cudaCheck(cudaFree(p));
}

int main(int argc, char** argv) {
    const bool rope = argc != 4 || strcmp(argv[3], "norope") != 0;
    const int hd = argc >= 3 ? atoi(argv[1]) : 0, T = argc >= 3 ? atoi(argv[2]) : 0;
    if (argc == 2 || argc > 4 || (argc == 4 && rope)) {
        fprintf(stderr, "bench_attention: usage: bench_attention [HD T [norope]]  (HD 64 or 128, T dividing %d)\n",
                BENCH_POSITIONS);
        return 1;
    }
    if (argc >= 3 && ((hd != 64 && hd != 128) || T < 1 || BENCH_POSITIONS % T != 0)) {
        fprintf(stderr, "bench_attention: HD must be 64 or 128 and T a divisor of %d, not %s %s\n", BENCH_POSITIONS,
                argv[1], argv[2]);
        return 1;
    }
    const cudaDeviceProp prop = bench_device("bench_attention");
    printf("device %s (%d SMs), %s, causal, RoPE, D=%d, median of %d; ratio to %.0f TFLOP/s\n", prop.name,
           prop.multiProcessorCount, PRECISION_NAME, BENCH_D, BENCH_REPS, BENCH_GEMM_TFLOPS);
    printf("%-28s %8s %8s %7s %9s %8s %7s\n", "shape", "fwd ms", "TFLOP/s", "ratio", "f+b ms", "TFLOP/s", "ratio");
    Random rng(1);
    if (argc >= 3) {
        bench_shape(hd, T, rope, rng);
        return 0;
    }
    for (int head_size : {64, 128})
        for (int length : {1024, 4096, 16384}) bench_shape(head_size, length, true, rng);
    return 0;
}
