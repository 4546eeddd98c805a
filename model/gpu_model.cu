#include "gpu_model.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "../kernels/adamw.cuh"
#include "../kernels/attention.cuh"
#include "../kernels/crossentropy.cuh"
#include "../kernels/decode.cuh"
#include "../kernels/encoder.cuh"
#include "../kernels/m2rnn_gate.cuh"
#include "../kernels/m2rnn_initial_state.cuh"
#include "../kernels/m2rnn_input.cuh"
#include "../kernels/m2rnn_scan.cuh"
#include "../kernels/rmsnorm.cuh"
#include "../kernels/swiglu.cuh"
#include "arena.h"
#include "distributed.h"


// The part of the arenas this process updates (model/distributed.h): all of them, or with ZeRO-1 its shard
// of arenas padded to a whole number of shards.
static void plan_shards(GPUModel& m, Distributed* dist) {
    m.dist = dist;
    m.zero = dist && dist->zero;
    const ShardLayout layout = shard_layout(m.table.total, m.zero ? dist->world : 1);
    m.padded_total = layout.padded_total;
    m.shard_numel = layout.shard_numel;
    m.shard_offset = m.zero ? (size_t)dist->rank * layout.shard_numel : 0;
}

static void carve_parameters(GPUModel& m, Carver& a) {
    m.params = a.take<float>(m.padded_total);  // the padding: room for ZeRO-1's all-gather
#if defined(ENABLE_FP32)
    m.params_lowp = m.params;
#else
    m.params_lowp = a.take<floatX>(m.table.total);
#endif
}

static void carve_gradients(GPUModel& m, Carver& a) {
    m.grads = a.take<float>(m.padded_total);  // the padding stays zero: the norm of the last shard reads it
    m.adam_m = a.take<float>(m.shard_numel);
    m.adam_v = a.take<float>(m.shard_numel);
    m.norm_squared = a.take<float>(1);
}

// The classifier's chunk: the B·T rows split evenly into as few chunks as keep each chunk's logits within
// CLASSIFIER_CHUNK_BYTES, rounded up to a multiple of 128 rows (the GEMM's tile). Few large chunks, because every
// chunk's lm_head gradient GEMM reads and writes the whole fp32 gradient (Vp·D, 392 MiB at the 410M shape):
// at 256 MiB chunks that was 26 passes a step (docs/perf.md).
static const size_t CLASSIFIER_CHUNK_BYTES = 2048ull << 20;
static int classifier_chunk_rows(const Config& c, int BT) {
    const size_t bytes = (size_t)BT * c.Vp * sizeof(floatX);
    const size_t chunks = std::max<size_t>(ceil_div(bytes, CLASSIFIER_CHUNK_BYTES), 1);
    const size_t rows = ceil_div(ceil_div((size_t)BT, chunks), (size_t)128) * 128;
    return (int)std::min<size_t>(rows, BT);
}

static void carve_activations(GPUModel& m, Carver& a) {
    const Config& c = m.c;
    const size_t BT = (size_t)m.B * m.T;
    const M2RNNLayout L = config_m2rnn_layout(c);
    GPUActivations& x = m.acts;
    x.layers.assign(c.L, GPULayer());
    for (int l = 0; l < c.L; l++) {
        GPULayer& g = x.layers[l];
        g.residual = a.take<floatX>(BT * c.D);
        g.ln1 = a.take<floatX>(BT * c.D);
        g.ln1_rstd = a.take<float>(BT);
        if (c.pattern[l] == 'M') {
            g.proj = a.take<floatX>(BT * L.Cp_stride());
            g.qkv = a.take<floatX>(BT * L.Cc());
            g.forget = a.take<float>(BT * c.N);
            g.scan_y = a.take<floatX>(BT * L.NV());
            g.checkpoints = a.take<float>(m2rnn_scan_checkpoint_floats(L, m.B, m.T, m.chunk));
            g.gnorm_out = a.take<floatX>(BT * L.NV());
            g.gnorm_rstd = a.take<float>(BT);
        } else {
            g.attn_qkv = a.take<floatX>(BT * 3 * c.D);
            g.attn_lse = a.take<float>((size_t)m.B * c.heads * m.T);
            g.attn_y = a.take<floatX>(BT * c.D);
        }
        g.residual2 = a.take<floatX>(BT * c.D);
        g.ln2 = a.take<floatX>(BT * c.D);
        g.ln2_rstd = a.take<float>(BT);
        g.up = a.take<floatX>(BT * 2 * c.F);
        g.swiglu = a.take<floatX>(BT * c.F);
    }
    x.final_residual = a.take<floatX>(BT * c.D);
    x.lnf = a.take<floatX>(BT * c.D);
    x.lnf_rstd = a.take<float>(BT);
    m.logits = a.take<floatX>((size_t)classifier_chunk_rows(c, (int)BT) * c.Vp);
    m.losses = a.take<float>(BT);
    m.tokens = a.take<int>((size_t)m.B * (m.T + 1));
    m.token_groups = a.take<int>(encoder_groups_ints(m.B, m.T));

    const bool has_m = config_count(c, 'M') > 0, has_a = config_count(c, 'A') > 0;
    GPUScratch& s = m.s;
    s.dresidual = a.take<floatX>(BT * c.D);
    s.dln = a.take<floatX>(BT * c.D);
    s.dswiglu = a.take<floatX>(BT * c.F);
    s.dup = a.take<floatX>(BT * 2 * c.F);
    s.dgnorm_out = has_m ? a.take<floatX>(BT * L.NV()) : nullptr;
    s.dscan_y = has_m ? a.take<floatX>(BT * L.NV()) : nullptr;
    s.dproj = has_m ? a.take<floatX>(BT * L.Cp_stride()) : nullptr;
    s.dqkv = has_m ? a.take<float>(BT * L.Cc()) : nullptr;
    s.dforget = has_m ? a.take<float>(BT * c.N) : nullptr;
    s.dattn_y = has_a ? a.take<floatX>(BT * c.D) : nullptr;
    s.dattn_qkv = has_a ? a.take<floatX>(BT * 3 * c.D) : nullptr;
    s.rope_cos_sin = has_a && c.rope ? a.take<float2>((size_t)m.T * (c.D / c.heads / 2)) : nullptr;
    size_t partials = std::max(rmsnorm_backward_scratch_floats((int)BT, c.D), global_norm_scratch_floats());
    if (has_m)
        partials = std::max({partials, m2rnn_gate_backward_scratch_floats(L, (int)BT),
                             m2rnn_input_backward_scratch_floats(L, m.B, m.T),
                             m2rnn_scan_backward_scratch_floats(L, m.B, m.T, m.chunk)});
    s.partials = a.take<float>(partials);
    m.mm.workspace = a.take<char>(MATMUL_WORKSPACE_BYTES);
    s.h0 = has_m ? a.take<float>((size_t)m.B * c.N * c.K * c.V) : nullptr;  // last: the others' places as without it
}

void gpu_model_arena_bytes(const Config& c, int B, int T, int chunk, size_t bytes[3], Distributed* dist) {
    GPUModel m;
    m.c = c;
    m.table = parameter_table_build(c);
    m.B = B; m.T = T; m.chunk = chunk;
    plan_shards(m, dist);
    Carver a{nullptr, 0};
    carve_parameters(m, a);
    bytes[0] = a.used;
    a = Carver{nullptr, 0};
    carve_gradients(m, a);
    bytes[1] = a.used;
    a = Carver{nullptr, 0};
    carve_activations(m, a);
    bytes[2] = a.used;
}

static std::string gib(size_t bytes) {
    char buf[32];
    snprintf(buf, sizeof(buf), "%.2f GiB", bytes / 1073741824.0);
    return buf;
}

bool gpu_model_check_config(const Config& c, std::string& err) {
    if (!config_validate(c, err)) return false;
    if (config_count(c, 'M') > 0 && c.K * c.V > M2RNN_SCAN_MAX_STATE) {
        err = "K·V = " + std::to_string(c.K * c.V) + ": the M2RNN scan kernels hold at most " +
              std::to_string(M2RNN_SCAN_MAX_STATE) + " state elements per head";
        return false;
    }
    if (config_count(c, 'A') > 0 && !attention_supports_head_size(c.D / c.heads)) {
        err = "heads = " + std::to_string(c.heads) + ": the head size D/heads = " + std::to_string(c.D / c.heads) +
              " is not one the attention kernels take (8, 16, 32, 64 or 128)";
        return false;
    }
    if (config_count(c, 'M') > 0 && (c.V > 32 || (c.V & (c.V - 1)) != 0)) {
        err = "V = " + std::to_string(c.V) + ": the M2RNN scan kernels need a power of two up to 32 (a row of the "
              "state stays inside one warp)";
        return false;
    }
    return true;
}

bool gpu_model_init(GPUModel& m, const Config& c, int B, int T, std::string& err, Distributed* dist) {
    if (!gpu_model_check_config(c, err)) return false;
    m.c = c;
    m.table = parameter_table_build(c);
    m.B = B; m.T = T; m.chunk = M2RNN_SCAN_CHUNK;
    plan_shards(m, dist);
    m.classifier_rows = classifier_chunk_rows(c, B * T);
    m.adam_step = 0;
    gpu_model_arena_bytes(c, B, T, m.chunk, m.arena_bytes, dist);
    const size_t need = m.arena_bytes[0] + m.arena_bytes[1] + m.arena_bytes[2];
    size_t free_bytes = 0, total_bytes = 0;
    cudaCheck(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (need > free_bytes) {
        err = "the model needs " + gib(need) + " of GPU memory (parameters " + gib(m.arena_bytes[0]) +
              ", gradients + optimizer " + gib(m.arena_bytes[1]) + ", activations " + gib(m.arena_bytes[2]) +
              ") but the GPU has " + gib(free_bytes) + " free of " + gib(total_bytes) +
              "; a smaller batch (-b) or sequence length (-t) shrinks the activations";
        return false;
    }
    for (int i = 0; i < 3; i++) cudaCheck(cudaMalloc(&m.arenas[i], m.arena_bytes[i]));
    Carver p{m.arenas[0], 0}, g{m.arenas[1], 0}, a{m.arenas[2], 0};
    carve_parameters(m, p);
    carve_gradients(m, g);
    carve_activations(m, a);
    cudaCheck(cudaMemset(m.arenas[1], 0, m.arena_bytes[1]));
    cudaCheck(cudaStreamCreate(&m.stream));
    m.timer.stream = m.stream;
    matmul_init(m.mm, m.mm.workspace);
    m.host_losses.assign((size_t)B * T, 0.0f);
    m.host_token_groups.assign(encoder_groups_ints(B, T), 0);
    m.n_token_groups = 0;
    m.decay_runs = parameter_decay_runs(m.table);
    return true;
}

void gpu_model_free(GPUModel& m) {
    step_timer_free(m.timer);
    matmul_destroy(m.mm);
    cudaCheck(cudaStreamDestroy(m.stream));
    for (int i = 0; i < 3; i++) cudaCheck(cudaFree(m.arenas[i]));
}

void gpu_model_set_params(GPUModel& m, const float* host_params) {
    cudaCheck(cudaMemcpy(m.params, host_params, m.table.total * sizeof(float), cudaMemcpyHostToDevice));
#if !defined(ENABLE_FP32)
    copy_to_floatX(m.params_lowp, m.params, m.table.total, m.stream);
#endif
    cudaCheck(cudaStreamSynchronize(m.stream));
}

void gpu_model_get_params(GPUModel& m, float* host_params) {
    cudaCheck(cudaStreamSynchronize(m.stream));
    cudaCheck(cudaMemcpy(host_params, m.params, m.table.total * sizeof(float), cudaMemcpyDeviceToHost));
}

void gpu_model_get_grads(GPUModel& m, float* host_grads) {
    cudaCheck(cudaStreamSynchronize(m.stream));
    cudaCheck(cudaMemcpy(host_grads, m.grads, m.table.total * sizeof(float), cudaMemcpyDeviceToHost));
}

void gpu_model_get_optimizer(GPUModel& m, float* host_m, float* host_v) {
    const std::pair<const float*, float*> moments[2] = {{m.adam_m, host_m}, {m.adam_v, host_v}};
    cudaCheck(cudaStreamSynchronize(m.stream));
    for (auto [moment, host] : moments) {
        const float* full = moment;
        if (m.zero) {  // every process's shard of the moment, gathered in the gradient arena
            cudaCheck(cudaMemcpyAsync(m.grads + m.shard_offset, moment, m.shard_numel * sizeof(float),
                                      cudaMemcpyDeviceToDevice, m.stream));
            distributed_all_gather(*m.dist, m.grads, m.shard_numel, m.stream, "optimizer state gather");
            full = m.grads;
        }
        if (host) cudaCheck(cudaMemcpy(host, full, m.table.total * sizeof(float), cudaMemcpyDeviceToHost));
    }
    // the gradient arena back to zeros: the next step's norm reads its padding
    if (m.zero) cudaCheck(cudaMemset(m.grads, 0, m.padded_total * sizeof(float)));
}

void gpu_model_set_optimizer(GPUModel& m, const float* host_m, const float* host_v, int adam_step) {
    const IndexRange mine = range_in_shard(0, m.table.total, m.shard_numel, m.zero ? m.dist->rank : 0);
    if (mine.numel > 0) {
        cudaCheck(cudaMemcpy(m.adam_m, host_m + mine.offset, mine.numel * sizeof(float), cudaMemcpyHostToDevice));
        cudaCheck(cudaMemcpy(m.adam_v, host_v + mine.offset, mine.numel * sizeof(float), cudaMemcpyHostToDevice));
    }
    m.adam_step = adam_step;
}

// ---------------------------------------------------------------- the steps

// Marks the start of a launch group of `family` for the step profile (model/step_timer.h) and returns the stream
// to launch it on, so that every launch names its family where it is made.
static cudaStream_t timed(GPUModel& m, StepFamily family) {
    step_timer_mark(m.timer, family);
    return m.stream;
}

// Layer l's tensor of a kind: its fp32 master copy, its floatX copy (the GEMM weights), its gradient.
static const float* param(const GPUModel& m, int l, ParamKind kind) {
    return m.params + param_offset(m.table, l, kind);
}
static const floatX* weight(const GPUModel& m, int l, ParamKind kind) {
    return m.params_lowp + param_offset(m.table, l, kind);
}
static float* grad(GPUModel& m, int l, ParamKind kind) { return m.grads + param_offset(m.table, l, kind); }
// The same for the model's global tensors (wte, lnf, lm_head), by their index in the table.
static size_t global_offset(const GPUModel& m, int index) { return m.table.tensors[index].offset; }

// The mixer's output joins the residual in its out-projection's epilogue: a.residual2 = a.residual + mixer(ln1).
// The scan starts from generation's carried state, from a training forward's random one (noise), or from zero.
static void m2rnn_mixer_forward(GPUModel& m, GPULayer& a, int l, int B, int T, GPUCarryLayer* carry,
                                StateNoise noise) {
    const M2RNNLayout L = config_m2rnn_layout(m.c);
    const int n = B * T;
    // over in_proj's zero rows too (model_math.h: Cp_stride), for the GEMM's sake
    matmul_forward(m.mm, a.proj, a.ln1, weight(m, l, P_IN_PROJ), n, m.c.D, L.Cp_stride(), timed(m, FAMILY_GEMM));
    if (carry)
        m2rnn_input_step(a.qkv, a.forget, carry->conv_history, a.proj, param(m, l, P_CONV), param(m, l, P_A_LOG),
                         param(m, l, P_DT_BIAS), L, B, timed(m, FAMILY_M2RNN_IO));
    else
        m2rnn_input_forward(a.qkv, a.forget, a.proj, param(m, l, P_CONV), param(m, l, P_A_LOG), param(m, l, P_DT_BIAS),
                            L, B, T, timed(m, FAMILY_M2RNN_IO));
    float* state = carry ? carry->state : nullptr;
    if (noise.amplitude > 0) {  // the scan leaves its last state in s.h0, which the next M layer fills again
        state = m.s.h0;
        m2rnn_initial_state_fill(state, noise, l, L, B, timed(m, FAMILY_SCAN));
    }
    m2rnn_scan_forward(a.scan_y, a.checkpoints, state, a.qkv, a.forget, param(m, l, P_W), L, B, T, m.chunk,
                       timed(m, FAMILY_SCAN));
    m2rnn_gate_forward(a.gnorm_out, a.gnorm_rstd, a.scan_y, a.qkv, a.proj, param(m, l, P_SKIP), param(m, l, P_GNORM), L,
                       n, timed(m, FAMILY_M2RNN_IO));
    matmul_forward_residual(m.mm, a.residual2, a.residual, a.gnorm_out, weight(m, l, P_OUT_PROJ), n, L.NV(), m.c.D,
                            timed(m, FAMILY_GEMM));
}

static void attention_mixer_forward(GPUModel& m, GPULayer& a, int l, int B, int T, GPUCarry* carry) {
    const Config& c = m.c;
    const int n = B * T;
    matmul_forward(m.mm, a.attn_qkv, a.ln1, weight(m, l, P_QKV), n, c.D, 3 * c.D, timed(m, FAMILY_GEMM));
    if (carry)
        attention_step(a.attn_y, carry->layers[l].k_cache, carry->layers[l].v_cache, a.attn_qkv, carry->t,
                       carry->max_len, B, c.D, c.heads, c.rope, timed(m, FAMILY_ATTENTION));
    else
        attention_forward(a.attn_y, a.attn_lse, a.attn_qkv, m.s.rope_cos_sin, B, T, c.D, c.heads,
                          timed(m, FAMILY_ATTENTION));
    matmul_forward_residual(m.mm, a.residual2, a.residual, a.attn_y, weight(m, l, P_ATTN_OUT), n, c.D, c.D,
                            timed(m, FAMILY_GEMM));
}

void gpu_model_layers_forward(GPUModel& m, GPUActivations& x, int B, int T, GPUCarry* carry, StateNoise noise) {
    const Config& c = m.c;
    const int n = B * T, D = c.D;
    rmsnorm_forward(x.layers[0].ln1, x.layers[0].ln1_rstd, x.layers[0].residual, param(m, 0, P_LN1), n, D,
                    timed(m, FAMILY_NORM));
    for (int l = 0; l < c.L; l++) {
        GPULayer& a = x.layers[l];
        if (c.pattern[l] == 'M')
            m2rnn_mixer_forward(m, a, l, B, T, carry ? &carry->layers[l] : nullptr, noise);
        else
            attention_mixer_forward(m, a, l, B, T, carry);
        rmsnorm_forward(a.ln2, a.ln2_rstd, a.residual2, param(m, l, P_LN2), n, D, timed(m, FAMILY_NORM));
        matmul_forward(m.mm, a.up, a.ln2, weight(m, l, P_UP), n, D, 2 * c.F, timed(m, FAMILY_GEMM));
        swiglu_forward(a.swiglu, a.up, n, c.F, timed(m, FAMILY_MLP));
        // the MLP's output joins the residual in the down-projection's epilogue, normalised by the next layer's
        // ln1 or by lnf after the last
        const bool last = l + 1 == c.L;
        floatX* next = last ? x.final_residual : x.layers[l + 1].residual;
        matmul_forward_residual(m.mm, next, a.residual2, a.swiglu, weight(m, l, P_DOWN), n, c.F, D,
                                timed(m, FAMILY_GEMM));
        if (last)
            rmsnorm_forward(x.lnf, x.lnf_rstd, next, m.params + global_offset(m, m.table.lnf), n, D,
                            timed(m, FAMILY_NORM));
        else
            rmsnorm_forward(x.layers[l + 1].ln1, x.layers[l + 1].ln1_rstd, next, param(m, l + 1, P_LN1), n, D,
                            timed(m, FAMILY_NORM));
    }
}

// Logits of the positions r0 … r0+rows−1 into m.logits: those rows of lnf times lm_headᵀ.
static void classifier_logits(GPUModel& m, int r0, int rows) {
    if (m.classifier_rows < 1 || m.classifier_rows > classifier_chunk_rows(m.c, m.B * m.T)) {
        fprintf(stderr, "classifier_rows = %d: must be in [1, %d], the rows the logits buffer holds\n",
                m.classifier_rows, classifier_chunk_rows(m.c, m.B * m.T));
        exit(EXIT_FAILURE);
    }
    const floatX* lm_head = m.params_lowp + global_offset(m, m.table.lm_head);
    matmul_forward(m.mm, m.logits, m.acts.lnf + (size_t)r0 * m.c.D, lm_head, rows, m.c.D, m.c.Vp,
                   timed(m, FAMILY_CLASSIFIER));
}

// The classifier chunk by chunk: logits and cross-entropy losses; with dloss > 0 (a training forward) each
// chunk's backward follows while its dlogits exist: its rows of dlnf (into s.dln, where gpu_model_backward
// starts) and its part of lm_head's gradient.
static void classifier_forward_backward(GPUModel& m, float dloss) {
    const int BT = m.B * m.T, D = m.c.D;
    for (int r0 = 0; r0 < BT; r0 += m.classifier_rows) {
        const int rows = std::min(m.classifier_rows, BT - r0);
        classifier_logits(m, r0, rows);
        crossentropy_forward_backward(m.losses + r0, m.logits, m.tokens, r0, rows, m.T, m.c.vocab, m.c.Vp, dloss,
                                      timed(m, FAMILY_CLASSIFIER));
        if (dloss > 0.0f)
            matmul_backward(m.mm, m.s.dln + (size_t)r0 * D, m.grads + global_offset(m, m.table.lm_head), m.logits,
                            m.acts.lnf + (size_t)r0 * D, m.params_lowp + global_offset(m, m.table.lm_head), rows, D,
                            m.c.Vp, timed(m, FAMILY_CLASSIFIER));
    }
}

float gpu_model_forward(GPUModel& m, const int* host_tokens, int grad_accum_steps, StateNoise noise) {
    const Config& c = m.c;
    const int B = m.B, T = m.T, BT = B * T;
    cudaStream_t st = timed(m, FAMILY_OTHER);
    cudaCheck(cudaMemcpyAsync(m.tokens, host_tokens, sizeof(int) * B * (T + 1), cudaMemcpyHostToDevice, st));
    if (m.s.rope_cos_sin) rope_table(m.s.rope_cos_sin, T, c.D / c.heads, timed(m, FAMILY_ATTENTION));
    encoder_forward(m.acts.layers[0].residual, m.params_lowp + global_offset(m, m.table.wte), m.tokens, B, T, c.D,
                    timed(m, FAMILY_EMBEDDING));
    gpu_model_layers_forward(m, m.acts, B, T, nullptr, noise);
    classifier_forward_backward(m, grad_accum_steps > 0 ? 1.0f / ((float)BT * grad_accum_steps) : 0.0f);
    st = timed(m, FAMILY_OTHER);
    // the embedding backward's groups, sorted on the host while the GPU runs the forward launched above
    if (grad_accum_steps > 0) {
        m.n_token_groups = encoder_group_positions(m.host_token_groups.data(), host_tokens, B, T);
        cudaCheck(cudaMemcpyAsync(m.token_groups, m.host_token_groups.data(), sizeof(int) * m.host_token_groups.size(),
                                  cudaMemcpyHostToDevice, st));
    }
    cudaCheck(cudaMemcpyAsync(m.host_losses.data(), m.losses, sizeof(float) * BT, cudaMemcpyDeviceToHost, st));
    cudaCheck(cudaStreamSynchronize(st));
    double loss = 0;
    for (float x : m.host_losses) loss += x;
    return (float)(loss / BT);
}

void gpu_model_get_logits(GPUModel& m, float* host_logits) {
    const int BT = m.B * m.T, Vp = m.c.Vp;
    std::vector<floatX> staging;
    for (int r0 = 0; r0 < BT; r0 += m.classifier_rows) {
        const int rows = std::min(m.classifier_rows, BT - r0);
        classifier_logits(m, r0, rows);
        download_as_float(host_logits + (size_t)r0 * Vp, staging, m.logits, (size_t)rows * Vp, m.stream);
    }
}

void gpu_model_zero_grad(GPUModel& m) {
    cudaCheck(cudaMemsetAsync(m.grads, 0, m.table.total * sizeof(float), m.stream));
}

// The M²RNN mixer's backward, from the gradient of its output (the residual stream's, dresidual) to dln.
static void m2rnn_mixer_backward(GPUModel& m, const GPULayer& a, int l) {
    const M2RNNLayout L = config_m2rnn_layout(m.c);
    const int B = m.B, T = m.T, BT = B * T;
    GPUScratch& s = m.s;
    matmul_backward(m.mm, s.dgnorm_out, grad(m, l, P_OUT_PROJ), s.dresidual, a.gnorm_out, weight(m, l, P_OUT_PROJ), BT,
                    L.NV(), m.c.D, timed(m, FAMILY_GEMM));
    cudaStream_t st = timed(m, FAMILY_M2RNN_IO);
    cudaCheck(cudaMemsetAsync(s.dqkv, 0, sizeof(float) * BT * L.Cc(), st));  // the gate and the scan add into it
    m2rnn_gate_backward(s.dscan_y, s.dqkv, s.dproj, grad(m, l, P_SKIP), grad(m, l, P_GNORM), s.partials, s.dgnorm_out,
                        a.scan_y, a.qkv, a.proj, param(m, l, P_SKIP), param(m, l, P_GNORM), a.gnorm_rstd, L, BT, st);
    m2rnn_scan_backward(s.dqkv, s.dforget, grad(m, l, P_W), s.partials, s.dscan_y, a.qkv, a.forget, param(m, l, P_W),
                        a.checkpoints, (float)m.c.clip, L, B, T, m.chunk, timed(m, FAMILY_SCAN));
    m2rnn_input_backward(s.dproj, grad(m, l, P_CONV), grad(m, l, P_A_LOG), grad(m, l, P_DT_BIAS), s.partials, s.dqkv,
                         s.dforget, a.proj, param(m, l, P_CONV), param(m, l, P_A_LOG), param(m, l, P_DT_BIAS), L, B, T,
                         timed(m, FAMILY_M2RNN_IO));
    // dproj's extra columns are zero: they add nothing to dln, and in_proj's extra gradient rows stay zero
    matmul_backward(m.mm, s.dln, grad(m, l, P_IN_PROJ), s.dproj, a.ln1, weight(m, l, P_IN_PROJ), BT, m.c.D,
                    L.Cp_stride(), timed(m, FAMILY_GEMM));
}

// The attention mixer's backward, from dresidual to dln.
static void attention_mixer_backward(GPUModel& m, const GPULayer& a, int l) {
    const Config& c = m.c;
    const int BT = m.B * m.T;
    GPUScratch& s = m.s;
    matmul_backward(m.mm, s.dattn_y, grad(m, l, P_ATTN_OUT), s.dresidual, a.attn_y, weight(m, l, P_ATTN_OUT), BT, c.D,
                    c.D, timed(m, FAMILY_GEMM));
    attention_backward(s.dattn_qkv, s.dattn_y, a.attn_y, a.attn_lse, a.attn_qkv, s.rope_cos_sin, m.B, m.T, c.D,
                       c.heads, timed(m, FAMILY_ATTENTION));
    matmul_backward(m.mm, s.dln, grad(m, l, P_QKV), s.dattn_qkv, a.ln1, weight(m, l, P_QKV), BT, c.D, 3 * c.D,
                    timed(m, FAMILY_GEMM));
}

void gpu_model_backward(GPUModel& m) {
    const Config& c = m.c;
    const int BT = m.B * m.T, D = c.D;
    GPUScratch& s = m.s;
    GPUActivations& x = m.acts;
    // dproj's columns past Cp, which no kernel writes, must be zero for in_proj's backward GEMM (Cp_stride)
    const M2RNNLayout L = config_m2rnn_layout(c);
    if (s.dproj && L.Cp_stride() > L.Cp())
        cudaCheck(cudaMemset2DAsync(s.dproj + L.Cp(), sizeof(floatX) * L.Cp_stride(), 0,
                                    sizeof(floatX) * (L.Cp_stride() - L.Cp()), BT, timed(m, FAMILY_M2RNN_IO)));
    // the training forward ran the classifier's backward: dlnf is in s.dln, lm_head's gradient in the arena
    rmsnorm_backward(s.dresidual, m.grads + global_offset(m, m.table.lnf), s.partials, s.dln, x.final_residual,
                     m.params + global_offset(m, m.table.lnf), x.lnf_rstd, BT, D, false, timed(m, FAMILY_NORM));
    for (int l = c.L - 1; l >= 0; l--) {
        const GPULayer& a = x.layers[l];
        matmul_backward(m.mm, s.dswiglu, grad(m, l, P_DOWN), s.dresidual, a.swiglu, weight(m, l, P_DOWN), BT, c.F, D,
                        timed(m, FAMILY_GEMM));
        swiglu_backward(s.dup, s.dswiglu, a.up, BT, c.F, timed(m, FAMILY_MLP));
        matmul_backward(m.mm, s.dln, grad(m, l, P_UP), s.dup, a.ln2, weight(m, l, P_UP), BT, D, 2 * c.F,
                        timed(m, FAMILY_GEMM));
        rmsnorm_backward(s.dresidual, grad(m, l, P_LN2), s.partials, s.dln, a.residual2, param(m, l, P_LN2),
                         a.ln2_rstd, BT, D, true, timed(m, FAMILY_NORM));
        // the mixer's output joined the residual unchanged: its gradient is dresidual
        if (c.pattern[l] == 'M')
            m2rnn_mixer_backward(m, a, l);
        else
            attention_mixer_backward(m, a, l);
        rmsnorm_backward(s.dresidual, grad(m, l, P_LN1), s.partials, s.dln, a.residual, param(m, l, P_LN1), a.ln1_rstd,
                         BT, D, true, timed(m, FAMILY_NORM));
    }
    encoder_backward(m.grads + global_offset(m, m.table.wte), s.dresidual, m.token_groups, m.n_token_groups, m.B, m.T,
                     D, timed(m, FAMILY_EMBEDDING));
}

float gpu_model_grad_norm(GPUModel& m) {
    m.adam_step++;
    // the global batch's gradient: the sum over processes, each of which scaled its loss by its share
    cudaStream_t st = timed(m, FAMILY_COMMS);
    if (m.zero)
        distributed_reduce_scatter_sum(*m.dist, m.grads, m.shard_numel, st, "gradient reduce-scatter");
    else if (m.dist)
        distributed_all_reduce_sum(*m.dist, m.grads, m.table.total, st, "gradient all-reduce");
    st = timed(m, FAMILY_OPTIMIZER);
    global_norm_squared(m.norm_squared, m.s.partials, m.grads + m.shard_offset, m.shard_numel, st);
    if (m.zero) distributed_all_reduce_sum(*m.dist, m.norm_squared, 1, st, "gradient norm all-reduce");
    float norm_squared = 0;
    cudaCheck(cudaMemcpyAsync(&norm_squared, m.norm_squared, sizeof(float), cudaMemcpyDeviceToHost, st));
    cudaCheck(cudaStreamSynchronize(st));
    return sqrtf(norm_squared);
}

void gpu_model_update(GPUModel& m, float lr, float beta1, float beta2, float eps, float weight_decay,
                      float max_grad_norm) {
    cudaStream_t st = timed(m, FAMILY_OPTIMIZER);
    for (const DecayRun& r : m.decay_runs) {
        const IndexRange part = range_in_shard(r.offset, r.numel, m.shard_numel, m.zero ? m.dist->rank : 0);
        if (part.numel == 0) continue;
        const size_t i = part.offset, in_shard = part.offset - m.shard_offset;
        floatX* lowp = nullptr;
#if !defined(ENABLE_FP32)
        if (!m.zero) lowp = m.params_lowp + i;  // with ZeRO-1 the whole copy is refreshed after the all-gather
#endif
        adamw_update(m.params + i, lowp, m.grads + i, m.adam_m + in_shard, m.adam_v + in_shard, part.numel,
                     m.adam_step, lr, beta1, beta2, eps, r.decay ? weight_decay : 0.0f, m.norm_squared,
                     max_grad_norm, st);
    }
    if (m.zero) {
        st = timed(m, FAMILY_COMMS);
        distributed_all_gather(*m.dist, m.params, m.shard_numel, st, "parameter all-gather");
#if !defined(ENABLE_FP32)
        copy_to_floatX(m.params_lowp, m.params, m.table.total, st);
#endif
    }
    cudaCheck(cudaStreamSynchronize(m.stream));
}
