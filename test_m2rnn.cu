// test_m2rnn: the project's checks, run by `make test` (`make test PRECISION=FP32` for the fp32 build).
//   CPU: the reference against docs/model.md's golden vectors and finite differences, state-gradient
//        clipping, --state-noise's initial states, a short training run, the token-shard loader on good and
//        bad inputs, checkpoints and their safetensors export (round trip, the python checker, the windows of
//        scripts/m2rnn_torch.py), the tokenizer, the synthetic state-tracking tasks (groups, sequences, shards),
//        and the host side of several GPUs (ranks, the split of the batch, ZeRO-1's shards, the NCCL id file,
//        scripts/launch.sh).
//   GPU: each kernel family against its reference steps, then the whole model against the reference, then
//        generation one token at a time against the reference's full forward;
//        run when a CUDA device is present, skipped with one line saying so when none is.
// Ends with the line "N passed, N failed"; the exit status is non-zero when any check failed.
// `--gpu-only` skips the CPU checks, `--gpu-section kernels|model|generation` runs one GPU section alone
// (for compute-sanitizer runs).
#include <cstdio>
#include <cstring>

#include <cuda_runtime.h>

#include "kernels/common.cuh"
#include "tests/check.h"
#include "tests/test_checkpoint.h"
#include "tests/test_decoder.h"
#include "tests/test_distributed.h"
#include "tests/test_export.h"
#include "tests/test_gpu_model.h"
#include "tests/test_kernels_attention.h"
#include "tests/test_kernels_m2rnn_io.h"
#include "tests/test_kernels_m2rnn_scan.h"
#include "tests/test_kernels_small.h"
#include "tests/test_reference.h"
#include "tests/test_shards.h"
#include "tests/test_tasks.h"
#include "tests/test_tokenizer.h"

int main(int argc, char** argv) {
    const char* section = nullptr;  // one GPU section, or all
    bool gpu_only = false;
    if (argc == 2 && strcmp(argv[1], "--gpu-only") == 0) {
        gpu_only = true;
    } else if (argc == 3 && strcmp(argv[1], "--gpu-section") == 0 &&
               (!strcmp(argv[2], "kernels") || !strcmp(argv[2], "model") || !strcmp(argv[2], "generation"))) {
        gpu_only = true;
        section = argv[2];
    } else if (argc > 1) {
        fprintf(stderr, "usage: %s [--gpu-only | --gpu-section kernels|model|generation]\n", argv[0]);
        return 2;
    }
    auto run_section = [&](const char* name) { return !section || strcmp(section, name) == 0; };
    TestReport r;
    if (!gpu_only) {
        printf("== CPU reference ==\n");
        test_reference(r);
        printf("== token shards ==\n");
        test_shard_loader(r);
        printf("== checkpoints ==\n");
        test_checkpoint(r);
        printf("== safetensors export ==\n");
        test_export(r);
        printf("== tokenizer ==\n");
        test_tokenizer(r);
        printf("== synthetic tasks ==\n");
        test_tasks(r);
        printf("== several GPUs (host side) ==\n");
        test_distributed(r);
    }

    int devices = 0;
    cudaError_t status = cudaGetDeviceCount(&devices);
    if (status != cudaSuccess || devices == 0) {
        printf("GPU checks skipped: no CUDA device found (%s)\n",
               status != cudaSuccess ? cudaGetErrorString(status) : "0 devices");
    } else {
        cudaDeviceProp prop;
        cudaCheck(cudaGetDeviceProperties(&prop, 0));
        if (run_section("kernels")) {
            printf("== GPU kernels (%s, %s) ==\n", prop.name, PRECISION_NAME);
            test_small_kernels(r);
            test_m2rnn_io_kernels(r);
            test_m2rnn_scan_kernels(r);
            test_attention_kernels(r);
        }
        if (run_section("model")) {
            printf("== GPU model (%s) ==\n", PRECISION_NAME);
            test_gpu_model(r);
        }
        if (run_section("generation")) {
            printf("== GPU generation (%s) ==\n", PRECISION_NAME);
            test_decoder(r);
        }
    }
    printf("%d passed, %d failed\n", r.passed, r.failed);
    return r.failed == 0 ? 0 : 1;
}
