// The M²RNN layer's output gate: D skip, silu(g) gate and the gnorm RMSNorm over the whole N·V vector of a
// position, in one kernel each way. Fuses the reference steps m2rnn_gate_forward + rmsnorm_forward (gnorm)
// forward, and rmsnorm_backward (gnorm) + m2rnn_gate_backward backward.
//
// Shapes (n_pos = B·T positions, NV = N·V, Cc = Nq·K + Nk·K + NV, Cp = Cc + N + NV):
//   y     (n_pos, NV) floatX  the scan output H_tᵀ q_t (the D skip is not in it)
//   qkv   (n_pos, Cc) floatX  v of head n at column (Nq+Nk)·K + n·V
//   proj  (n_pos, Cp) floatX  g of head n at column Cc + N + n·V
//   Dskip (NV), gnorm (NV) fp32 parameters;  out (n_pos, NV) floatX;  rstd (n_pos) fp32
// Forward, per position:
//   y2 = y + D ⊙ v;   gated = y2 ⊙ silu(g);   r = 1/sqrt(mean(gated²) + 1e-5);   out = gated · r ⊙ gnorm
// Backward, from dout (n_pos, NV) floatX and the forward's rstd, recomputing y2 and gated from the inputs:
//   dgated = r (dout ⊙ gnorm) − r³/NV · gated · Σ_j (dout ⊙ gnorm ⊙ gated)_j
//   dy = dgated ⊙ silu(g)                     overwritten (floatX): the gradient of the scan output
//   dg = dgated ⊙ y2 ⊙ silu'(g)               overwritten into the g columns of dproj (floatX)
//   dv += dy ⊙ D                              added into the v columns of dqkv (fp32); the scan adds its part
//   dD += Σ_pos dy ⊙ v,  dgnorm += Σ_pos dout ⊙ gated · r      (parameter gradients accumulate)
//
// Work split: a block per position forward; backward, a block per GATE_ROWS_PER_BLOCK positions, each
// thread owning the same columns in every row, so its dD and dgnorm partial sums live in shared memory
// (2·NV floats). Deterministic: each block writes them to scratch (m2rnn_gate_backward_scratch_floats) as
// dD (n_blocks, NV) then dgnorm (n_blocks, NV), and sum_partials adds them in a fixed order; no atomics.
#pragma once
#include "common.cuh"

static const float GNORM_EPS = 1e-5f;
static const int GATE_THREADS = 256;
static const int GATE_ROWS_PER_BLOCK = 32;

// The inputs of one position's gate, with the row strides of the tensors they live in.
struct GateRow {
    const floatX* y;
    const floatX* v;
    const floatX* g;
};

static __device__ __forceinline__ GateRow gate_row(const floatX* y, const floatX* qkv, const floatX* proj, int i,
                                                   int NV, int Cc, int Cp, int v_col, int g_col) {
    return GateRow{y + (size_t)i * NV, qkv + (size_t)i * Cc + v_col, proj + (size_t)i * Cp + g_col};
}

// grid n_pos, block GATE_THREADS
static __global__ void m2rnn_gate_forward_kernel(floatX* out, float* rstd, const floatX* y, const floatX* qkv,
                                                 const floatX* proj, const float* Dskip, const float* gnorm, int NV,
                                                 int Cc, int Cp, int v_col, int g_col) {
    __shared__ float scratch[32];
    const int i = blockIdx.x;
    const GateRow row = gate_row(y, qkv, proj, i, NV, Cc, Cp, v_col, g_col);
    float ss = 0.0f;
    for (int j = threadIdx.x; j < NV; j += blockDim.x) {
        const float gated = (to_float(row.y[j]) + Dskip[j] * to_float(row.v[j])) * siluf(to_float(row.g[j]));
        ss += gated * gated;
    }
    const float r = rsqrtf(block_sum(ss, scratch) / NV + GNORM_EPS);
    // the second pass re-reads the row (from L1) rather than holding a variable number of values per thread
    for (int j = threadIdx.x; j < NV; j += blockDim.x) {
        const float gated = (to_float(row.y[j]) + Dskip[j] * to_float(row.v[j])) * siluf(to_float(row.g[j]));
        out[(size_t)i * NV + j] = from_float<floatX>(gated * r * gnorm[j]);
    }
    if (threadIdx.x == 0) rstd[i] = r;
}

// grid ceil(n_pos / GATE_ROWS_PER_BLOCK), block GATE_THREADS, dynamic shared memory 2·NV floats
static __global__ void m2rnn_gate_backward_kernel(floatX* dy, float* dqkv, floatX* dproj, float* block_partials,
                                                  const floatX* dout, const floatX* y, const floatX* qkv,
                                                  const floatX* proj, const float* Dskip, const float* gnorm,
                                                  const float* rstd, int n_pos, int NV, int Cc, int Cp, int v_col,
                                                  int g_col) {
    extern __shared__ float partial[];  // dD partial sums [NV], then dgnorm partial sums [NV]
    __shared__ float scratch[32];
    float* dD_part = partial;
    float* dgnorm_part = partial + NV;
    for (int j = threadIdx.x; j < NV; j += blockDim.x) { dD_part[j] = 0.0f; dgnorm_part[j] = 0.0f; }
    const int i_end = min((int)(blockIdx.x + 1) * GATE_ROWS_PER_BLOCK, n_pos);
    for (int i = blockIdx.x * GATE_ROWS_PER_BLOCK; i < i_end; i++) {
        const GateRow row = gate_row(y, qkv, proj, i, NV, Cc, Cp, v_col, g_col);
        const floatX* dout_row = dout + (size_t)i * NV;
        float dot = 0.0f;
        for (int j = threadIdx.x; j < NV; j += blockDim.x) {
            const float gated = (to_float(row.y[j]) + Dskip[j] * to_float(row.v[j])) * siluf(to_float(row.g[j]));
            dot += to_float(dout_row[j]) * gnorm[j] * gated;
        }
        dot = block_sum(dot, scratch);
        const float r = rstd[i];
        const float c = r * r * r / NV * dot;
        for (int j = threadIdx.x; j < NV; j += blockDim.x) {
            const float v = to_float(row.v[j]), g = to_float(row.g[j]), d = to_float(dout_row[j]);
            const float y2 = to_float(row.y[j]) + Dskip[j] * v;
            const float s = siluf(g);
            const float gated = y2 * s;
            const float dgated = r * d * gnorm[j] - c * gated;
            const float dyj = dgated * s;
            dy[(size_t)i * NV + j] = from_float<floatX>(dyj);
            dproj[(size_t)i * Cp + g_col + j] = from_float<floatX>(dgated * y2 * silu_gradf(g));
            dqkv[(size_t)i * Cc + v_col + j] += dyj * Dskip[j];
            dD_part[j] += dyj * v;
            dgnorm_part[j] += d * gated * r;
        }
    }
    float* dD_out = block_partials + (size_t)blockIdx.x * NV;
    float* dgnorm_out = block_partials + ((size_t)gridDim.x + blockIdx.x) * NV;
    for (int j = threadIdx.x; j < NV; j += blockDim.x) {
        dD_out[j] = dD_part[j];
        dgnorm_out[j] = dgnorm_part[j];
    }
}

// out (n_pos, N·V) floatX, rstd (n_pos) fp32 from y, v (in qkv) and g (in proj).
static inline void m2rnn_gate_forward(floatX* out, float* rstd, const floatX* y, const floatX* qkv,
                                      const floatX* proj, const float* Dskip, const float* gnorm, int n_pos, int N,
                                      int K, int V, int Nq, int Nk, cudaStream_t stream) {
    const int NV = N * V, Cc = (Nq + Nk) * K + NV, Cp = Cc + N + NV;
    m2rnn_gate_forward_kernel<<<n_pos, GATE_THREADS, 0, stream>>>(out, rstd, y, qkv, proj, Dskip, gnorm, NV, Cc, Cp,
                                                                  (Nq + Nk) * K, Cc + N);
    cudaCheckLaunch();
}

// Floats of scratch m2rnn_gate_backward needs.
static inline size_t m2rnn_gate_backward_scratch_floats(int n_pos, int N, int V) {
    return 2 * (size_t)ceil_div(n_pos, GATE_ROWS_PER_BLOCK) * N * V;
}

// dy overwritten, dqkv v columns +=, dproj g columns overwritten, dD and dgnorm +=;
// scratch m2rnn_gate_backward_scratch_floats(n_pos, N, V) floats.
static inline void m2rnn_gate_backward(floatX* dy, float* dqkv, floatX* dproj, float* dD, float* dgnorm,
                                       float* scratch, const floatX* dout, const floatX* y, const floatX* qkv,
                                       const floatX* proj, const float* Dskip, const float* gnorm, const float* rstd, int n_pos, int N,
                                       int K, int V, int Nq, int Nk, cudaStream_t stream) {
    const int NV = N * V, Cc = (Nq + Nk) * K + NV, Cp = Cc + N + NV;
    const size_t smem = 2 * (size_t)NV * sizeof(float);
    if (smem > 48 * 1024)  // above the default limit a kernel must opt in to more dynamic shared memory
        cudaCheck(cudaFuncSetAttribute(m2rnn_gate_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)smem));
    const int blocks = ceil_div(n_pos, GATE_ROWS_PER_BLOCK);
    m2rnn_gate_backward_kernel<<<blocks, GATE_THREADS, smem, stream>>>(
        dy, dqkv, dproj, scratch, dout, y, qkv, proj, Dskip, gnorm, rstd, n_pos, NV, Cc, Cp, (Nq + Nk) * K, Cc + N);
    cudaCheckLaunch();
    sum_partials(dD, scratch, blocks, NV, stream);
    sum_partials(dgnorm, scratch + (size_t)blocks * NV, blocks, NV, stream);
}
