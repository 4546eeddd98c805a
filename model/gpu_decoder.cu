#include "gpu_decoder.h"

#include "../kernels/decode.cuh"
#include "../kernels/encoder.cuh"
#include "../kernels/m2rnn_gate.cuh"
#include "../kernels/rmsnorm.cuh"
#include "../kernels/swiglu.cuh"
#include "arena.h"

static void carve_decoder(GPUDecoder& d, const Config& c, Carver& a) {
    const size_t n = d.n_seq;
    const int Cp = config_inproj_rows(c), Cc = config_conv_channels(c), NV = c.N * c.V;
    const bool has_m = config_count(c, 'M') > 0, has_a = config_count(c, 'A') > 0;
    d.layers.assign(c.L, GPUDecoderLayer());
    for (int l = 0; l < c.L; l++) {
        GPUDecoderLayer& g = d.layers[l];
        if (c.pattern[l] == 'M') {
            g.state = a.take<float>(n * c.N * c.K * c.V);
            g.conv_history = a.take<float>(n * Cc * 3);
        } else {
            g.k_cache = a.take<floatX>(n * d.max_len * c.D);
            g.v_cache = a.take<floatX>(n * d.max_len * c.D);
        }
    }
    d.tokens = a.take<int>(2 * n);
    d.residual = a.take<floatX>(n * c.D);
    d.ln = a.take<floatX>(n * c.D);
    d.branch_out = a.take<floatX>(n * c.D);
    d.rstd = a.take<float>(n);
    d.proj = has_m ? a.take<floatX>(n * Cp) : nullptr;
    d.qkv = has_m ? a.take<floatX>(n * Cc) : nullptr;
    d.scan_y = has_m ? a.take<floatX>(n * NV) : nullptr;
    d.gnorm_out = has_m ? a.take<floatX>(n * NV) : nullptr;
    d.forget = has_m ? a.take<float>(n * c.N) : nullptr;
    d.attn_qkv = has_a ? a.take<floatX>(n * 3 * c.D) : nullptr;
    d.attn_y = has_a ? a.take<floatX>(n * c.D) : nullptr;
    d.up = a.take<floatX>(n * 2 * c.F);
    d.swiglu = a.take<floatX>(n * c.F);
    d.logits = a.take<floatX>(n * c.Vp);
}

bool gpu_decoder_init(GPUDecoder& d, GPUModel& m, int n_seq, int max_len, std::string& err) {
    const Config& c = m.c;
    d.model = &m;
    d.n_seq = n_seq;
    d.max_len = max_len;
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
    for (const GPUDecoderLayer& g : d.layers) {
        if (!g.state) continue;
        const Config& c = d.model->c;
        cudaCheck(cudaMemsetAsync(g.state, 0, sizeof(float) * d.n_seq * c.N * c.K * c.V, d.model->stream));
        cudaCheck(cudaMemsetAsync(g.conv_history, 0, sizeof(float) * d.n_seq * config_conv_channels(c) * 3,
                                  d.model->stream));
    }
    d.t = 0;
}

const float* gpu_decoder_step(GPUDecoder& d, const int* host_tokens) {
    GPUModel& m = *d.model;
    const Config& c = m.c;
    if (d.t >= d.max_len) {
        fprintf(stderr, "gpu_decoder_step: position %d is past the %d the decoder was made for\n", d.t, d.max_len);
        exit(EXIT_FAILURE);
    }
    const int n = d.n_seq, D = c.D, NV = c.N * c.V, Cp = config_inproj_rows(c), Cc = config_conv_channels(c);
    const ParameterTable& pt = m.table;
    cudaStream_t st = m.stream;
    auto P = [&](int l, ParamKind kind) { return m.params + param_offset(pt, l, kind); };
    auto PX = [&](int l, ParamKind kind) { return m.params_lowp + param_offset(pt, l, kind); };
    for (int b = 0; b < n; b++) d.host_tokens[2 * b] = host_tokens[b];
    cudaCheck(cudaMemcpyAsync(d.tokens, d.host_tokens.data(), sizeof(int) * 2 * n, cudaMemcpyHostToDevice, st));

    // the steps of gpu_model_forward at one position, the residual stream updated in place
    encoder_forward(d.residual, m.params_lowp + pt.tensors[pt.wte].offset, d.tokens, n, 1, D, st);
    rmsnorm_forward(d.ln, d.rstd, d.residual, P(0, P_LN1), n, D, st);
    for (int l = 0; l < c.L; l++) {
        GPUDecoderLayer& g = d.layers[l];
        if (c.pattern[l] == 'M') {
            matmul_forward(m.mm, d.proj, d.ln, PX(l, P_IN_PROJ), n, D, Cp, st);
            m2rnn_input_step(d.qkv, d.forget, g.conv_history, d.proj, P(l, P_CONV), P(l, P_A_LOG), P(l, P_DT_BIAS), n,
                             Cc, c.N, NV, st);
            m2rnn_scan_step(d.scan_y, g.state, d.qkv, d.forget, P(l, P_W), n, c.N, c.K, c.V, c.Nq, c.Nk, st);
            m2rnn_gate_forward(d.gnorm_out, d.rstd, d.scan_y, d.qkv, d.proj, P(l, P_D), P(l, P_GNORM), n, c.N, c.K,
                               c.V, c.Nq, c.Nk, st);
            matmul_forward(m.mm, d.branch_out, d.gnorm_out, PX(l, P_OUT_PROJ), n, NV, D, st);
        } else {
            matmul_forward(m.mm, d.attn_qkv, d.ln, PX(l, P_QKV), n, D, 3 * D, st);
            attention_step(d.attn_y, g.k_cache, g.v_cache, d.attn_qkv, d.t, d.max_len, n, D, c.heads, c.rope, st);
            matmul_forward(m.mm, d.branch_out, d.attn_y, PX(l, P_ATTN_OUT), n, D, D, st);
        }
        residual_rmsnorm_forward(d.residual, d.ln, d.rstd, d.residual, d.branch_out, P(l, P_LN2), n, D, st);
        matmul_forward(m.mm, d.up, d.ln, PX(l, P_UP), n, D, 2 * c.F, st);
        swiglu_forward(d.swiglu, d.up, n, c.F, st);
        matmul_forward(m.mm, d.branch_out, d.swiglu, PX(l, P_DOWN), n, c.F, D, st);
        const float* next_norm = l + 1 < c.L ? P(l + 1, P_LN1) : m.params + pt.tensors[pt.lnf].offset;
        residual_rmsnorm_forward(d.residual, d.ln, d.rstd, d.residual, d.branch_out, next_norm, n, D, st);
    }
    matmul_forward(m.mm, d.logits, d.ln, m.params_lowp + pt.tensors[pt.lm_head].offset, n, D, c.Vp, st);
    download_as_float(d.host_logits.data(), d.host_logits_lowp, d.logits, d.host_logits.size(), st);
    d.t++;
    return d.host_logits.data();
}
