// The learning-rate schedule (docs/model.md §8): linear warmup over `warmup` steps, then cosine decay from
// lr to lr·final_frac at the last step. Steps count from 0.
#pragma once
#include <cmath>

inline double lr_schedule(int step, int max_steps, int warmup, double lr, double final_frac) {
    if (step < warmup) return lr * (step + 1) / warmup;
    const double lr_min = lr * final_frac;
    if (max_steps <= warmup) return lr_min;
    double progress = (double)(step - warmup) / (max_steps - warmup);
    if (progress > 1.0) progress = 1.0;
    return lr_min + 0.5 * (1.0 + cos(M_PI * progress)) * (lr - lr_min);
}
