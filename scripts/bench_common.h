// What the kernel benchmarks (bench_m2rnn_scan, bench_attention) share: random inputs uploaded to the GPU, the median
// of timed runs, and the check that a GPU is there at all.
#pragma once
#include <algorithm>
#include <cstdio>
#include <vector>

#include "../kernels/common.cuh"
#include "../model/random.h"

static const int BENCH_REPS = 10;

template <typename T> static T* upload(const std::vector<float>& host) {
    std::vector<T> tmp(host.size());
    for (size_t i = 0; i < host.size(); i++) tmp[i] = (T)host[i];
    T* d = nullptr;
    cudaCheck(cudaMalloc(&d, tmp.size() * sizeof(T)));
    cudaCheck(cudaMemcpy(d, tmp.data(), tmp.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

static std::vector<float> random_normal(size_t n, Random& rng, double mean, double sd) {
    std::vector<float> x(n);
    for (float& v : x) v = (float)(mean + sd * rng.normal());
    return x;
}

// Median milliseconds of `run` over BENCH_REPS timed runs after one warm-up.
template <typename F> static float median_ms(F run) {
    cudaEvent_t start, stop;
    cudaCheck(cudaEventCreate(&start));
    cudaCheck(cudaEventCreate(&stop));
    run();
    std::vector<float> ms(BENCH_REPS);
    for (float& t : ms) {
        cudaCheck(cudaEventRecord(start));
        run();
        cudaCheck(cudaEventRecord(stop));
        cudaCheck(cudaEventSynchronize(stop));
        cudaCheck(cudaEventElapsedTime(&t, start, stop));
    }
    cudaCheck(cudaEventDestroy(start));
    cudaCheck(cudaEventDestroy(stop));
    std::sort(ms.begin(), ms.end());
    return ms[BENCH_REPS / 2];
}

// The first GPU's properties; exits with a message when there is none.
static cudaDeviceProp bench_device(const char* name) {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        fprintf(stderr, "%s: no NVIDIA GPU or driver found; make bench needs one (make test runs the CPU checks "
                "without)\n", name);
        exit(1);
    }
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, 0));
    return prop;
}
