// test_m2rnn: the project's checks, run by `make test` (`make test PRECISION=FP32` for the fp32 build).
//   CPU: the reference against DESIGN.md's golden vectors and finite differences, state-gradient
//        clipping, a short training run, and the token-shard loader on good and bad inputs.
//   GPU: each kernel family against its reference steps, then the whole model against the reference;
//        run when a CUDA device is present, skipped with one line saying so when none is.
// Ends with the line "N passed, N failed"; the exit status is non-zero when any check failed.
// `--gpu-only` skips the CPU checks (for compute-sanitizer runs).
#include <cstdio>
#include <cstring>

#include <cuda_runtime.h>

#include "kernels/common.cuh"
#include "tests/check.h"
#include "tests/test_checkpoint.h"
#include "tests/test_gpu_model.h"
#include "tests/test_kernels_attention.h"
#include "tests/test_kernels_m2rnn_io.h"
#include "tests/test_kernels_m2rnn_scan.h"
#include "tests/test_kernels_small.h"
#include "tests/test_reference.h"
#include "tests/test_shards.h"
#include "tests/test_tokenizer.h"

int main(int argc, char** argv) {
    const bool gpu_only = argc == 2 && strcmp(argv[1], "--gpu-only") == 0;
    if (argc > 1 && !gpu_only) {
        fprintf(stderr, "usage: %s [--gpu-only]\n", argv[0]);
        return 2;
    }
    TestReport r;
    if (!gpu_only) {
        printf("== CPU reference ==\n");
        test_reference(r);
        printf("== token shards ==\n");
        test_shard_loader(r);
        printf("== checkpoints ==\n");
        test_checkpoint(r);
        printf("== tokenizer ==\n");
        test_tokenizer(r);
    }

    int devices = 0;
    cudaError_t status = cudaGetDeviceCount(&devices);
    if (status != cudaSuccess || devices == 0) {
        printf("GPU checks skipped: no CUDA device found (%s)\n",
               status != cudaSuccess ? cudaGetErrorString(status) : "0 devices");
    } else {
        cudaDeviceProp prop;
        cudaCheck(cudaGetDeviceProperties(&prop, 0));
        printf("== GPU kernels (%s, %s) ==\n", prop.name, PRECISION_NAME);
        test_small_kernels(r);
        test_m2rnn_io_kernels(r);
        test_m2rnn_scan_kernels(r);
        test_attention_kernels(r);
        printf("== GPU model (%s) ==\n", PRECISION_NAME);
        test_gpu_model(r);
    }
    printf("%d passed, %d failed\n", r.passed, r.failed);
    return r.failed == 0 ? 0 : 1;
}
