#include "cpu_model.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sys/resource.h>

void cpu_model_init(CPUModel& m, const Config& c, int B, int T, int max_len, const std::vector<float>& params) {
    m.c = c;
    reference_init(m.ref, c, B, T);
    if (max_len > 0) reference_init(m.decoder, c, 1, max_len);
    const size_t total = m.ref.table.total;
    m.params = params;
    m.grads.assign(total, 0.0f);
    m.adam_m.assign(total, 0.0f);
    m.adam_v.assign(total, 0.0f);
    m.next_logits.assign(c.Vp, 0.0f);
}

void cpu_model_set_optimizer(CPUModel& m, const float* adam_m, const float* adam_v, int adam_step) {
    m.adam_m.assign(adam_m, adam_m + m.adam_m.size());
    m.adam_v.assign(adam_v, adam_v + m.adam_v.size());
    m.adam_step = adam_step;
}

void CPUModel::zero_grad() { std::fill(grads.begin(), grads.end(), 0.0f); }

float CPUModel::forward(const int* tokens, int accum, StateNoise noise) {
    if (accum > 0) grad_accum_steps = accum;
    return (float)reference_forward(ref, params.data(), tokens, noise);
}

void CPUModel::logits(float* out) { std::copy(ref.logits.begin(), ref.logits.end(), out); }

void CPUModel::backward() { reference_backward(ref, params.data(), grads.data()); }

float CPUModel::grad_norm() {
    adam_step++;
    norm = reference_grad_norm(grads.data(), grads.size()) * (1.0 / grad_accum_steps);
    return (float)norm;
}

void CPUModel::update(float lr, float beta1, float beta2, float eps, float weight_decay, float max_grad_norm) {
    const double clip = max_grad_norm > 0 && norm > max_grad_norm ? max_grad_norm / norm : 1.0;
    reference_adamw(ref.table, params.data(), grads.data(), adam_m.data(), adam_v.data(), adam_step, lr, beta1, beta2,
                    eps, weight_decay, clip * (1.0 / grad_accum_steps));
}

void CPUModel::get_state(float* to_params, float* to_m, float* to_v) {
    if (to_params) std::copy(params.begin(), params.end(), to_params);
    if (to_m) std::copy(adam_m.begin(), adam_m.end(), to_m);
    if (to_v) std::copy(adam_v.begin(), adam_v.end(), to_v);
}

void CPUModel::decoder_reset() { prefix.clear(); }

const float* CPUModel::decoder_step(int token) {
    const int t = (int)prefix.size();
    if (t >= decoder.T) {
        fprintf(stderr, "CPUModel::decoder_step: position %d is past the %d the decoder holds\n", t, decoder.T);
        exit(EXIT_FAILURE);
    }
    prefix.push_back(token);
    std::vector<int> tokens(prefix);
    tokens.push_back(0);  // the target slot of reference_layers_forward's (B, T+1) layout, never read
    reference_layers_forward(decoder, params.data(), tokens.data(), t + 1);
    const ParameterTable& pt = decoder.table;
    matmul_forward(next_logits.data(), decoder.lnf.data() + (size_t)t * c.D,
                   params.data() + pt.tensors[pt.lm_head].offset, 1, c.D, c.Vp);
    return next_logits.data();
}

double CPUModel::memory_gib() {  // the peak resident set: what the run has needed so far
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss / 1048576.0;  // KiB
}

std::string CPUModel::memory_lines() {
    char line[160];
    snprintf(line, sizeof(line), "# parameters %zu, parameters + gradients + AdamW %.2f GiB (fp32)\n", ref.table.count,
             4.0 * params.size() * sizeof(float) / 1073741824.0);
    return line;
}

std::string CPUModel::decoder_line() { return "each token reruns the model over the sample so far"; }
