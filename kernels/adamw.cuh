// The optimizer: the global gradient norm and AdamW with global-norm clipping. Fuses the reference steps
// reference_grad_norm and reference_adamw (with its grad_scale), all on the device: the clip factor is read
// from the device scalar the norm kernel wrote, so a training step needs no host synchronisation.
//
// Shapes: grads, params, m, v (n) fp32, contiguous runs of the parameter / gradient / moment arenas;
//         params_lowp (n) floatX, the copy of the parameters the GEMMs read (may be null);
//         norm_squared a single fp32 on the device; scratch global_norm_scratch_floats() fp32.
//   global_norm_squared:  *norm_squared = Σ_i grads[i]²   deterministic: each block writes its partial sum to
//                         scratch, sum_partials adds them in a fixed order (no atomics)
//   adamw_update, per element (model_math.h: adamw_element), with s = min(1, max_norm / sqrt(*norm_squared))
//   (s = 1 when max_norm <= 0):
//     g = s · grad;  m = β1 m + (1−β1) g;  v = β2 v + (1−β2) g²
//     p −= lr · ( (m / (1−β1^step)) / (sqrt(v / (1−β2^step)) + ε) + weight_decay · p )      step is 1-based
//   The caller launches adamw_update once per run of tensors that share a decay setting (weight_decay 0 for
//   the others), after one global_norm_squared over the whole gradient arena. A thread updates W consecutive
//   elements: W = 4 (16-byte accesses of the fp32 arrays) when n and the pointers allow it, as the runs of the
//   parameter arena do (model/parameters.h: PARAM_ALIGN); the kernel only streams memory.
#pragma once
#include "common.cuh"

static const int ADAMW_THREADS = 256;
static const int NORM_THREADS = 512;
static const int NORM_MAX_BLOCKS = 1024;

// grid-stride sum of squares; block b writes its sum to partials[b]
static __global__ void global_norm_squared_kernel(float* partials, const float* grads, size_t n) {
    __shared__ float scratch[32];
    float acc = 0.0f;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        acc += grads[i] * grads[i];
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// grid ceil(n / (W·ADAMW_THREADS)), block ADAMW_THREADS; n a multiple of W
template <int W>
static __global__ void adamw_kernel(float* __restrict__ params, floatX* __restrict__ params_lowp,
                                    const float* __restrict__ grads, float* __restrict__ m, float* __restrict__ v,
                                    size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                                    float bias_correction1, float bias_correction2, const float* norm_squared,
                                    float max_norm) {
    using FloatPack = ValuePack<float, W>;
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n / W) return;
    const float scale = max_norm > 0.0f ? fminf(1.0f, max_norm / sqrtf(*norm_squared)) : 1.0f;
    FloatPack p = reinterpret_cast<FloatPack*>(params)[i], mi = reinterpret_cast<FloatPack*>(m)[i],
              vi = reinterpret_cast<FloatPack*>(v)[i];
    const FloatPack g = reinterpret_cast<const FloatPack*>(grads)[i];
    FloatXPack<W> lowp;
#pragma unroll
    for (int u = 0; u < W; u++) {
        adamw_element(p.v[u], mi.v[u], vi.v[u], scale * g.v[u], lr, beta1, beta2, eps, weight_decay,
                      bias_correction1, bias_correction2);
        lowp.v[u] = from_float<floatX>(p.v[u]);
    }
    reinterpret_cast<FloatPack*>(m)[i] = mi;
    reinterpret_cast<FloatPack*>(v)[i] = vi;
    reinterpret_cast<FloatPack*>(params)[i] = p;
    if (params_lowp) reinterpret_cast<FloatXPack<W>*>(params_lowp)[i] = lowp;
}

// Floats of scratch global_norm_squared needs: one partial sum per block.
static inline size_t global_norm_scratch_floats() { return NORM_MAX_BLOCKS; }

static inline void global_norm_squared(float* norm_squared, float* scratch, const float* grads, size_t n,
                                       cudaStream_t stream) {
    cudaCheck(cudaMemsetAsync(norm_squared, 0, sizeof(float), stream));
    if (n == 0) return;
    const size_t needed = ceil_div(n, (size_t)NORM_THREADS);
    const int blocks = needed < (size_t)NORM_MAX_BLOCKS ? (int)needed : NORM_MAX_BLOCKS;
    global_norm_squared_kernel<<<blocks, NORM_THREADS, 0, stream>>>(scratch, grads, n);
    cudaCheckLaunch();
    sum_partials(norm_squared, scratch, blocks, 1, stream);
}

// norm_squared: the device scalar global_norm_squared wrote (unused, and may be null, when max_norm <= 0).
static inline void adamw_update(float* params, floatX* params_lowp, const float* grads, float* m, float* v, size_t n,
                                int step, float lr, float beta1, float beta2, float eps, float weight_decay,
                                const float* norm_squared, float max_norm, cudaStream_t stream) {
    if (n == 0) return;
    const float bias_correction1 = (float)(1.0 - pow((double)beta1, step));
    const float bias_correction2 = (float)(1.0 - pow((double)beta2, step));
    const bool packed = n % 4 == 0 && aligned16({params, grads, m, v}) &&
                        reinterpret_cast<uintptr_t>(params_lowp) % (4 * sizeof(floatX)) == 0;
    if (packed)
        adamw_kernel<4><<<ceil_div(n, (size_t)4 * ADAMW_THREADS), ADAMW_THREADS, 0, stream>>>(
            params, params_lowp, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, bias_correction1,
            bias_correction2, norm_squared, max_norm);
    else
        adamw_kernel<1><<<ceil_div(n, (size_t)ADAMW_THREADS), ADAMW_THREADS, 0, stream>>>(
            params, params_lowp, grads, m, v, n, lr, beta1, beta2, eps, weight_decay, bias_correction1,
            bias_correction2, norm_squared, max_norm);
    cudaCheckLaunch();
}
