// bench_m2rnn_scan: the M²RNN scan alone (kernels/m2rnn_scan.cuh) at the paper-410M layer shape, against its floor.
//
// For each shape: forward and forward+backward medians over BENCH_REPS runs (CUDA events, after a warm-up), the scan's
// memory beyond its inputs and outputs (the forward's state checkpoints and the backward's scratch), and the floor:
//   tanh evaluations: B·T·N·K·V forward, twice that forward+backward (the backward recomputes Z from checkpoints),
//                     at the special-function units' rate (16 per SM per clock: one MUFU op per tanh.approx)
//   tensor FLOPs:     2·B·T·N·K·V·V (H W) + 2·B·T·N·K·V (Hᵀq) forward, 3× that forward+backward, at 730 TFLOP/s
//   the floor is the larger of the two (bytes moved are small: inputs and outputs once).
// Inputs are random (q, k, v ~ N(0, 0.5²), f ~ U(0.8, 1), W = I + N(0, 0.1²)); the chunk is the model's.
//   usage: ./bench_m2rnn_scan            (prints a table; run by `make bench`)
#include "../kernels/m2rnn_scan.cuh"
#include "bench_common.h"

// Shape of one benchmark: batch, time, heads, key and value sizes.
struct Shape { int B, T, N, K, V; };

int main() {
    const Shape shapes[] = {{8, 4096, 84, 64, 16}, {32, 1024, 84, 64, 16}};
    const int Nq = 1, Nk = 1, chunk = M2RNN_SCAN_CHUNK;
    const cudaDeviceProp prop = bench_device("bench_m2rnn_scan");
    int clock_khz = 0;
    cudaCheck(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
    const double tanh_per_s = 16.0 * prop.multiProcessorCount * clock_khz * 1e3, flops_per_s = 730e12;
    printf("device %s (%d SMs, %.0f MHz), %s, chunk %d, median of %d\n", prop.name, prop.multiProcessorCount,
           clock_khz / 1e3, PRECISION_NAME, chunk, BENCH_REPS);
    printf("%-28s %9s %9s %10s %10s %12s %8s %8s\n", "shape", "fwd ms", "fwd+bwd", "extra GiB", "floor fwd",
           "floor f+b", "x fwd", "x f+b");
    Random rng(1);
    for (const Shape& s : shapes) {
        const M2RNNLayout L{s.N, s.K, s.V, Nq, Nk};
        const size_t BT = (size_t)s.B * s.T, Cc = L.Cc(), NV = L.NV();
        std::vector<float> W = random_normal((size_t)s.N * s.V * s.V, rng, 0.0, 0.1);
        for (int n = 0; n < s.N; n++)
            for (int j = 0; j < s.V; j++) W[((size_t)n * s.V + j) * s.V + j] += 1.0f;
        std::vector<float> f(BT * s.N);
        for (float& x : f) x = (float)rng.uniform(0.8, 1.0);
        floatX* qkv = upload<floatX>(random_normal(BT * Cc, rng, 0.0, 0.5));
        floatX* dy = upload<floatX>(random_normal(BT * NV, rng, 0.0, 0.5));
        float* d_f = upload<float>(f);
        float* d_W = upload<float>(W);
        floatX* y = nullptr;
        float *checkpoints = nullptr, *dqkv = nullptr, *df = nullptr, *dW = nullptr, *scratch = nullptr;
        const size_t ckpt = m2rnn_scan_checkpoint_floats(L, s.B, s.T, chunk);
        const size_t scratch_floats = m2rnn_scan_backward_scratch_floats(L, s.B, s.T, chunk);
        cudaCheck(cudaMalloc(&y, BT * NV * sizeof(floatX)));
        cudaCheck(cudaMalloc(&checkpoints, ckpt * sizeof(float)));
        cudaCheck(cudaMalloc(&dqkv, BT * Cc * sizeof(float)));
        cudaCheck(cudaMalloc(&df, BT * s.N * sizeof(float)));
        cudaCheck(cudaMalloc(&dW, (size_t)s.N * s.V * s.V * sizeof(float)));
        cudaCheck(cudaMalloc(&scratch, scratch_floats * sizeof(float)));
        cudaCheck(cudaMemset(dqkv, 0, BT * Cc * sizeof(float)));
        cudaCheck(cudaMemset(dW, 0, (size_t)s.N * s.V * s.V * sizeof(float)));
        auto forward = [&]() {
            m2rnn_scan_forward(y, checkpoints, nullptr, qkv, d_f, d_W, L, s.B, s.T, chunk, 0);
        };
        auto forward_backward = [&]() {
            forward();
            m2rnn_scan_backward(dqkv, df, dW, scratch, dy, qkv, d_f, d_W, checkpoints, 1.0f, L, s.B, s.T, chunk, 0);
        };
        const float fwd = median_ms(forward), both = median_ms(forward_backward);
        const double tanh_count = (double)BT * s.N * s.K * s.V;
        const double flops = 2.0 * tanh_count * s.V + 2.0 * tanh_count;
        const double floor_fwd = 1e3 * std::max(tanh_count / tanh_per_s, flops / flops_per_s);
        const double floor_both = 1e3 * std::max(2 * tanh_count / tanh_per_s, 3 * flops / flops_per_s);
        char name[64];
        snprintf(name, sizeof(name), "B=%d T=%d N=%d K=%d V=%d", s.B, s.T, s.N, s.K, s.V);
        printf("%-28s %9.2f %9.2f %10.2f %10.2f %12.2f %8.1f %8.1f\n", name, fwd, both,
               (ckpt + scratch_floats) * 4.0 / 1073741824.0, floor_fwd, floor_both, fwd / floor_fwd,
               both / floor_both);
        for (void* p : {(void*)qkv, (void*)dy, (void*)d_f, (void*)d_W, (void*)y, (void*)checkpoints, (void*)dqkv,
                        (void*)df, (void*)dW, (void*)scratch})
            cudaCheck(cudaFree(p));
    }
    return 0;
}
