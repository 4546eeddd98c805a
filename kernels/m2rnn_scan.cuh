// The M²RNN recurrence over the whole sequence, forward and backward: the reference steps m2rnn_scan_forward
// and m2rnn_scan_backward, for every (batch row b, head n) at once, each element's step the reference's
// m2rnn_step_forward / m2rnn_step_backward (model/model_math.h).
//
// Per (b, n), with H_{-1} = 0 ∈ R^{K×V} (fp32; or the carried `state`: generation's, or a training forward's random
// initial state, m2rnn_initial_state.cuh), W_n ∈ R^{V×V}, q_t, k_t (K), v_t (V):
//   Z_t = tanh(H_{t-1} W_n + k_t v_tᵀ);   H_t = f_t H_{t-1} + (1 - f_t) Z_t;   y_t = H_tᵀ q_t
// Backward with state-gradient clipping c (0 = none), from G = ∂L/∂H, carry C_{T-1} = 0, t = T-1 down to 0:
//   G_t = q_t dy_tᵀ + clamp(C_t, -c, c);   dA_t = ((1 - f_t) G_t) ⊙ (1 - Z_t²)   (the gradient at tanh's input)
//   dq_t = H_t dy_t;   dk_t = dA_t v_t;   dv_t = dA_tᵀ k_t;   df_t = Σ G_t ⊙ (H_{t-1} - Z_t);   dW_n += H_{t-1}ᵀ dA_t
//   C_{t-1} = f_t G_t + dA_t W_nᵀ
//
// Shapes (Cc, NV and the head's q, k, v columns of the M2RNNLayout L):
//   qkv (B,T,Cc) floatX      the post-conv-silu [q | k | v]
//   f (B,T,N) fp32           forget gates in (0,1)
//   W (N,V,V) fp32           W_n row-major: (H W)[i][j] = Σ_m H[i][m] W[m][j]
//   y (B,T,N·V) floatX       written: head n at columns n·V..n·V+V-1, H_tᵀ q_t only (the D skip is added elsewhere)
//   checkpoints (B,N,ceil(T/chunk),K,V) fp32   written by the forward unless null: entry c is the state entering
//                                              step c·chunk, read by the backward (entry 0 is H_{-1}: the backward's
//                                              t = 0 terms need no other copy of it); the order inside a (b, n) is
//                                              the kernels' own (the tensor-core kernels' fragment order)
//   state (B,N,K,V) fp32     null (H_{-1} = 0), or a carried state, row-major (K, V) per (b, n) as the reference's
//                            H0: the forward starts from it and leaves the last state in it (generation runs the
//                            scan one position at a time; a training forward's random H_{-1} is overwritten)
//   dy (B,T,N·V) floatX;  dqkv (B,T,Cc) fp32 +=;  df (B,T,N) fp32 overwritten;  dW (N,V,V) fp32 +=
// dq and dk of a shared q/k head sum over the heads of its group; dv has one writer per element.
//
// Deterministic, no atomics: the backward writes each head's dq_t, dk_t and its batch row's dW_n to scratch
// (m2rnn_scan_backward_scratch_floats: dW (B, N·V·V), then dq and dk (B·T, N, K) each), then
// m2rnn_scan_group_sum adds dq and dk over the heads of each group in head order into dqkv, and sum_partials
// adds dW over the batch rows in order. Inside a block, df_t sums its warps' partials in warp order.
//
// Work split: one block per (b, n), one thread per state element (i, j) = (e / V, e % V), e = threadIdx.x < K·V,
// so K·V <= 1024. The state stays on chip in fp32 for the whole sequence. The rows of the state are independent
// chains (row i of H W needs only row i of H; so does row i of dA Wᵀ), and with V a power of two up to 32 a row
// lives inside one warp: the serial steps synchronise only the warp, never the block. Time runs in chunks of `chunk` steps:
// a chunk's inputs are staged in shared memory, the serial recurrence writes each step's state into a shared
// buffer H[0..len] (H[0] the state entering the chunk), and everything that does not feed the recurrence
// (y forward; dq, dk, dv, df, dW backward) is computed for the whole chunk in parallel afterwards. The forward
// stores the state entering each chunk; the backward walks the chunks last to first, recomputes a chunk's
// states and Z_t from its checkpoint into shared memory, then runs it backwards, keeping dA_t in place of Z_t.
// Per step the forward needs one warp barrier (row i of H_t before step t+1 reads it), the backward one (row i of
// dA_t before C_{t-1} = ... dA_t W_nᵀ); a block barrier ends each serial loop.
// Each thread keeps its column of W_n (and its row, backward) in registers, V a compile-time constant, and reads
// its row of the previous state as V/4 128-bit loads. Shared memory: about (chunk+1)·K·V floats of states (2×
// backward, with Z); a size that does not fit the device stops with a message.
//
// These scalar kernels are the fp32 build's scan (fp32 everywhere, tanhf) and take any supported shape. In bf16
// builds the launchers below hand V = 16, K a multiple of 16 up to 64 (the models' shapes) to the tensor-core
// kernels of m2rnn_scan_tc.cuh: same inputs and outputs, a smaller backward scratch (dq and dk summed over a
// block's heads).
#pragma once
#include <type_traits>

#include "common.cuh"
#include "m2rnn_scan_tc.cuh"

static const int M2RNN_SCAN_MAX_STATE = 1024;  // K·V: one thread per state element
static const int M2RNN_SCAN_CHUNK = 16;        // the model's forward keeps the state every this many steps

// Float offsets into a scan kernel's dynamic shared memory; the same arithmetic on host (size) and device.
struct ScanLayout {
    size_t H, Z, q, k, v, f, dy, df, dW, total;
};

__host__ __device__ inline ScanLayout scan_layout(int K, int V, int chunk, bool backward) {
    ScanLayout s;
    size_t o = 0;
    const size_t KV = (size_t)K * V;
    s.H = o;  o += (chunk + 1) * KV;  // first: 16-byte aligned rows for the 128-bit loads
    s.Z = o;  o += backward ? chunk * KV : 0;
    s.q = o;  o += (size_t)chunk * K;
    s.k = o;  o += (size_t)chunk * K;
    s.v = o;  o += (size_t)chunk * V;
    s.f = o;  o += chunk;
    s.dy = o; o += backward ? (size_t)chunk * V : 0;
    s.df = o; o += backward ? (size_t)chunk * (M2RNN_SCAN_MAX_STATE / 32) : 0;  // one partial per warp
    s.dW = o; o += backward ? (size_t)V * V : 0;
    s.total = o;
    return s;
}

// dst[s·width + c] = src[(row0 + s)·stride + col + c] as float, for s < len, c < width.
template <typename Tin>
__device__ __forceinline__ void scan_stage_rows(float* dst, const Tin* src, size_t row0, int len, int width, int stride,
                                                int col) {
    for (int o = threadIdx.x; o < len * width; o += blockDim.x) {
        const int s = o / width, c = o % width;
        dst[o] = to_float(src[(row0 + s) * stride + col + c]);
    }
}

// This thread's column j of W_n (w[m] = W_n[m][j], for H W), or its row (w[m] = W_n[j][m], for dA W_nᵀ), in
// registers for the whole sequence.
template <int V>
__device__ __forceinline__ void scan_load_W(float (&w)[V], const float* Wn, int j, bool row) {
#pragma unroll
    for (int m = 0; m < V; m++) w[m] = row ? Wn[j * V + m] : Wn[m * V + j];
}

// init + Σ_m x[m] w[m] in order of m, x a row of V floats in shared memory (16-byte aligned when V % 4 == 0).
template <int V>
__device__ __forceinline__ float scan_row_dot(float init, const float* x, const float (&w)[V]) {
    float a = init;
    if constexpr (V % 4 == 0) {
#pragma unroll
        for (int m = 0; m < V; m += 4) {
            const float4 x4 = *reinterpret_cast<const float4*>(x + m);
            a += x4.x * w[m];
            a += x4.y * w[m + 1];
            a += x4.z * w[m + 2];
            a += x4.w * w[m + 3];
        }
    } else {
#pragma unroll
        for (int m = 0; m < V; m++) a += x[m] * w[m];
    }
    return a;
}

// The serial recurrence over the len steps of a chunk. On entry H[0..KV) holds the state entering the chunk and
// h this thread's element of it; step s writes H_{t0+s} into H[(s+1)·KV ..] and, when Z is given, Z_{t0+s} into
// Z[s·KV ..]. Each step reads only this thread's row, written by its own warp. On exit h is the last state's
// element and the block is synchronised.
template <int V>
__device__ __forceinline__ void scan_chunk_recurrence(float& h, float* H, float* Z, const float (&w)[V],
                                                      const float* ks, const float* vs, const float* fs, int len,
                                                      int K) {
    const int KV = K * V, e = threadIdx.x, i = e / V, j = e % V;
    for (int s = 0; s < len; s++) {
        if (e < KV) {
            const float a = scan_row_dot<V>(ks[s * K + i] * vs[s * V + j], H + (size_t)s * KV + i * V, w);
            const M2RNNStep<float> step = m2rnn_step_forward(a, h, fs[s]);
            h = step.h;
            H[(size_t)(s + 1) * KV + e] = h;
            if (Z) Z[(size_t)s * KV + e] = step.z;
        }
        __syncwarp();
    }
    __syncthreads();
}

// The q, k, v and f of head n at positions row0 … row0+len−1 (a chunk of one sequence) into shared memory.
__device__ __forceinline__ void scan_stage_chunk(float* qs, float* ks, float* vs, float* fs, const floatX* qkv,
                                                 const float* f, const M2RNNLayout& L, int n, size_t row0, int len) {
    scan_stage_rows(qs, qkv, row0, len, L.K, L.Cc(), L.q_col(n));
    scan_stage_rows(ks, qkv, row0, len, L.K, L.Cc(), L.k_col(n));
    scan_stage_rows(vs, qkv, row0, len, L.V, L.Cc(), L.v_col(n));
    scan_stage_rows(fs, f, row0, len, 1, L.N, n);
}

// grid B·N, block K·V rounded up to a warp, dynamic shared memory scan_layout(.., false).total floats;
// checkpoints and state may be null
template <int V>
static __global__ void __launch_bounds__(M2RNN_SCAN_MAX_STATE) m2rnn_scan_forward_kernel(
    floatX* y, float* checkpoints, float* state, const floatX* qkv, const float* f, const float* W, M2RNNLayout L,
    int T, int chunk) {
    extern __shared__ __align__(16) float smem[];
    const ScanLayout S = scan_layout(L.K, V, chunk, false);
    float *H = smem + S.H, *qs = smem + S.q, *ks = smem + S.k, *vs = smem + S.v, *fs = smem + S.f;
    const int K = L.K, KV = K * V, e = threadIdx.x, b = blockIdx.x / L.N, n = blockIdx.x % L.N;
    const int n_chunks = (T + chunk - 1) / chunk;
    float* ckpt = checkpoints ? checkpoints + (size_t)blockIdx.x * n_chunks * KV : nullptr;

    float w[V];
    scan_load_W<V>(w, W + (size_t)n * V * V, e % V, false);
    float h = state && e < KV ? state[(size_t)blockIdx.x * KV + e] : 0.0f;
    for (int c = 0; c < n_chunks; c++) {
        const int t0 = c * chunk, len = min(chunk, T - t0);
        const size_t row0 = (size_t)b * T + t0;
        if (e < KV) {
            if (ckpt) ckpt[(size_t)c * KV + e] = h;
            H[e] = h;
        }
        scan_stage_chunk(qs, ks, vs, fs, qkv, f, L, n, row0, len);
        __syncthreads();
        scan_chunk_recurrence<V>(h, H, nullptr, w, ks, vs, fs, len, K);
        // y_t = H_tᵀ q_t for the whole chunk
        for (int o = e; o < len * V; o += blockDim.x) {
            const int s = o / V, j = o % V;
            const float* Ht = H + (size_t)(s + 1) * KV + j;
            float acc = 0.0f;
            for (int i = 0; i < K; i++) acc += Ht[i * V] * qs[s * K + i];
            y[(row0 + s) * L.NV() + n * V + j] = from_float<floatX>(acc);
        }
        __syncthreads();  // the next chunk overwrites H[0] and the staged inputs
    }
    if (state && e < KV) state[(size_t)blockIdx.x * KV + e] = h;
}

// The backward of a chunk once its serial part is done (dA_t in place of Z_t, the block synchronised), in parallel
// over the chunk: dq_t = H_t dy_t and dk_t = dA_t v_t per row into this head's partials (dq_heads, dk_heads:
// (B·T, N, K)), dv_t = dA_tᵀ k_t into dqkv, df_t summed over the warps' partials in warp order, and
// dW_n += Σ_t H_{t-1}ᵀ dA_t into dWs (each thread owns whole entries).
template <int V>
__device__ __forceinline__ void scan_chunk_gradients(float* dq_heads, float* dk_heads, float* dqkv, float* df,
                                                     float* dWs, const float* H, const float* dA, const float* ks,
                                                     const float* vs, const float* dys, const float* dfs,
                                                     const M2RNNLayout& L, int n, size_t row0, int len, int warps) {
    const int K = L.K, N = L.N, KV = K * V, e = threadIdx.x;
    for (int o = e; o < len * K; o += blockDim.x) {
        const int s = o / K, ii = o % K;
        const float* Ht = H + (size_t)(s + 1) * KV + ii * V;
        const float* dAt = dA + (size_t)s * KV + ii * V;
        float dq = 0.0f, dk = 0.0f;
        for (int jj = 0; jj < V; jj++) {
            dq += Ht[jj] * dys[s * V + jj];
            dk += dAt[jj] * vs[s * V + jj];
        }
        const size_t head_row = ((row0 + s) * N + n) * K + ii;
        dq_heads[head_row] = dq;
        dk_heads[head_row] = dk;
    }
    for (int o = e; o < len * V; o += blockDim.x) {
        const int s = o / V, jj = o % V;
        const float* dAt = dA + (size_t)s * KV + jj;
        float dv = 0.0f;
        for (int ii = 0; ii < K; ii++) dv += dAt[ii * V] * ks[s * K + ii];
        dqkv[(row0 + s) * L.Cc() + L.v_col(n) + jj] += dv;
    }
    for (int o = e; o < len; o += blockDim.x) {
        float acc = 0.0f;
        for (int w = 0; w < warps; w++) acc += dfs[o * 32 + w];
        df[(row0 + o) * N + n] = acc;
    }
    for (int o = e; o < V * V; o += blockDim.x) {
        const int m = o / V, jj = o % V;
        float acc = 0.0f;
        for (int s = 0; s < len; s++) {
            const float* Hprev = H + (size_t)s * KV + m;
            const float* dAt = dA + (size_t)s * KV + jj;
            for (int ii = 0; ii < K; ii++) acc += Hprev[ii * V] * dAt[ii * V];
        }
        dWs[o] += acc;
    }
}

// grid B·N, block K·V rounded up to a warp, dynamic shared memory scan_layout(.., true).total floats
template <int V>
static __global__ void __launch_bounds__(M2RNN_SCAN_MAX_STATE) m2rnn_scan_backward_kernel(
    float* dqkv, float* df, float* scratch, const floatX* dy, const floatX* qkv, const float* f, const float* W,
    const float* checkpoints, float clip, M2RNNLayout L, int T, int chunk) {
    extern __shared__ __align__(16) float smem[];
    const ScanLayout S = scan_layout(L.K, V, chunk, true);
    float *H = smem + S.H, *Z = smem + S.Z, *qs = smem + S.q, *ks = smem + S.k, *vs = smem + S.v, *fs = smem + S.f,
          *dys = smem + S.dy, *dfs = smem + S.df, *dWs = smem + S.dW;
    const int K = L.K, N = L.N, KV = K * V, e = threadIdx.x, i = e / V, j = e % V, b = blockIdx.x / N,
              n = blockIdx.x % N;
    const int n_chunks = (T + chunk - 1) / chunk, warps = blockDim.x / 32;
    const float* ckpt = checkpoints + (size_t)blockIdx.x * n_chunks * KV;
    const size_t dW_floats = (size_t)gridDim.x * V * V, dq_floats = (size_t)gridDim.x / N * T * N * K;
    float* dq_heads = scratch + dW_floats;  // (B·T, N, K)
    float* dk_heads = dq_heads + dq_floats;

    float w[V], wt[V];  // column j of W_n (recompute) and row j (the carry's dA W_nᵀ)
    scan_load_W<V>(w, W + (size_t)n * V * V, j, false);
    scan_load_W<V>(wt, W + (size_t)n * V * V, j, true);
    for (int o = e; o < V * V; o += blockDim.x) dWs[o] = 0.0f;
    float carry = 0.0f;  // C_t, this thread's element
    for (int c = n_chunks - 1; c >= 0; c--) {
        const int t0 = c * chunk, len = min(chunk, T - t0);
        const size_t row0 = (size_t)b * T + t0;
        float h = 0.0f;
        if (e < KV) {
            h = ckpt[(size_t)c * KV + e];
            H[e] = h;
        }
        scan_stage_chunk(qs, ks, vs, fs, qkv, f, L, n, row0, len);
        scan_stage_rows(dys, dy, row0, len, V, L.NV(), n * V);
        __syncthreads();
        scan_chunk_recurrence<V>(h, H, Z, w, ks, vs, fs, len, K);

        // The chunk backwards: the serial part is the carry; dA_t replaces Z_t in shared memory.
        for (int s = len - 1; s >= 0; s--) {
            float f_g = 0.0f, df_part = 0.0f;
            if (e < KV) {
                const M2RNNStepGrad<float> g = m2rnn_step_backward(carry, clip, qs[s * K + i], dys[s * V + j],
                                                                   Z[(size_t)s * KV + e], H[(size_t)s * KV + e], fs[s]);
                df_part = g.df;
                f_g = g.carry;
                Z[(size_t)s * KV + e] = g.dA;
            }
            df_part = warp_sum(df_part);
            if (e % 32 == 0) dfs[s * 32 + e / 32] = df_part;
            __syncwarp();  // row i of dA_t is complete
            if (e < KV) carry = scan_row_dot<V>(f_g, Z + (size_t)s * KV + i * V, wt);
        }
        __syncthreads();  // every dA_t and df_t of the chunk is visible; the rest is parallel over the chunk
        scan_chunk_gradients<V>(dq_heads, dk_heads, dqkv, df, dWs, H, Z, ks, vs, dys, dfs, L, n, row0, len, warps);
        __syncthreads();  // the next chunk overwrites the states, dA and the staged inputs
    }
    for (int o = e; o < V * V; o += blockDim.x) scratch[(size_t)blockIdx.x * V * V + o] = dWs[o];
}

// grid ceil(B·T·(Nq+Nk)·K / SCAN_GROUP_SUM_THREADS): one thread per q or k element of dqkv, adding the dq (or
// dk) partials of its group in order. Partials (B·T, parts, K): one per head (scalar kernels, parts = N) or per
// cluster of blocks (tensor-core kernels, parts = N/(P·C)); a q group's heads are parts/Nq consecutive partials.
static const int SCAN_GROUP_SUM_THREADS = 256;

static __global__ void m2rnn_scan_group_sum_kernel(float* dqkv, const float* dq_parts, const float* dk_parts,
                                                   size_t n_pos, int parts, M2RNNLayout L) {
    const int K = L.K;
    const size_t QK = (size_t)(L.Nq + L.Nk) * K, o = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= n_pos * QK) return;
    const size_t pos = o / QK;
    const int c = (int)(o % QK), i = c % K;
    const bool is_q = c < L.Nq * K;  // the q columns come first in a row of qkv, then the k columns
    const int group = is_q ? c / K : c / K - L.Nq, group_size = parts / (is_q ? L.Nq : L.Nk);
    const float* part = (is_q ? dq_parts : dk_parts) + pos * parts * K + i;
    float acc = 0.0f;
    for (int h = group * group_size; h < (group + 1) * group_size; h++) acc += part[(size_t)h * K];
    dqkv[pos * L.Cc() + c] += acc;
}

// Checks the sizes the kernels support and returns the block size; sets the kernel's shared-memory limit.
template <typename Kernel>
static inline int m2rnn_scan_prepare(Kernel kernel, size_t smem_bytes, const M2RNNLayout& L, int chunk,
                                     const char* who) {
    int device = 0, smem_max = 0;
    cudaCheck(cudaGetDevice(&device));
    cudaCheck(cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    const char* problem = nullptr;
    if (L.K < 1 || L.V < 1 || L.K * L.V > M2RNN_SCAN_MAX_STATE)
        problem = "K·V must be in 1..1024 (one thread per state element)";
    else if (L.V > 32 || (L.V & (L.V - 1)) != 0)
        problem = "V must be a power of two up to 32 (a row of the state stays inside one warp)";
    else if (chunk < 1)
        problem = "chunk must be >= 1";
    else if (L.Nq < 1 || L.Nk < 1 || L.N % L.Nq != 0 || L.N % L.Nk != 0)
        problem = "Nq and Nk must divide N";
    else if (smem_bytes > (size_t)smem_max)
        problem = "W and a chunk of states do not fit in shared memory (a smaller chunk may)";
    if (problem) {
        fprintf(stderr, "%s: unsupported size N=%d K=%d V=%d Nq=%d Nk=%d chunk=%d (needs %zu bytes of shared memory, "
                        "device allows %d): %s\n",
                who, L.N, L.K, L.V, L.Nq, L.Nk, chunk, smem_bytes, smem_max, problem);
        exit(EXIT_FAILURE);
    }
    if (smem_bytes > 48 * 1024)  // above the default limit a kernel must opt in to more dynamic shared memory
        cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_bytes));
    return ceil_div(L.K * L.V, 32) * 32;
}

// Floats of state checkpoints the forward stores for the backward (the state every `chunk` steps).
static inline size_t m2rnn_scan_checkpoint_floats(const M2RNNLayout& L, int B, int T, int chunk) {
    return (size_t)B * L.N * ceil_div(T, chunk) * L.K * L.V;
}

// Calls run(std::integral_constant<int, V>()) for the value size V, a compile-time constant in the scan kernels
// (W's column lives in V registers); m2rnn_scan_prepare has checked that V is a power of two up to 32.
template <typename Run>
static inline void scan_with_V(int V, Run run) {
    switch (V) {
        case 1: run(std::integral_constant<int, 1>()); break;
        case 2: run(std::integral_constant<int, 2>()); break;
        case 4: run(std::integral_constant<int, 4>()); break;
        case 8: run(std::integral_constant<int, 8>()); break;
        case 16: run(std::integral_constant<int, 16>()); break;
        case 32: run(std::integral_constant<int, 32>()); break;
        default: fprintf(stderr, "m2rnn scan: V = %d is not a power of two up to 32\n", V); exit(EXIT_FAILURE);
    }
}

// y (B,T,N·V) floatX and checkpoints (unless null) written, from qkv (B,T,Cc) floatX, f (B,T,N) and W (N,V,V) fp32;
// state (B,N,K,V) fp32, unless null, is the state entering step 0 and is left holding the state after step T−1.
static inline void m2rnn_scan_forward(floatX* y, float* checkpoints, float* state, const floatX* qkv, const float* f,
                                      const float* W, const M2RNNLayout& L, int B, int T, int chunk,
                                      cudaStream_t stream) {
#if !defined(ENABLE_FP32)
    if (m2rnn_scan_tc_supported(L.K, L.V)) {
        const int R = m2rnn_scan_tc_row_tiles(L.K, SCAN_TC_FORWARD_TILES), slices = L.K / (16 * R);
        const size_t smem = scan_tc_forward_smem(L.K, chunk, slices);
        scan_tc_with_R<SCAN_TC_FORWARD_TILES>(R, [&](auto r) {
            constexpr int RC = decltype(r)::value;
            m2rnn_scan_prepare(m2rnn_scan_tc_forward_kernel<RC>, smem, L, chunk, "m2rnn_scan_forward");
            m2rnn_scan_tc_forward_kernel<RC><<<B * L.N, 32 * slices, smem, stream>>>(y, checkpoints, state, qkv, f, W,
                                                                                     L, T, chunk);
        });
        cudaCheckLaunch();
        return;
    }
#endif
    const size_t smem = scan_layout(L.K, L.V, chunk, false).total * sizeof(float);
    scan_with_V(L.V, [&](auto v) {
        constexpr int VC = decltype(v)::value;
        const int block = m2rnn_scan_prepare(m2rnn_scan_forward_kernel<VC>, smem, L, chunk, "m2rnn_scan_forward");
        m2rnn_scan_forward_kernel<VC><<<B * L.N, block, smem, stream>>>(y, checkpoints, state, qkv, f, W, L, T, chunk);
    });
    cudaCheckLaunch();
}

// dq and dk partials per position that the backward's scratch holds: one per head, or one per cluster of blocks
// (tensor cores: m2rnn_scan_tc_split).
static inline int m2rnn_scan_dqk_parts(const M2RNNLayout& L) {
    if (!m2rnn_scan_tc_supported(L.K, L.V)) return L.N;
    const ScanTCSplit split = m2rnn_scan_tc_split(L.N, L.Nq, L.Nk);
    return L.N / (split.P * split.C);
}

// dW partials per batch row in the backward's scratch: one, or one per 16-row slice of the state (tensor cores).
static inline int m2rnn_scan_dW_parts(const M2RNNLayout& L) {
    return m2rnn_scan_tc_supported(L.K, L.V) ? L.K / (16 * m2rnn_scan_tc_row_tiles(L.K, SCAN_TC_BACKWARD_TILES)) : 1;
}

// Floats of scratch m2rnn_scan_backward needs at this chunk: the dW partials, the dq and dk partials, then (tensor
// cores) every chain's state buffer.
static inline size_t m2rnn_scan_backward_scratch_floats(const M2RNNLayout& L, int B, int T, int chunk) {
    const size_t states =
        m2rnn_scan_tc_supported(L.K, L.V) ? (size_t)B * L.N * scan_tc_state_buffer_uint4s(L.K, chunk) * 4 : 0;
    return (size_t)B * m2rnn_scan_dW_parts(L) * L.N * L.V * L.V + 2 * (size_t)B * T * m2rnn_scan_dqk_parts(L) * L.K +
           states;
}

// dqkv (B,T,Cc) fp32 +=, df (B,T,N) fp32 overwritten, dW (N,V,V) fp32 +=, from dy (B,T,N·V) floatX and the
// forward's inputs and checkpoints (the same chunk); clip 0 = no state-gradient clipping;
// scratch m2rnn_scan_backward_scratch_floats(L, B, T, chunk) floats.
static inline void m2rnn_scan_backward(float* dqkv, float* df, float* dW, float* scratch, const floatX* dy,
                                       const floatX* qkv, const float* f, const float* W, const float* checkpoints,
                                       float clip, const M2RNNLayout& L, int B, int T, int chunk,
                                       cudaStream_t stream) {
    const int parts = m2rnn_scan_dqk_parts(L);
#if !defined(ENABLE_FP32)
    if (m2rnn_scan_tc_supported(L.K, L.V)) {
        const ScanTCSplit split = m2rnn_scan_tc_split(L.N, L.Nq, L.Nk);
        const int P = split.P, C = split.C;
        const int R = m2rnn_scan_tc_row_tiles(L.K, SCAN_TC_BACKWARD_TILES), slices = L.K / (16 * R);
        const size_t smem = scan_tc_backward_layout(L.K, chunk, P, R).total;
        scan_tc_with_R<SCAN_TC_BACKWARD_TILES>(R, [&](auto r) {
            constexpr int RC = decltype(r)::value;
            m2rnn_scan_prepare(m2rnn_scan_tc_backward_kernel<RC>, smem, L, chunk, "m2rnn_scan_backward");
            cudaLaunchConfig_t config = {};
            config.gridDim = dim3(B * L.N / P);
            config.blockDim = dim3(32 * P * slices);
            config.dynamicSmemBytes = smem;
            config.stream = stream;
            cudaLaunchAttribute cluster;
            cluster.id = cudaLaunchAttributeClusterDimension;
            cluster.val.clusterDim.x = C;
            cluster.val.clusterDim.y = cluster.val.clusterDim.z = 1;
            config.attrs = &cluster;
            config.numAttrs = C > 1 ? 1 : 0;
            cudaCheck(cudaLaunchKernelEx(&config, m2rnn_scan_tc_backward_kernel<RC>, dqkv, df, scratch, dy, qkv, f, W,
                                         checkpoints, clip, L, T, chunk, P, C));
        });
    } else
#endif
    {
        const size_t smem = scan_layout(L.K, L.V, chunk, true).total * sizeof(float);
        scan_with_V(L.V, [&](auto v) {
            constexpr int VC = decltype(v)::value;
            const int block = m2rnn_scan_prepare(m2rnn_scan_backward_kernel<VC>, smem, L, chunk, "m2rnn_scan_backward");
            m2rnn_scan_backward_kernel<VC><<<B * L.N, block, smem, stream>>>(dqkv, df, scratch, dy, qkv, f, W,
                                                                             checkpoints, clip, L, T, chunk);
        });
    }
    cudaCheckLaunch();
    const int dW_parts = B * m2rnn_scan_dW_parts(L);
    const size_t dW_floats = (size_t)dW_parts * L.N * L.V * L.V, n_pos = (size_t)B * T;
    const size_t part_floats = n_pos * parts * L.K;
    const float* dq_parts = scratch + dW_floats;
    const size_t qk_elements = n_pos * (L.Nq + L.Nk) * L.K;
    m2rnn_scan_group_sum_kernel<<<(unsigned)ceil_div(qk_elements, (size_t)SCAN_GROUP_SUM_THREADS),
                                  SCAN_GROUP_SUM_THREADS, 0, stream>>>(dqkv, dq_parts, dq_parts + part_floats, n_pos,
                                                                       parts, L);
    cudaCheckLaunch();
    sum_partials(dW, scratch, dW_parts, (size_t)L.N * L.V * L.V, stream);
}
