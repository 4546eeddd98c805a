#include "gpu_decoder.h"

#include "../kernels/decode.cuh"
#include "../kernels/encoder.cuh"
#include "arena.h"

// The carry, then one position's activations: a buffer per quantity, which every layer's GPULayer points at (the
// residual stream is updated in place, so residual and residual2 are one buffer, as are the norms' outputs).
static void carve_decoder(GPUDecoder& d, const Config& c, Carver& a) {
    const size_t n = d.n_seq;
    const M2RNNLayout L = config_m2rnn_layout(c);
    const bool has_m = config_count(c, 'M') > 0, has_a = config_count(c, 'A') > 0;
    d.carry.layers.assign(c.L, GPUCarryLayer());
    for (int l = 0; l < c.L; l++) {
        GPUCarryLayer& g = d.carry.layers[l];
        if (c.pattern[l] == 'M') {
            g.state = a.take<float>(n * c.N * c.K * c.V);
            g.conv_history = a.take<float>(n * L.Cc() * (CONV_WIDTH - 1));
        } else {
            g.k_cache = a.take<floatX>(n * d.carry.max_len * c.D);
            g.v_cache = a.take<floatX>(n * d.carry.max_len * c.D);
        }
    }
    d.tokens = a.take<int>(2 * n);
    GPULayer one{};
    one.residual = one.residual2 = a.take<floatX>(n * c.D);
    one.ln1 = one.ln2 = a.take<floatX>(n * c.D);
    one.ln1_rstd = one.ln2_rstd = a.take<float>(n);
    one.proj = has_m ? a.take<floatX>(n * L.Cp_stride()) : nullptr;
    one.qkv = has_m ? a.take<floatX>(n * L.Cc()) : nullptr;
    one.scan_y = has_m ? a.take<floatX>(n * L.NV()) : nullptr;
    one.gnorm_out = has_m ? a.take<floatX>(n * L.NV()) : nullptr;
    one.gnorm_rstd = has_m ? a.take<float>(n) : nullptr;
    one.forget = has_m ? a.take<float>(n * c.N) : nullptr;
    one.attn_qkv = has_a ? a.take<floatX>(n * 3 * c.D) : nullptr;
    one.attn_y = has_a ? a.take<floatX>(n * c.D) : nullptr;
    one.up = a.take<floatX>(n * 2 * c.F);
    one.swiglu = a.take<floatX>(n * c.F);
    d.acts.layers.assign(c.L, one);
    d.acts.final_residual = one.residual;
    d.acts.lnf = one.ln1;
    d.acts.lnf_rstd = one.ln1_rstd;
    d.logits = a.take<floatX>(n * c.Vp);
}

bool gpu_decoder_init(GPUDecoder& d, GPUModel& m, int n_seq, int max_len, std::string& err) {
    const Config& c = m.c;
    d.model = &m;
    d.n_seq = n_seq;
    d.carry.max_len = max_len;
    if (config_count(c, 'A') > 0) {
        const int most = attention_step_max_len(c.D, c.heads);
        if (max_len > most) {
            err = "generation of " + std::to_string(max_len) + " positions: the attention step holds at most " +
                  std::to_string(most) + " (fewer tokens with -g)";
            return false;
        }
    }
    Carver a{nullptr, 0};
    carve_decoder(d, c, a);
    d.arena_bytes = a.used;
    size_t free_bytes = 0, total_bytes = 0;
    cudaCheck(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (d.arena_bytes > free_bytes) {
        err = "generation needs " + std::to_string(d.arena_bytes >> 20) + " MiB of GPU memory but " +
              std::to_string(free_bytes >> 20) + " MiB are free (fewer tokens with -g, or -g 0)";
        return false;
    }
    cudaCheck(cudaMalloc(&d.arena, d.arena_bytes));
    a = Carver{d.arena, 0};
    carve_decoder(d, c, a);
    d.host_tokens.assign(2 * (size_t)n_seq, 0);
    d.host_logits_lowp.resize((size_t)n_seq * c.Vp);
    d.host_logits.resize((size_t)n_seq * c.Vp);
    gpu_decoder_reset(d);
    return true;
}

void gpu_decoder_free(GPUDecoder& d) { cudaCheck(cudaFree(d.arena)); }

void gpu_decoder_reset(GPUDecoder& d) {
    // the caches need no clearing: position s is written before any step reads it
    const Config& c = d.model->c;
    for (const GPUCarryLayer& g : d.carry.layers) {
        if (!g.state) continue;
        cudaCheck(cudaMemsetAsync(g.state, 0, sizeof(float) * d.n_seq * c.N * c.K * c.V, d.model->stream));
        cudaCheck(cudaMemsetAsync(g.conv_history, 0,
                                  sizeof(float) * d.n_seq * config_m2rnn_layout(c).Cc() * (CONV_WIDTH - 1),
                                  d.model->stream));
    }
    d.carry.t = 0;
}

const float* gpu_decoder_step(GPUDecoder& d, const int* host_tokens) {
    GPUModel& m = *d.model;
    const Config& c = m.c;
    if (d.carry.t >= d.carry.max_len) {
        fprintf(stderr, "gpu_decoder_step: position %d is past the %d the decoder was made for\n", d.carry.t,
                d.carry.max_len);
        exit(EXIT_FAILURE);
    }
    const int n = d.n_seq;
    const ParameterTable& pt = m.table;
    cudaStream_t st = m.stream;
    for (int b = 0; b < n; b++) d.host_tokens[2 * b] = host_tokens[b];
    cudaCheck(cudaMemcpyAsync(d.tokens, d.host_tokens.data(), sizeof(int) * 2 * n, cudaMemcpyHostToDevice, st));
    // gpu_model_forward at one position, but for the classifier: the logits alone
    encoder_forward(d.acts.layers[0].residual, m.params_lowp + pt.tensors[pt.wte].offset, d.tokens, n, 1, c.D, st);
    gpu_model_layers_forward(m, d.acts, n, 1, &d.carry);
    matmul_forward(m.mm, d.logits, d.acts.lnf, m.params_lowp + pt.tensors[pt.lm_head].offset, n, c.D, c.Vp, st);
    download_as_float(d.host_logits.data(), d.host_logits_lowp, d.logits, d.host_logits.size(), st);
    d.carry.t++;
    return d.host_logits.data();
}
