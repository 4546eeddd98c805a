// test_m2rnn: the project's checks, run by `make test`.
//   CPU: the reference against DESIGN.md's golden vectors and finite differences, state-gradient
//        clipping, a short training run, and the token-shard loader on good and bad inputs.
//   GPU: run when a CUDA device is present; skipped, with one line saying so, when none is.
// Ends with the line "N passed, N failed"; the exit status is non-zero when any check failed.
#include <cstdio>

#include <cuda_runtime.h>

#include "tests/check.h"
#include "tests/test_reference.h"
#include "tests/test_shards.h"

int main() {
    TestReport r;
    printf("== CPU reference ==\n");
    test_reference(r);
    printf("== token shards ==\n");
    test_shard_loader(r);

    int devices = 0;
    cudaError_t status = cudaGetDeviceCount(&devices);
    if (status != cudaSuccess || devices == 0)
        printf("GPU checks skipped: no CUDA device found (%s)\n",
               status != cudaSuccess ? cudaGetErrorString(status) : "0 devices");
    else
        printf("GPU checks: %d CUDA device(s) found; this build has no GPU kernels to check yet\n", devices);

    printf("%d passed, %d failed\n", r.passed, r.failed);
    return r.failed == 0 ? 0 : 1;
}
