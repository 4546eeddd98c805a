// The decoder (model/gpu_decoder) against the CPU reference: tokens fed one at a time, carrying the M²RNN state
// and conv inputs and the attention KV cache, must give at every position t the logits the reference's full
// forward gives there (it sees tokens 0..t only, being causal). Tiny hybrid, all-M and all-A configs, RoPE on
// and off, shared and per-head q/k; two sequences side by side; fresh random parameters and tokens each run.
// The decoder's arena is poisoned (NaN bytes) before its reset, so reading a cache row not yet written fails.
// A second pass after gpu_decoder_reset must repeat the first bit for bit.
//
// Tolerance: fp32 1e-4 as every GPU check; bf16 6e-2, the whole-model bound of tests/test_gpu_model.cu (bf16
// activations at every rounding point of a whole forward).
#include "test_decoder.h"

#include <cstring>
#include <string>
#include <vector>

#include "../model/gpu_decoder.h"
#include "../model/reference.h"
#include "gpu_check.cuh"
#include "random_inputs.h"

#if defined(ENABLE_FP32)
static const double DECODER_TOLERANCE = 1e-4;
#else
static const double DECODER_TOLERANCE = 6e-2;
#endif

static void check_decoder(TestReport& r, const char* name, Config c, int n_seq, int T) {
    c.T = T;
    const uint64_t seed = test_seed();
    const ParameterTable t = parameter_table_build(c);
    const std::vector<double> params = gpu_parameters(t, c, seed, 0.1);
    const std::vector<int> tokens = random_tokens(n_seq, T, c.vocab, seed + 7);
    Reference<double> ref;
    reference_init(ref, c, n_seq, T);
    reference_forward(ref, params.data(), tokens.data());

    GPUModel m;
    GPUDecoder d;
    std::string err;
    if (!gpu_model_init(m, c, n_seq, T, err) || !gpu_decoder_init(d, m, n_seq, T, err)) {
        fprintf(stderr, "decoder test: %s\n", err.c_str());
        exit(1);
    }
    const std::vector<float> p32(params.begin(), params.end());
    gpu_model_set_params(m, p32.data());
    std::vector<double> want, got[2];
    for (int b = 0; b < n_seq; b++)
        for (int s = 0; s < T; s++)
            for (int j = 0; j < c.vocab; j++) want.push_back(ref.logits[((size_t)b * T + s) * c.Vp + j]);
    for (int pass = 0; pass < 2; pass++) {
        cudaCheck(cudaMemset(d.arena, 0xFF, d.arena_bytes));
        gpu_decoder_reset(d);
        got[pass].assign(want.size(), 0.0);
        std::vector<int> step_tokens(n_seq);
        for (int s = 0; s < T; s++) {
            for (int b = 0; b < n_seq; b++) step_tokens[b] = tokens[(size_t)b * (T + 1) + s];
            const float* logits = gpu_decoder_step(d, step_tokens.data());
            for (int b = 0; b < n_seq; b++)
                for (int j = 0; j < c.vocab; j++)
                    got[pass][((size_t)b * T + s) * c.vocab + j] = logits[(size_t)b * c.Vp + j];
        }
    }
    gpu_decoder_free(d);
    gpu_model_free(m);
    const double err_logits = max_rel_err(got[0].data(), want.data(), want.size());
    r.check(err_logits <= DECODER_TOLERANCE,
            "decoder %s, %d sequences x %d steps, %s (seed %llu): logits vs the reference's full forward, max rel "
            "err %.1e <= %.0e",
            name, n_seq, T, PRECISION_NAME, (unsigned long long)seed, err_logits, DECODER_TOLERANCE);
    r.check(memcmp(got[0].data(), got[1].data(), want.size() * sizeof(double)) == 0,
            "decoder %s: a second pass after gpu_decoder_reset repeats the logits bit for bit", name);
}

void test_decoder(TestReport& r) {
    check_decoder(r, "hybrid MAM Nq=Nk=1", tiny_config("MAM", 4, 1, 0), 2, 21);
    check_decoder(r, "hybrid AMA Nq=Nk=N RoPE", tiny_config("AMA", 4, 4, 1), 2, 21);
    check_decoder(r, "all-M MM Nq=Nk=2", tiny_config("MM", 4, 2, 0), 2, 21);
    check_decoder(r, "all-A AA RoPE", tiny_config("AA", 4, 1, 1), 2, 21);
}
