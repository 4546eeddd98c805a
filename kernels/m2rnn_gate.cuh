// The M²RNN layer's output gate: D skip, silu(g) gate and the gnorm RMSNorm over the whole N·V vector of a
// position, in one kernel each way: the reference steps m2rnn_gate_forward and m2rnn_gate_backward, with the
// element-wise math of model/model_math.h (m2rnn_gated, rmsnorm_rstd, rmsnorm_dx and their gradients).
//
// Shapes (n_pos = B·T positions; NV, Cc, Cp of the M2RNNLayout L):
//   y     (n_pos, NV) floatX  the scan output H_tᵀ q_t (the D skip is not in it)
//   qkv   (n_pos, Cc) floatX  v of head n at column L.v_col(n)
//   proj  (n_pos, Cp) floatX  g of head n at column L.g_col(n), rows L.Cp_stride() apart (as dproj's)
//   skip (NV), gnorm (NV) fp32 parameters (D_skip and the norm's weight);  out (n_pos, NV) floatX;  rstd (n_pos) fp32
// Forward, per position:
//   gated = (y + D_skip ⊙ v) ⊙ silu(g);   r = 1/sqrt(mean(gated²) + 1e-5);   out = gated · r ⊙ gnorm
// Backward, from dout (n_pos, NV) floatX and the forward's rstd, recomputing gated from the inputs:
//   dgated = r (dout ⊙ gnorm) − r³/NV · gated · Σ_j (dout ⊙ gnorm ⊙ gated)_j
//   dy = dgated ⊙ silu(g)                     overwritten (floatX): the gradient of the scan output
//   dg = dgated ⊙ (y + D_skip ⊙ v) ⊙ silu'(g) overwritten into the g columns of dproj (floatX)
//   dv += dy ⊙ D_skip                         added into the v columns of dqkv (fp32); the scan adds its part
//   dD_skip += Σ_pos dy ⊙ v,  dgnorm += Σ_pos dout ⊙ gated · r      (parameter gradients accumulate)
//
// Work split: a block per position forward; backward, a block per GATE_ROWS_PER_BLOCK positions, each
// thread owning the same columns in every row, so its dD_skip and dgnorm partial sums live in shared memory
// (2·NV floats). Deterministic: each block writes them to scratch (m2rnn_gate_backward_scratch_floats) as
// dD_skip (n_blocks, NV) then dgnorm (n_blocks, NV), and sum_partials adds them in a fixed order; no atomics.
#pragma once
#include "common.cuh"

static const int GATE_THREADS = 256;
static const int GATE_ROWS_PER_BLOCK = 32;

// The inputs of position i's gate: its y, v and g rows.
struct GateRow {
    const floatX* y;
    const floatX* v;
    const floatX* g;
};

static __device__ __forceinline__ GateRow gate_row(const floatX* y, const floatX* qkv, const floatX* proj, int i,
                                                   const M2RNNLayout& L) {
    return GateRow{y + (size_t)i * L.NV(), qkv + (size_t)i * L.Cc() + L.v_col(0),
                   proj + (size_t)i * L.Cp_stride() + L.g_col(0)};
}

static __device__ __forceinline__ float gate_value(const GateRow& row, const float* skip, int j) {
    return m2rnn_gated(to_float(row.y[j]), skip[j], to_float(row.v[j]), to_float(row.g[j]));
}

// grid n_pos, block GATE_THREADS
static __global__ void m2rnn_gate_forward_kernel(floatX* out, float* rstd, const floatX* y, const floatX* qkv,
                                                 const floatX* proj, const float* skip, const float* gnorm,
                                                 M2RNNLayout L) {
    __shared__ float scratch[32];
    const int i = blockIdx.x, NV = L.NV();
    const GateRow row = gate_row(y, qkv, proj, i, L);
    float ss = 0.0f;
    for (int j = threadIdx.x; j < NV; j += blockDim.x) {
        const float gated = gate_value(row, skip, j);
        ss += gated * gated;
    }
    const float r = rmsnorm_rstd(block_sum(ss, scratch), NV);
    // the second pass re-reads the row (from L1) rather than holding a variable number of values per thread
    for (int j = threadIdx.x; j < NV; j += blockDim.x)
        out[(size_t)i * NV + j] = from_float<floatX>(gate_value(row, skip, j) * r * gnorm[j]);
    if (threadIdx.x == 0) rstd[i] = r;
}

// grid ceil(n_pos / GATE_ROWS_PER_BLOCK), block GATE_THREADS, dynamic shared memory 2·NV floats
static __global__ void m2rnn_gate_backward_kernel(floatX* dy, float* dqkv, floatX* dproj, float* block_partials,
                                                  const floatX* dout, const floatX* y, const floatX* qkv,
                                                  const floatX* proj, const float* skip, const float* gnorm,
                                                  const float* rstd, int n_pos, M2RNNLayout L) {
    extern __shared__ float partial[];  // dD_skip partial sums [NV], then dgnorm partial sums [NV]
    __shared__ float scratch[32];
    const int NV = L.NV();
    float* dskip_part = partial;
    float* dgnorm_part = partial + NV;
    for (int j = threadIdx.x; j < NV; j += blockDim.x) { dskip_part[j] = 0.0f; dgnorm_part[j] = 0.0f; }
    const int i_end = min((int)(blockIdx.x + 1) * GATE_ROWS_PER_BLOCK, n_pos);
    for (int i = blockIdx.x * GATE_ROWS_PER_BLOCK; i < i_end; i++) {
        const GateRow row = gate_row(y, qkv, proj, i, L);
        const floatX* dout_row = dout + (size_t)i * NV;
        float dot = 0.0f;
        for (int j = threadIdx.x; j < NV; j += blockDim.x)
            dot += to_float(dout_row[j]) * gnorm[j] * gate_value(row, skip, j);
        const float r = rstd[i], factor = rmsnorm_dx_factor(r, block_sum(dot, scratch), NV);
        for (int j = threadIdx.x; j < NV; j += blockDim.x) {
            const float v = to_float(row.v[j]), d = to_float(dout_row[j]), gated = gate_value(row, skip, j);
            const M2RNNGatedGrad<float> g = m2rnn_gated_backward(rmsnorm_dx(r, factor, d, gnorm[j], gated),
                                                                 to_float(row.y[j]), skip[j], v, to_float(row.g[j]));
            dy[(size_t)i * NV + j] = from_float<floatX>(g.dy);
            dproj[(size_t)i * L.Cp_stride() + L.g_col(0) + j] = from_float<floatX>(g.dg);
            dqkv[(size_t)i * L.Cc() + L.v_col(0) + j] += g.dy * skip[j];
            dskip_part[j] += g.dy * v;
            dgnorm_part[j] += d * gated * r;
        }
    }
    float* dskip_out = block_partials + (size_t)blockIdx.x * NV;
    float* dgnorm_out = block_partials + ((size_t)gridDim.x + blockIdx.x) * NV;
    for (int j = threadIdx.x; j < NV; j += blockDim.x) {
        dskip_out[j] = dskip_part[j];
        dgnorm_out[j] = dgnorm_part[j];
    }
}

// out (n_pos, N·V) floatX, rstd (n_pos) fp32 from y, v (in qkv) and g (in proj).
static inline void m2rnn_gate_forward(floatX* out, float* rstd, const floatX* y, const floatX* qkv,
                                      const floatX* proj, const float* skip, const float* gnorm,
                                      const M2RNNLayout& L, int n_pos, cudaStream_t stream) {
    m2rnn_gate_forward_kernel<<<n_pos, GATE_THREADS, 0, stream>>>(out, rstd, y, qkv, proj, skip, gnorm, L);
    cudaCheckLaunch();
}

// Floats of scratch m2rnn_gate_backward needs.
static inline size_t m2rnn_gate_backward_scratch_floats(const M2RNNLayout& L, int n_pos) {
    return 2 * (size_t)ceil_div(n_pos, GATE_ROWS_PER_BLOCK) * L.NV();
}

// dy overwritten, dqkv v columns +=, dproj g columns overwritten, dskip and dgnorm +=;
// scratch m2rnn_gate_backward_scratch_floats(L, n_pos) floats.
static inline void m2rnn_gate_backward(floatX* dy, float* dqkv, floatX* dproj, float* dskip, float* dgnorm,
                                       float* scratch, const floatX* dout, const floatX* y, const floatX* qkv,
                                       const floatX* proj, const float* skip, const float* gnorm, const float* rstd,
                                       const M2RNNLayout& L, int n_pos, cudaStream_t stream) {
    const int NV = L.NV();
    const size_t smem = 2 * (size_t)NV * sizeof(float);
    if (smem > 48 * 1024)  // above the default limit a kernel must opt in to more dynamic shared memory
        cudaCheck(cudaFuncSetAttribute(m2rnn_gate_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)smem));
    const int blocks = ceil_div(n_pos, GATE_ROWS_PER_BLOCK);
    m2rnn_gate_backward_kernel<<<blocks, GATE_THREADS, smem, stream>>>(dy, dqkv, dproj, scratch, dout, y, qkv, proj,
                                                                       skip, gnorm, rstd, n_pos, L);
    cudaCheckLaunch();
    sum_partials(dskip, scratch, blocks, NV, stream);
    sum_partials(dgnorm, scratch + (size_t)blocks * NV, blocks, NV, stream);
}
