#include "cpu_model.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

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

void cpu_model_zero_grad(CPUModel& m) { std::fill(m.grads.begin(), m.grads.end(), 0.0f); }

float cpu_model_forward(CPUModel& m, const int* tokens, int grad_accum_steps) {
    if (grad_accum_steps > 0) m.grad_accum_steps = grad_accum_steps;
    return (float)reference_forward(m.ref, m.params.data(), tokens);
}

// The reference adds the gradient of each micro-batch's mean loss; cpu_model_update divides the sum by their count.
void cpu_model_backward(CPUModel& m) { reference_backward(m.ref, m.params.data(), m.grads.data()); }

float cpu_model_update(CPUModel& m, float lr, float beta1, float beta2, float eps, float weight_decay,
                       float max_grad_norm) {
    m.adam_step++;
    const double mean = 1.0 / m.grad_accum_steps;
    const double norm = reference_grad_norm(m.grads.data(), m.grads.size()) * mean;
    const double clip = max_grad_norm > 0 && norm > max_grad_norm ? max_grad_norm / norm : 1.0;
    reference_adamw(m.ref.table, m.params.data(), m.grads.data(), m.adam_m.data(), m.adam_v.data(), m.adam_step, lr,
                    beta1, beta2, eps, weight_decay, clip * mean);
    return (float)norm;
}

void cpu_model_decoder_reset(CPUModel& m) { m.prefix.clear(); }

const float* cpu_model_decoder_step(CPUModel& m, int token) {
    const int t = (int)m.prefix.size();
    if (t >= m.decoder.T) {
        fprintf(stderr, "cpu_model_decoder_step: position %d is past the %d the decoder holds\n", t, m.decoder.T);
        exit(EXIT_FAILURE);
    }
    m.prefix.push_back(token);
    std::vector<int> tokens(m.prefix);
    tokens.push_back(0);  // the target slot of reference_layers_forward's (B, T+1) layout, never read
    reference_layers_forward(m.decoder, m.params.data(), tokens.data(), t + 1);
    const ParameterTable& pt = m.decoder.table;
    matmul_forward(m.next_logits.data(), m.decoder.lnf.data() + (size_t)t * m.c.D,
                   m.params.data() + pt.tensors[pt.lm_head].offset, 1, m.c.D, m.c.Vp);
    return m.next_logits.data();
}
