// The M²RNN scan on tensor cores (bf16 builds, V = 16, K a multiple of 16 up to 64): the same math, inputs and
// outputs as the scalar kernels of m2rnn_scan.cuh, which dispatches here when the shape allows
// (m2rnn_scan_tc_supported). The element-wise step, forward and backward, is model_math.h's m2rnn_step_forward and
// m2rnn_step_backward; these kernels differ from the scalar ones in data layout (and tanh.approx) only.
//
// Work split. Row i of H_t depends only on row i of H_{t-1} (H W mixes columns), so a (b, n) chain splits by rows
// across warps: a warp holds R row tiles of 16 rows (R ≤ SCAN_TC_FORWARD_TILES forward, ≤ SCAN_TC_BACKWARD_TILES
// backward; slices = K/16R warps per chain) in registers, in fp32, for the whole sequence, laid out as the
// accumulators of mma.m16n8k16 (two 16×8 column tiles per row tile, 4 floats per lane each). H W is then 2R mma
// per step: a pair of accumulator tiles, rounded, is exactly an A fragment, and W_n's B fragments sit in 4
// registers; k v_tᵀ is 2R more (bf16 mma.m16n8k8 of rank 1, exact: scan_tc_preactivation). Rows and columns are
// permuted inside a tile so that a lane's elements are adjacent: lane (g = lane/4, t = lane%4) holds rows 2g, 2g+1
// of each of its row tiles and columns 4t … 4t+3; entry (r, c, e) (row tile r, column tile c, fragment entry e) is
// state row 16(R·slice + r) + 2g + e/2 and column 4t + 2c + e%2, and W_n's fragments are gathered through the same
// column permutation. The forward's y = Hᵀq goes to shared memory as per-lane sums over a lane's rows
// (scan_tc_lane_column_sums); the backward's dq = H dy is a reduce-scatter across lanes (log2 of the lanes in
// shuffles, each level halving what a lane keeps), its dk = dA v and dv = dAᵀ k are mma over groups of 8 steps
// (scan_tc_group_sums_add), and its df goes to shared memory as per-lane partials; all then sum across lanes and a
// chain's warps in shared memory, in fixed order.
//
// Forward (a block per chain, grid B·N): a chunk's inputs are copied to shared memory with cp.async while the
// previous chunk runs; the state entering each chunk is stored (fp32, in fragment order: the checkpoints' layout
// is private to these kernels) for the backward. The carried `state` (generation's, or the random initial state
// of --state-noise) is row-major (K, V) per chain, as the scalar kernels and the reference hold it: a lane's
// entries of a row tile in one of its rows are columns 4t … 4t+3, one float4 (scan_tc_load_row_major).
// Checkpoint 0 is the state entering step 0, so the backward's H_{-1} at t = 0 is that state too.
//
// Backward (a block per P chains of one batch row, P·slices warps, in clusters of C blocks: m2rnn_scan_tc_split
// chooses P and C): chunks last to first, the next chunk's inputs copied in while one runs. scan_tc_recompute_chunk
// runs the state from the chunk's checkpoint through the chunk, keeping each step's H_{t-1} as its A fragments in a
// per-warp state buffer (global memory, L2-resident: one forward step per step) and dq_t = H_t dy_t;
// scan_tc_reverse_step then runs the chunk backwards, each step's fragments loaded a step ahead: Z_t recomputed from
// them (the operands the forward used, so the same Z_t), the carry C_{t-1} = f_t G_t + dA_t W_nᵀ by mma with dA_t as
// the A fragment, dW_n += H_{t-1}ᵀ dA_t accumulated in registers by mma on fragments transposed with movmatrix, and
// dk_t, dv_t by mma into accumulator tiles of 8 steps each; scan_tc_chunk_sums adds the chunk's df, dv (over a head's
// slices) and dq, dk (over the cluster's P·C heads, in head order, read through distributed shared memory, into one
// partial per cluster: scratch (B·T, N/(P·C), K) each, which m2rnn_scan.cuh's group sum adds over each q/k group).
// dW goes to scratch per (b, slice, n) and sum_partials adds it. No atomics: deterministic.
//
// Precision: W_n is read rounded to fp16 everywhere (scan_tc_read_w). H_{t-1} W_n reads fp16 operands (|H| < 1
// always, since H is a running average of tanh values; fp16 keeps 3 more bits than bf16 there); dA_t W_nᵀ reads
// dA_t as two bf16 terms (hi + lo, so ~16 bits, without fp16's underflow on small gradients) and W_nᵀ as the bf16
// hi + lo pair that holds its fp16 value exactly; dA_t v_t and dA_tᵀ k_t read the same hi + lo of dA_t, and v, k
// as staged (bf16: exact); H_{t-1}ᵀ dA_t reads both in bf16; accumulation is fp32; tanh is tanh.approx; the state,
// the carry and everything else are fp32. The tests measure the results against the reference.
#pragma once
#include <cstdint>
#include <type_traits>

#include <cooperative_groups.h>

#include "common.cuh"
#include "tensor_core.cuh"

static const int SCAN_TC_V = 16;         // the value size these kernels take
static const int SCAN_TC_BLOCK_HEADS = 4;     // heads per backward block, at most
// Backward blocks per cluster, at most. Measured at B = 8, T = 4096, N = 84 (docs/perf.md): clusters of 2 blocks
// 11.07 ms, 3 11.18 ms, 7 13.59 ms (the cluster barriers grow dearer); 3 keeps the extra memory under 1 GiB.
static const int SCAN_TC_CLUSTER_BLOCKS = 3;
static const int SCAN_TC_FORWARD_TILES = 2;   // 16-row tiles of the state per warp in the forward, at most
static const int SCAN_TC_BACKWARD_TILES = 2;  // and in the backward

// W_n as these kernels read it, forward and backward: rounded to fp16 (11 significant bits, where bf16 has 8), so
// the backward is the gradient of the function the forward computed. The tests round W the same way before the
// reference sees it, as they round every other input to what the kernels read.
__host__ __device__ inline float scan_tc_read_w(float w) { return __half2float(__float2half_rn(w)); }

// Whether the tensor-core kernels take this shape (bf16 builds only: the fp32 build is the exact one).
static inline bool m2rnn_scan_tc_supported(int K, int V) {
#if defined(ENABLE_FP32)
    (void)K; (void)V;
    return false;
#else
    return V == SCAN_TC_V && K % 16 == 0 && K >= 16 && K <= 64;
#endif
}

// How the backward splits a batch row's N chains: P heads per block, clusters of C blocks, and one dq/dk partial
// per cluster (its P·C heads summed through distributed shared memory; the heads of a partial must lie in one q
// group and one k group, so P·C divides both group sizes). On Hopper P = 2 (1 when P·C is odd) and C up to
// SCAN_TC_CLUSTER_BLOCKS, the largest such split: small blocks spread the B·N chains evenly over the SMs (B = 8,
// N = 84: 336 blocks of 2 heads on 132 SMs, not 168 of 4), while the partials, whose memory is B·T·K floats each
// for dq and dk, stay few (84 heads: 14 partials of 6). Before Hopper (no clusters) P is the largest of 4, 2, 1
// that divides, C = 1.
struct ScanTCSplit {
    int P, C;
};

static inline ScanTCSplit m2rnn_scan_tc_split(int N, int Nq, int Nk) {
    static const int clusters = [] {
        int device = 0, on = 0;
        cudaCheck(cudaGetDevice(&device));
        cudaCheck(cudaDeviceGetAttribute(&on, cudaDevAttrClusterLaunch, device));
        return on;
    }();
    const int a = N / Nq, b = N / Nk;
    auto divides = [&](int h) { return a % h == 0 && b % h == 0; };
    if (clusters) {
        for (int h = 2 * SCAN_TC_CLUSTER_BLOCKS; h > 1; h--)
            if (divides(h) && (h % 2 == 0 || h <= SCAN_TC_CLUSTER_BLOCKS)) return h % 2 == 0 ? ScanTCSplit{2, h / 2}
                                                                                               : ScanTCSplit{1, h};
        return {1, 1};
    }
    for (int p = SCAN_TC_BLOCK_HEADS; p > 1; p /= 2)
        if (divides(p)) return {p, 1};
    return {1, 1};
}

// Row tiles per warp: at most `most` (a power of two), fewer when K/16 is not a multiple of it.
static inline int m2rnn_scan_tc_row_tiles(int K, int most) {
    int R = most;
    while ((K / 16) % R != 0) R /= 2;
    return R;
}

// uint4s of the backward's state buffer per chain: a chunk's fp16 A fragments of H_{t-1}, K/16 row tiles of 32
// lanes each, per step (2·K·chunk: 32 KB at K = 64, chunk 16). It lives in global memory, not shared: the ~21 MB
// of all chains at B = 8 stay in L2, and shared memory that held them limited a chunk to 8-step segments, each
// recomputed from the chunk's checkpoint (1.5 forward steps per step, not 1).
__host__ __device__ inline size_t scan_tc_state_buffer_uint4s(int K, int chunk) { return (size_t)2 * K * chunk; }

#if !defined(ENABLE_FP32)

// ---------------------------------------------------------------- fragments

// A warp's slice of a state-shaped matrix: x[r][c][e] is row 16(R·slice + r) + 2g + e/2 of the state, column
// 4t + 2c + e%2 (row tile
// r, column tile c, fragment entry e).
template <int R> using ScanTCTile = float[R][2][4];

// Logical index ℓ (0..15) of a column inside the fragments → the state's column: (ℓ/2)%4 is the lane's t, ℓ/8
// the column tile, ℓ%2 the entry.
__device__ __forceinline__ int scan_tc_column(int l) { return 4 * ((l >> 1) & 3) + 2 * (l >> 3) + (l & 1); }

// The B fragments of M (V×V row-major fp32; M = W_n for H W_n, or transposed for dA W_nᵀ) for column tile c:
// b[c][0] = {M[ℓ=2t][n], M[2t+1][n]}, b[c][1] = {M[2t+8][n], M[2t+9][n]}, n = 8c + g, through scan_tc_column.
// M is first rounded to fp16 (scan_tc_read_w), so the forward and the backward compute with the same W_n;
// `residual` gives instead what rounding that to bf16 left over (exact: an fp16 value is a bf16 hi + lo pair).
template <bool fp16>
__device__ __forceinline__ void scan_tc_load_b(uint32_t (&b)[2][2], const float* Wn, bool transpose,
                                               bool residual = false) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    auto at = [&](int l, int n) {
        const int row = scan_tc_column(l), col = scan_tc_column(n);
        const float m = scan_tc_read_w(transpose ? Wn[col * SCAN_TC_V + row] : Wn[row * SCAN_TC_V + col]);
        return residual ? m - __bfloat162float(__float2bfloat16(m)) : m;
    };
    auto pack = [&](float lo, float hi) { return fp16 ? pack_f16(lo, hi) : pack_bf16(lo, hi); };
#pragma unroll
    for (int c = 0; c < 2; c++) {
        const int n = 8 * c + g;
        b[c][0] = pack(at(2 * t, n), at(2 * t + 1, n));
        b[c][1] = pack(at(2 * t + 8, n), at(2 * t + 9, n));
    }
}

// The A fragment of one row tile x (its two column tiles), rounded to fp16 or bf16; over a slice, one per row tile.
template <bool fp16>
__device__ __forceinline__ void scan_tc_pack_tile(uint32_t (&a)[4], const float (&x)[2][4]) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float lo = x[i / 2][2 * (i % 2)], hi = x[i / 2][2 * (i % 2) + 1];
        a[i] = fp16 ? pack_f16(lo, hi) : pack_bf16(lo, hi);
    }
}

template <bool fp16, int R>
__device__ __forceinline__ void scan_tc_pack(uint32_t (&a)[R][4], const ScanTCTile<R>& x) {
#pragma unroll
    for (int r = 0; r < R; r++) scan_tc_pack_tile<fp16>(a[r], x[r]);
}

// A row tile's fragment a as floats (the inverse of scan_tc_pack_tile), and a slice's.
template <bool fp16>
__device__ __forceinline__ void scan_tc_unpack_tile(float (&x)[2][4], const uint32_t (&a)[4]) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 v = fp16 ? unpack_f16(a[i]) : unpack_bf16(a[i]);
        x[i / 2][2 * (i % 2)] = v.x;
        x[i / 2][2 * (i % 2) + 1] = v.y;
    }
}

template <bool fp16, int R>
__device__ __forceinline__ void scan_tc_unpack(ScanTCTile<R>& x, const uint32_t (&a)[R][4]) {
#pragma unroll
    for (int r = 0; r < R; r++) scan_tc_unpack_tile<fp16>(x[r], a[r]);
}

// acc += A M over a row tile, and over the slice.
template <bool fp16>
__device__ __forceinline__ void scan_tc_times_tile(float (&acc)[2][4], const uint32_t (&a)[4],
                                                   const uint32_t (&b)[2][2]) {
    mma_m16n8k16<fp16>(acc[0], a, b[0][0], b[0][1]);
    mma_m16n8k16<fp16>(acc[1], a, b[1][0], b[1][1]);
}

template <bool fp16, int R>
__device__ __forceinline__ void scan_tc_times(ScanTCTile<R>& acc, const uint32_t (&a)[R][4],
                                              const uint32_t (&b)[2][2]) {
#pragma unroll
    for (int r = 0; r < R; r++) scan_tc_times_tile<fp16>(acc[r], a[r], b);
}

// Sums x over the 2^levels lanes that differ only in lane bits lo … lo+levels−1. While a lane holds more than one
// value, each level halves them (the lane whose bit is set keeps the upper half) and adds its partner's copy of
// that half; once one is left, the remaining levels add it across the partner. On return x[0 … n_out) hold the
// sums of the input's x[first …], n_out = max(1, n >> levels); `owner` is false on the duplicate lanes of those
// last levels, so exactly one lane of the group writes each sum.
template <int n, int levels>
__device__ __forceinline__ int lane_reduce_scatter(float (&x)[n], int lo, bool& owner) {
    const int lane = threadIdx.x & 31;
    int first = 0;
    owner = true;
#pragma unroll
    for (int l = 0; l < levels; l++) {
        const int mask = 1 << (lo + l), held = (n >> l) > 1 ? (n >> l) : 1;
        const bool upper = (lane & mask) != 0;
        if (held > 1) {
            const int half = held / 2;
#pragma unroll
            for (int i = 0; i < half; i++) {
                const float send = upper ? x[i] : x[i + half];
                const float keep = upper ? x[i + half] : x[i];
                x[i] = keep + __shfl_xor_sync(0xffffffff, send, mask);
            }
            if (upper) first += half;
        } else {
            x[0] += __shfl_xor_sync(0xffffffff, x[0], mask);
            if (upper) owner = false;
        }
    }
    return first;
}

// Sums over the lane's 2R rows against a per-row vector u (u[2r + e/2] for the rows of x[r][.][e]):
// out[j] = Σ x[row][4t + j] u[row], one multiply-add per element. The forward's y_t = H_tᵀ q_t adds these over the
// 8 lanes of equal t and the slices after the chunk (m2rnn_scan_tc_forward_kernel).
template <int R>
__device__ __forceinline__ void scan_tc_lane_column_sums(float (&out)[4], const ScanTCTile<R>& x,
                                                         const float (&u)[2 * R]) {
#pragma unroll
    for (int j = 0; j < 4; j++) {
        float acc = x[0][j / 2][j % 2] * u[0];
#pragma unroll
        for (int i = 1; i < 2 * R; i++) acc = fmaf(x[i / 2][j / 2][2 * (i % 2) + j % 2], u[i], acc);
        out[j] = acc;
    }
}

// Sums over the columns against a per-column vector u (u[j] for column 4t + j): out[2r + e/2] for the rows of
// x[r][.][e], then over the 4 lanes of equal g; the lane returns with the sums of out's entries first … in
// out[0 … max(1, R/2)) (entry i is row 16(R·slice + i/2) + 2g + i%2).
template <int R>
__device__ __forceinline__ int scan_tc_row_sums(float (&out)[2 * R], const ScanTCTile<R>& x, const float (&u)[4],
                                                bool& owner) {
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            float acc = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) acc += x[r][j / 2][2 * e + j % 2] * u[j];
            out[2 * r + e] = acc;
        }
    return lane_reduce_scatter<2 * R, 2>(out, 0, owner);
}

// ---------------------------------------------------------------- staging

// One chunk's inputs of one head in shared memory (bf16 as in memory; f fp32); dy only in the backward.
struct ScanTCInputs {
    floatX *q, *k, *v, *dy;
    float* f;
};

// Bytes of one ScanTCInputs for `chunk` steps (a multiple of 16; every array 16-byte aligned).
__host__ __device__ inline size_t scan_tc_inputs_bytes(int K, int chunk, bool backward) {
    return (size_t)chunk * (2 * K + (backward ? 2 : 1) * SCAN_TC_V) * sizeof(floatX) +
           ((size_t)chunk * sizeof(float) + 15) / 16 * 16;
}

__device__ __forceinline__ ScanTCInputs scan_tc_inputs_at(char* p, int K, int chunk, bool backward) {
    ScanTCInputs in;
    in.q = (floatX*)p;
    in.k = in.q + (size_t)chunk * K;
    in.v = in.k + (size_t)chunk * K;
    in.dy = in.v + (size_t)chunk * SCAN_TC_V;
    in.f = (float*)(in.dy + (backward ? (size_t)chunk * SCAN_TC_V : 0));
    return in;
}

// The zero row that scan_tc_lane points the lanes t ≠ 0 at, chunk·V values (a multiple of 16 bytes), zeroed by the
// block's threads before the first barrier.
__host__ __device__ inline size_t scan_tc_zero_row_bytes(int chunk) {
    return (size_t)chunk * SCAN_TC_V * sizeof(floatX);
}

__device__ __forceinline__ floatX* scan_tc_zero_row(char* p, int chunk) {
    for (int o = threadIdx.x; o < chunk * SCAN_TC_V / 8; o += blockDim.x) reinterpret_cast<uint4*>(p)[o] = uint4{};
    return reinterpret_cast<floatX*>(p);
}

// The block's threads copy steps t0 … t0+len−1 of head n's inputs (sequence b) into `in` with cp.async (rows of q,
// k, v, dy are 16-byte aligned: K, V and the column offsets are multiples of 8 elements). The caller commits and
// waits. A thread copies the same 16-byte piece of q and k in every (blockDim.x / (K/8))-th step, so the loop
// divides nothing (a division by the runtime K/8 per copy was ≈ 70 instructions of each copy's 76): every launch's
// block is a multiple of K/8 threads (32·K/16R per chain).
__device__ __forceinline__ void scan_tc_stage(const ScanTCInputs& in, const floatX* qkv, const float* f,
                                              const floatX* dy, const M2RNNLayout& L, int b, int n, int T, int t0,
                                              int len) {
    const int K = L.K, per_row = K / 8, Cc = L.Cc();
    const size_t row0 = (size_t)b * T + t0;
    const int piece = 8 * ((int)threadIdx.x % per_row), steps_a_round = (int)blockDim.x / per_row;
    const floatX* q = qkv + row0 * Cc + L.q_col(n) + piece;
    const floatX* k = qkv + row0 * Cc + L.k_col(n) + piece;
    for (int s = (int)threadIdx.x / per_row; s < len; s += steps_a_round) {
        cp_async<16>(in.q + s * K + piece, q + (size_t)s * Cc);
        cp_async<16>(in.k + s * K + piece, k + (size_t)s * Cc);
    }
    for (int o = threadIdx.x; o < len * 2; o += blockDim.x) {
        const int s = o / 2, piece = 8 * (o % 2);
        cp_async<16>(in.v + s * SCAN_TC_V + piece, qkv + (row0 + s) * Cc + L.v_col(n) + piece);
        if (dy) cp_async<16>(in.dy + s * SCAN_TC_V + piece, dy + (row0 + s) * L.NV() + n * SCAN_TC_V + piece);
    }
    for (int s = threadIdx.x; s < len; s += blockDim.x) cp_async<4>(in.f + s, f + (row0 + s) * L.N + n);
}

// 4 consecutive bf16 values (8-byte aligned) as floats.
__device__ __forceinline__ void scan_tc_read4(float (&out)[4], const floatX* p) {
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    const float2 a = unpack_bf16(v.x), b = unpack_bf16(v.y);
    out[0] = a.x; out[1] = a.y; out[2] = b.x; out[3] = b.y;
}

// A lane's view of a chunk's inputs: q at its first row (its rows are pairs 16 apart), v at its columns (step s at
// s·K or s·V; k_t and dy_t lie `chunk` steps further, scan_tc_inputs_at, so they take no registers of their own),
// and vb, its B operand of k_t v_tᵀ (scan_tc_preactivation): v_t at column scan_tc_column(g) (+2 for column tile
// 1) on lanes t = 0; on the others `zeros`, a zeroed chunk·V row of the block's shared memory (scan_tc_zero_row).
struct ScanTCLane {
    const floatX *q, *v, *vb;
    const float* f;
    int chunk;
    __device__ const floatX* k(int s, int K) const { return q + (chunk + s) * K; }
    __device__ const floatX* dy(int s) const { return v + (chunk + s) * SCAN_TC_V; }
};

template <int R>
__device__ __forceinline__ ScanTCLane scan_tc_lane(const ScanTCInputs& in, const floatX* zeros, int slice,
                                                   int chunk) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, row = 16 * R * slice + 2 * g, col = 4 * t;
    return {in.q + row, in.v + col, t == 0 ? in.v + scan_tc_column(g) : zeros, in.f, chunk};
}

// One step's inputs as a lane needs them: k as its bf16 pairs (rows 2g, 2g+1 of row tile r) and v as the bf16 in
// the low half of vb[c] (column tile c), both as they lie, for the kv mma (scan_tc_preactivation).
template <int R>
struct ScanTCStep {
    uint32_t k[R], vb[2];
    float q[2 * R], dy[4], f;
};

template <int R>
__device__ __forceinline__ void scan_tc_step_inputs(ScanTCStep<R>& x, const ScanTCLane& in, int s, int K,
                                                    bool backward) {
#pragma unroll
    for (int r = 0; r < R; r++) {
        x.k[r] = *reinterpret_cast<const uint32_t*>(in.k(s, K) + 16 * r);
        const float2 q = unpack_bf16(*reinterpret_cast<const uint32_t*>(in.q + s * K + 16 * r));
        x.q[2 * r] = q.x; x.q[2 * r + 1] = q.y;
    }
#pragma unroll
    for (int c = 0; c < 2; c++) x.vb[c] = *reinterpret_cast<const uint16_t*>(in.vb + s * SCAN_TC_V + 2 * c);
    if (backward) scan_tc_read4(x.dy, in.dy(s));
    x.f = in.f[s];
}

// tanh.approx as model_math.h's steps take it.
struct ApproxTanh {
    __device__ __forceinline__ float operator()(float x) const { return tanh_approx(x); }
};

// The pre-activations k_t v_tᵀ + A W_n of the slice, for its fp16 fragments A of H_{t-1}. k_t v_tᵀ is one bf16
// mma.m16n8k8 per row and column tile, exact (a product of two bf16 values fits fp32, the other terms are zeros), in
// place of a multiply per element: A holds k_t at k-index 0 of rows m = g (state row 2g) and g + 8 (row 2g+1),
// a = {k pair, k pair >> 16} (the pair's upper half, row 2g+1's k, meets B's zero row 1); B holds v_t in row 0 of
// column n (state column scan_tc_column(8c + n)): b = v on lanes t = 0 (zero-extended), zero on the others.
template <int R>
__device__ __forceinline__ void scan_tc_preactivation(ScanTCTile<R>& pre, const uint32_t (&a)[R][4],
                                                      const uint32_t (&w)[2][2], const ScanTCStep<R>& x) {
#pragma unroll
    for (int r = 0; r < R; r++) {
        const uint32_t k[2] = {x.k[r], x.k[r] >> 16};
#pragma unroll
        for (int c = 0; c < 2; c++) {
            pre[r][c][0] = pre[r][c][1] = pre[r][c][2] = pre[r][c][3] = 0.0f;
            mma_m16n8k8_bf16(pre[r][c], k, x.vb[c]);
        }
    }
    scan_tc_times<true, R>(pre, a, w);
}

// One forward step of a slice: a = fp16 H_{t-1} (returned: the backward stores it), then H_t by m2rnn_step_forward.
template <int R>
__device__ __forceinline__ void scan_tc_step(ScanTCTile<R>& h, uint32_t (&a)[R][4], const uint32_t (&w)[2][2],
                                             const ScanTCStep<R>& x) {
    ScanTCTile<R> pre;
    scan_tc_pack<true, R>(a, h);
    scan_tc_preactivation<R>(pre, a, w, x);
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int c = 0; c < 2; c++)
#pragma unroll
            for (int e = 0; e < 4; e++) h[r][c][e] = m2rnn_step_forward(pre[r][c][e], h[r][c][e], x.f, ApproxTanh()).h;
}

// This lane's float4s of checkpoint `chunk` of a chain's slice, in fragment order: tile (r, c) at [(2r + c)·32].
// The order is the state's row tiles, whatever R: the forward and the backward may split rows differently.
template <int R>
__device__ __forceinline__ size_t scan_tc_checkpoint(size_t chain, int n_chunks, int chunk, int K, int slice) {
    return ((chain * n_chunks + chunk) * (K / 16) + slice * R) * 2 * 32 + (threadIdx.x & 31);
}

template <int R> __device__ __forceinline__ void scan_tc_store_tile(float4* p, size_t at, const ScanTCTile<R>& h) {
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int c = 0; c < 2; c++)
            p[at + (2 * r + c) * 32] = make_float4(h[r][c][0], h[r][c][1], h[r][c][2], h[r][c][3]);
}

template <int R> __device__ __forceinline__ void scan_tc_load_tile(ScanTCTile<R>& h, const float4* p, size_t at) {
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int c = 0; c < 2; c++) {
            const float4 v = p[at + (2 * r + c) * 32];
            h[r][c][0] = v.x; h[r][c][1] = v.y; h[r][c][2] = v.z; h[r][c][3] = v.w;
        }
}

// A chain's (K, V) row-major state x (16-byte aligned) to and from a warp's slice: the lane's entries (r, c, e) with
// e/2 = u lie in row 16(R·slice + r) + 2g + u, at columns 4t + 2c + e%2, that is 4t … 4t+3 in the order
// (c, e%2) = (0, 0), (0, 1), (1, 0), (1, 1): one float4 per row tile and u.
template <int R>
__device__ __forceinline__ float4* scan_tc_row_major_at(float* x, int slice, int r, int u) {
    const int lane = threadIdx.x & 31;
    return reinterpret_cast<float4*>(x + (16 * (R * slice + r) + 2 * (lane >> 2) + u) * SCAN_TC_V + 4 * (lane & 3));
}

template <int R> __device__ __forceinline__ void scan_tc_load_row_major(ScanTCTile<R>& h, float* x, int slice) {
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const float4 v = *scan_tc_row_major_at<R>(x, slice, r, u);
            h[r][0][2 * u] = v.x; h[r][0][2 * u + 1] = v.y; h[r][1][2 * u] = v.z; h[r][1][2 * u + 1] = v.w;
        }
}

template <int R> __device__ __forceinline__ void scan_tc_store_row_major(float* x, int slice, const ScanTCTile<R>& h) {
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int u = 0; u < 2; u++)
            *scan_tc_row_major_at<R>(x, slice, r, u) =
                make_float4(h[r][0][2 * u], h[r][0][2 * u + 1], h[r][1][2 * u], h[r][1][2 * u + 1]);
}

// Calls run(std::integral_constant<int, R>()) for R = 4, 2 or 1 (m2rnn_scan_tc_row_tiles(K, most)), instantiating
// no R above `most`: a kernel that is never launched need not be compiled (the backward's would spill).
template <int most, typename Run>
static inline void scan_tc_with_R(int R, Run run) {
    if constexpr (most >= 4)
        if (R == 4) return run(std::integral_constant<int, 4>());
    if constexpr (most >= 2)
        if (R == 2) return run(std::integral_constant<int, 2>());
    run(std::integral_constant<int, 1>());
}

// ---------------------------------------------------------------- forward

// The forward's y partials of a chunk: lane (g, t) of slice p writes step s's sums over its rows
// (scan_tc_lane_column_sums, columns 4t … 4t+3) at s·scan_tc_y_step(slices) + (8p + g)·V + 4t: a warp's store is
// 512 contiguous bytes, and a step's 8·slices·V floats are padded by V so that the sums after the chunk, a thread
// per (step, 4 columns), read steps s and s + 1 from different banks.
__host__ __device__ inline int scan_tc_y_step(int slices) { return (8 * slices + 1) * SCAN_TC_V; }

// Dynamic shared memory of the forward: the zero row, two input buffers, the chunk's y partials of each slice.
__host__ __device__ inline size_t scan_tc_forward_smem(int K, int chunk, int slices) {
    return scan_tc_zero_row_bytes(chunk) + 2 * scan_tc_inputs_bytes(K, chunk, false) +
           (size_t)chunk * scan_tc_y_step(slices) * sizeof(float);
}

// grid B·N (block b·N + n), block 32·slices (warp = slice of 16R rows), dynamic shared memory
// scan_tc_forward_smem(K, chunk, slices); checkpoints and state may be null (m2rnn_scan.cuh)
template <int R>
static __global__ void __launch_bounds__(128) m2rnn_scan_tc_forward_kernel(floatX* y, float* checkpoints, float* state,
                                                                           const floatX* qkv, const float* f,
                                                                           const float* W, M2RNNLayout L, int T,
                                                                           int chunk) {
    extern __shared__ __align__(16) char scan_tc_smem[];
    const floatX* zeros = scan_tc_zero_row(scan_tc_smem, chunk);
    char* smem = scan_tc_smem + scan_tc_zero_row_bytes(chunk);
    const int K = L.K, slices = blockDim.x / 32, slice = threadIdx.x / 32, lane = threadIdx.x & 31, t = lane & 3;
    const int b = blockIdx.x / L.N, n = blockIdx.x % L.N, n_chunks = (T + chunk - 1) / chunk;
    const size_t in_bytes = scan_tc_inputs_bytes(K, chunk, false);
    auto buffer = [&](int c) { return scan_tc_inputs_at(smem + (c & 1) * in_bytes, K, chunk, false); };
    float* ys = (float*)(smem + 2 * in_bytes);  // (chunk, scan_tc_y_step(slices))
    const int y_step = scan_tc_y_step(slices);
    float* carried = state ? state + (size_t)blockIdx.x * K * SCAN_TC_V : nullptr;  // this chain's (K, V)

    uint32_t w[2][2];
    scan_tc_load_b<true>(w, W + (size_t)n * SCAN_TC_V * SCAN_TC_V, false);
    ScanTCTile<R> h = {};
    if (carried) scan_tc_load_row_major<R>(h, carried, slice);
    scan_tc_stage(buffer(0), qkv, f, nullptr, L, b, n, T, 0, min(chunk, T));
    cp_async_commit();
    for (int c = 0; c < n_chunks; c++) {
        const int t0 = c * chunk, len = min(chunk, T - t0);
        if (c + 1 < n_chunks) {
            scan_tc_stage(buffer(c + 1), qkv, f, nullptr, L, b, n, T, t0 + chunk, min(chunk, T - t0 - chunk));
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (checkpoints)
            scan_tc_store_tile<R>(reinterpret_cast<float4*>(checkpoints),
                                  scan_tc_checkpoint<R>(blockIdx.x, n_chunks, c, K, slice), h);

        const ScanTCLane in = scan_tc_lane<R>(buffer(c), zeros, slice, chunk);
        float* y_out = ys + (8 * slice + (lane >> 2)) * SCAN_TC_V + 4 * t;
        // Each step's inputs are loaded a step ahead (the last step reloads its own), into the other of two
        // buffers: two steps an iteration, so that no step copies them.
        ScanTCStep<R> x[2];
        scan_tc_step_inputs<R>(x[0], in, 0, K, false);
        auto step = [&](int s, const ScanTCStep<R>& now, ScanTCStep<R>& next) {
            scan_tc_step_inputs<R>(next, in, min(s + 1, len - 1), K, false);
            uint32_t a[R][4];
            scan_tc_step<R>(h, a, w, now);
            float part[4];  // y_t = H_tᵀ q_t over this lane's rows; the lanes and slices are added below
            scan_tc_lane_column_sums<R>(part, h, now.q);
            *reinterpret_cast<float4*>(y_out + s * y_step) = make_float4(part[0], part[1], part[2], part[3]);
        };
        for (int s = 0; s < len; s += 2) {
            step(s, x[0], x[1]);
            if (s + 1 < len) step(s + 1, x[1], x[0]);
        }
        __syncthreads();
        for (int o = threadIdx.x; o < len * SCAN_TC_V / 4; o += blockDim.x) {  // columns j … j+3 of step s
            const int s = o / (SCAN_TC_V / 4), j = 4 * (o % (SCAN_TC_V / 4));
            float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            for (int p = 0; p < slices; p++)  // slice by slice, lane g by lane g: a fixed order
#pragma unroll
                for (int g = 0; g < 8; g++) {
                    const float4 v = *reinterpret_cast<const float4*>(ys + s * y_step + (8 * p + g) * SCAN_TC_V + j);
                    acc.x += v.x; acc.y += v.y; acc.z += v.z; acc.w += v.w;
                }
            *reinterpret_cast<uint2*>(y + ((size_t)b * T + t0 + s) * L.NV() + n * SCAN_TC_V + j) =
                make_uint2(pack_bf16(acc.x, acc.y), pack_bf16(acc.z, acc.w));
        }
        __syncthreads();  // ys and this chunk's inputs are reused
    }
    if (carried) scan_tc_store_row_major<R>(carried, slice, h);
}

// ---------------------------------------------------------------- backward

// Shared memory of a backward block, byte offsets (16-byte aligned sections): per head, two chunks' inputs (the
// next one's copied in while this one runs) and the chunk's dq, dk (rows from all its slices); per warp, its dv
// partials of the chunk and its lanes' df partials (step s, lane l at s·32 + l); last the zero row
// (scan_tc_zero_row), at total − scan_tc_zero_row_bytes(chunk) (a field of its own would cost registers).
struct ScanTCBackwardLayout {
    size_t head, inputs, dq, dk;   // one head's part: size `head`; offsets inside it (inputs: 2 buffers)
    size_t warp, dv, df;           // one warp's part: size `warp`; offsets inside it
    size_t warps_at, total;        // where the warps' parts start; the block's total
    __device__ char* head_part(char* smem, int q) const { return smem + q * head; }
    __device__ char* warp_part(char* smem, int w) const { return smem + warps_at + w * warp; }
};

__host__ __device__ inline ScanTCBackwardLayout scan_tc_backward_layout(int K, int chunk, int P, int R) {
    ScanTCBackwardLayout S;
    size_t o = 0;
    S.inputs = o; o += 2 * scan_tc_inputs_bytes(K, chunk, true);
    S.dq = o;     o += (size_t)chunk * K * sizeof(float);
    S.dk = o;     o += (size_t)chunk * K * sizeof(float);
    S.head = o;
    o = 0;
    S.dv = o;     o += (size_t)chunk * SCAN_TC_V * sizeof(float);
    S.df = o;     o += (size_t)chunk * 32 * sizeof(float);
    S.warp = o;
    S.warps_at = P * S.head;
    S.total = S.warps_at + (size_t)P * (K / (16 * R)) * S.warp + scan_tc_zero_row_bytes(chunk);
    return S;
}

// A backward warp's places, at this lane: in the block's shared memory, and its part of the state buffer.
struct ScanTCWarp {
    ScanTCLane in;           // its head's inputs of the chunk
    float* dq_out;           // its head's dq_t of the chunk (rows of all its slices), at the lane's first row
    uint4* states;           // the chunk's fp16 A fragments of H_{t-1}, step s's row tile r at [(s·R + r)·32]
    float* dv_out;           // its dv_t partials of the chunk (step s at s·V)
    // dk_t and the df_t partials (step s at s·32) follow dq_t and dv_t (scan_tc_backward_layout), so their places
    // take no registers of their own
    __device__ float* dk_out(int K) const { return dq_out + in.chunk * K; }
    __device__ float* dfs() const { return dv_out + in.chunk * SCAN_TC_V; }
};

// Rows of the state a lane holds after scan_tc_row_sums.
template <int R> __host__ __device__ constexpr int scan_tc_kept_rows() { return R / 2 > 0 ? R / 2 : 1; }

// Row sums (scan_tc_row_sums) of the chunk's step s into a head's dq rows.
template <int R>
__device__ __forceinline__ void scan_tc_store_rows(float* out, const float (&part)[2 * R], int first, bool owner,
                                                   int s, int K) {
    if (!owner) return;
#pragma unroll
    for (int i = first; i < first + scan_tc_kept_rows<R>(); i++) out[s * K + 16 * (i / 2) + i % 2] = part[i - first];
}

// The states from the chunk's checkpoint (h, on entry) through its len steps: each step stores H_{t-1} as its fp16
// A fragments (the operands the forward used) and dq_t = H_t dy_t. The fragments bypass L1 (read back once, by
// this lane, in scan_tc_load_state).
template <int R>
__device__ __forceinline__ void scan_tc_recompute_chunk(ScanTCTile<R>& h, const ScanTCWarp& wp,
                                                        const uint32_t (&w)[2][2], int len, int K) {
    for (int s = 0; s < len; s++) {
        ScanTCStep<R> x;
        scan_tc_step_inputs<R>(x, wp.in, s, K, true);
        uint32_t a[R][4];
        scan_tc_step<R>(h, a, w, x);
#pragma unroll
        for (int r = 0; r < R; r++)
            __stcg(wp.states + s * R * 32 + r * 32, make_uint4(a[r][0], a[r][1], a[r][2], a[r][3]));
        float part[2 * R];
        bool owner;
        const int first = scan_tc_row_sums<R>(part, h, x.dy, owner);
        scan_tc_store_rows<R>(wp.dq_out, part, first, owner, s, K);
    }
}

// Step s's fp16 A fragments of H_{t-1} from the state buffer.
template <int R>
__device__ __forceinline__ void scan_tc_load_state(uint32_t (&a)[R][4], const ScanTCWarp& wp, int s) {
#pragma unroll
    for (int r = 0; r < R; r++) {
        const uint4 v = __ldcg(wp.states + s * R * 32 + r * 32);  // r's offset an immediate
        a[r][0] = v.x; a[r][1] = v.y; a[r][2] = v.z; a[r][3] = v.w;
    }
}

// A row tile's carry += dA W_nᵀ with dA = hi + lo and W_nᵀ = wt + wt_lo, all bf16 (the lo·wt_lo term dropped); hi
// and lo are returned for dk, dv and dW.
__device__ __forceinline__ void scan_tc_carry_product(float (&carry)[2][4], uint32_t (&hi)[4], uint32_t (&lo)[4],
                                                      const float (&dA)[2][4], const uint32_t (&wt)[2][2],
                                                      const uint32_t (&wt_lo)[2][2]) {
    float dA_lo[2][4];
    scan_tc_pack_tile<false>(hi, dA);
    scan_tc_unpack_tile<false>(dA_lo, hi);
#pragma unroll
    for (int c = 0; c < 2; c++)
#pragma unroll
        for (int e = 0; e < 4; e++) dA_lo[c][e] = dA[c][e] - dA_lo[c][e];
    scan_tc_pack_tile<false>(lo, dA_lo);
    scan_tc_times_tile<false>(carry, lo, wt);
    scan_tc_times_tile<false>(carry, hi, wt_lo);
    scan_tc_times_tile<false>(carry, hi, wt);
}

// From the A fragment x of a 16×16 tile X (rows as m, columns as k), by movmatrix on its 8×8 quarters: the A
// fragment of Xᵀ (each quarter transposed, the off-diagonal ones swapped), and the B fragment of X's column tile c
// (X's rows as k).
__device__ __forceinline__ void scan_tc_transpose(uint32_t (&xt)[4], const uint32_t (&x)[4]) {
    xt[0] = movmatrix_trans(x[0]);
    xt[1] = movmatrix_trans(x[2]);
    xt[2] = movmatrix_trans(x[1]);
    xt[3] = movmatrix_trans(x[3]);
}

__device__ __forceinline__ void scan_tc_as_b(uint32_t (&b)[2], const uint32_t (&x)[4], int c) {
    b[0] = movmatrix_trans(x[2 * c]);
    b[1] = movmatrix_trans(x[2 * c + 1]);
}

// dW_nᵀ += dA_tᵀ H_{t-1} over a row tile's 16 rows: A = dA_tᵀ (its bf16 hi, transposed: hi_t, which dv reads too),
// B = bf16 H_{t-1}; dW_nᵀ in the mma's D layout: (ν = g + 8(e/2), μ = 8c + 2t + e%2).
__device__ __forceinline__ void scan_tc_accumulate_dW(float (&dWt)[2][4], const float (&hprev)[2][4],
                                                      const uint32_t (&hi_t)[4]) {
    uint32_t hb[4];
    scan_tc_pack_tile<false>(hb, hprev);
#pragma unroll
    for (int c = 0; c < 2; c++) {
        uint32_t b[2];
        scan_tc_as_b(b, hb, c);
        mma_m16n8k16<false>(dWt[c], hi_t, b[0], b[1]);
    }
}

// dk_t = dA_t v_t and dv_t = dA_tᵀ k_t, the reverse step's sums over a state's columns and over its rows, by mma in
// groups of 8 steps: step s's v_t (or k_t) fills column s % 8 of the mma's B and the other columns are zero, so the
// 8 steps of a group land in the 8 columns of one accumulator tile (scan_tc_store_group_sums writes it when the
// group ends): 4R mma a step, in place of two multiply-adds per element and two reduce-scatters of shuffles.
template <int R> struct ScanTCGroupSums {
    float dk[R][4];  // D layout: row tile r's rows m = g, g + 8 (state rows 2g, 2g+1), steps 2t, 2t+1 of the group
    float dv[4];     // D layout: logical columns ℓ = g, g + 8 (state columns scan_tc_column(ℓ)), steps 2t, 2t+1
};

// Row tile r's terms of step s, from dA_t's bf16 hi + lo (A fragments) and hi's transpose: dk += (lo + hi) B_v with
// B_v[ℓ][s % 8] = v_t at column scan_tc_column(ℓ), which at lane (g, t) is v's 4 staged values at columns 4t … 4t+3
// as they lie (b0 = ℓ 2t, 2t+1; b1 = ℓ 2t+8, 2t+9); dv += (lo + hi)ᵀ B_k with B_k[m][s % 8] = k_t at the row of
// A-fragment row m (2m for m < 8, 2(m−8)+1 above), at lane (g, t) rows 4t, 4t+2 (b0) and 4t+1, 4t+3 (b1) of the
// tile. Only the lanes of g = s % 8 hold column s % 8.
template <int R>
__device__ __forceinline__ void scan_tc_group_sums_add(ScanTCGroupSums<R>& sums, int r, const uint32_t (&hi)[4],
                                                       const uint32_t (&lo)[4], const uint32_t (&hi_t)[4],
                                                       const ScanTCWarp& wp, int s, int K) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const bool mine = g == (s & 7);
    const uint2 v = *reinterpret_cast<const uint2*>(wp.in.v + s * SCAN_TC_V);
    const uint32_t v0 = mine ? v.x : 0u, v1 = mine ? v.y : 0u;
    mma_m16n8k16<false>(sums.dk[r], lo, v0, v1);
    mma_m16n8k16<false>(sums.dk[r], hi, v0, v1);
    // k at rows 4t … 4t+3 of the tile: 4t − 2g from the lane's first row
    const uint2 k = *reinterpret_cast<const uint2*>(wp.in.k(s, K) + 16 * r + 4 * t - 2 * g);
    const uint32_t k0 = mine ? __byte_perm(k.x, k.y, 0x5410) : 0u, k1 = mine ? __byte_perm(k.x, k.y, 0x7632) : 0u;
    uint32_t lo_t[4];
    scan_tc_transpose(lo_t, lo);
    mma_m16n8k16<false>(sums.dv, lo_t, k0, k1);
    mma_m16n8k16<false>(sums.dv, hi_t, k0, k1);
}

// The group of steps s0 … s0+7 (those below len) into the chunk's dk rows and the warp's dv partials; the sums are
// zeroed for the next group.
template <int R>
__device__ __forceinline__ void scan_tc_store_group_sums(ScanTCGroupSums<R>& sums, const ScanTCWarp& wp, int s0,
                                                         int len, int K) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int e = 0; e < 2; e++) {
        const int s = s0 + 2 * t + e;
        if (s < len) {
#pragma unroll
            for (int r = 0; r < R; r++)
                *reinterpret_cast<float2*>(wp.dk_out(K) + s * K + 16 * r) =
                    make_float2(sums.dk[r][e], sums.dk[r][2 + e]);
            wp.dv_out[s * SCAN_TC_V + scan_tc_column(g)] = sums.dv[e];
            wp.dv_out[s * SCAN_TC_V + scan_tc_column(g + 8)] = sums.dv[2 + e];
        }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
#pragma unroll
        for (int r = 0; r < R; r++) sums.dk[r][i] = 0.0f;
        sums.dv[i] = 0.0f;
    }
}

// Step s of the chunk backwards, from a = the stored fp16 fragments of H_{t-1} (replaced by step s−1's once read):
// Z_t recomputed from them; per element m2rnn_step_backward (G_t, dA_t, df_t's share, f G_t); then the carry
// C_{t-1} = f G_t + dA_t W_nᵀ, dW_n += H_{t-1}ᵀ dA_t, the group sums' terms of dk_t = dA_t v_t and dv_t = dA_tᵀ k_t,
// and the lane's share of df_t.
template <int R>
__device__ __forceinline__ void scan_tc_reverse_step(ScanTCTile<R>& carry, float (&dWt)[2][4], ScanTCGroupSums<R>& sums,
                                                     const ScanTCWarp& wp, uint32_t (&a)[R][4],
                                                     const uint32_t (&w)[2][2], const uint32_t (&wt)[2][2],
                                                     const uint32_t (&wt_lo)[2][2], float clip, int s, int K) {
    ScanTCStep<R> x;
    scan_tc_step_inputs<R>(x, wp.in, s, K, true);
    ScanTCTile<R> pre, hprev, dA;
    scan_tc_preactivation<R>(pre, a, w, x);
    scan_tc_unpack<true, R>(hprev, a);
    float df_part = 0.0f;
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int c = 0; c < 2; c++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float z = m2rnn_step_forward(pre[r][c][e], hprev[r][c][e], x.f, ApproxTanh()).z;
                const M2RNNStepGrad<float> g = m2rnn_step_backward(carry[r][c][e], clip, x.q[2 * r + e / 2],
                                                                   x.dy[2 * c + e % 2], z, hprev[r][c][e], x.f);
                df_part += g.df;
                dA[r][c][e] = g.dA;
                carry[r][c][e] = g.carry;
            }
    // step s−1's fragments, their L2 latency hidden under the products below; loaded before the element-wise part
    // they would hold 8 registers through it, and the 128-register cap spills (sm_80)
    scan_tc_load_state<R>(a, wp, max(s - 1, 0));
#pragma unroll
    for (int r = 0; r < R; r++) {  // tile by tile: one tile's fragments live at a time
        uint32_t hi[4], lo[4], hi_t[4];
        scan_tc_carry_product(carry[r], hi, lo, dA[r], wt, wt_lo);
        scan_tc_transpose(hi_t, hi);
        scan_tc_accumulate_dW(dWt, hprev[r], hi_t);
        scan_tc_group_sums_add<R>(sums, r, hi, lo, hi_t, wp, s, K);
    }
    wp.dfs()[s * 32 + (threadIdx.x & 31)] = df_part;
}

// The shared memory of block `rank` of this block's cluster of C (C = 1: this block's own).
__device__ __forceinline__ char* scan_tc_cluster_smem(char* smem, int rank, int C) {
#if __CUDA_ARCH__ >= 900
    if (C > 1) return cooperative_groups::this_cluster().map_shared_rank(smem, rank);
#endif
    (void)rank; (void)C;
    return smem;
}

// A barrier over the block's cluster of C blocks (C = 1: over the block), its shared-memory writes then visible.
__device__ __forceinline__ void scan_tc_cluster_sync(int C) {
#if __CUDA_ARCH__ >= 900
    if (C > 1) {
        cooperative_groups::this_cluster().sync();
        return;
    }
#endif
    (void)C;
    __syncthreads();
}

// After a chunk's reverse steps (the cluster synchronised), from the warps' partials: each head's df_t and dv_t
// summed over its slices in slice order, into df and dqkv's v columns; dq_t and dk_t summed over the cluster's C·P
// heads (block rank r holds heads n0 + r·P …) in head order, into the cluster's partials dq_parts, dk_parts
// ((B·T, N/(P·C), K), column `part`), each block of the cluster writing every C-th of the chunk's entries.
// row0: the chunk's first position b·T + t0; len its steps.
__device__ __forceinline__ void scan_tc_chunk_sums(float* dqkv, float* df, float* dq_parts, float* dk_parts,
                                                     const ScanTCBackwardLayout& S, char* smem, const M2RNNLayout& L,
                                                     int n0, int P, int slices, int C, int rank, int part,
                                                     size_t row0, int len) {
    const int K = L.K, V = SCAN_TC_V;
    for (int o = threadIdx.x; o < P * len; o += blockDim.x) {
        const int q = o / len, s = o % len;
        float acc = 0.0f;
        for (int sl = 0; sl < slices; sl++) {
            const float4* lanes = (const float4*)(S.warp_part(smem, q * slices + sl) + S.df) + s * 8;
            for (int i = 0; i < 8; i++) {  // starting at float4 s % 8: neighbouring steps read different banks
                const float4 x = lanes[(i + s) & 7];
                acc += (x.x + x.y) + (x.z + x.w);
            }
        }
        df[(row0 + s) * L.N + n0 + q] = acc;
    }
    // dv and dq, dk: no integer division inside the loops (each is ~20 instructions)
    for (int q = 0; q < P; q++)
        for (int o = threadIdx.x; o < len * V; o += blockDim.x) {  // o = s·V + j
            float acc = 0.0f;
            for (int sl = 0; sl < slices; sl++) acc += ((const float*)(S.warp_part(smem, q * slices + sl) + S.dv))[o];
            dqkv[(row0 + o / V) * L.Cc() + L.v_col(n0 + q) + o % V] += acc;
        }
    const int first = rank * blockDim.x + threadIdx.x, stride = C * blockDim.x, parts = L.N / (P * C);
    const int ds = stride / K, di = stride % K;
    for (int s = first / K, i = first % K; s < len;) {  // entry s·K + i, every stride-th from first
        float sq = 0.0f, sk = 0.0f;
        for (int r = 0; r < C; r++) {
            char* theirs = scan_tc_cluster_smem(smem, r, C);
            for (int q = 0; q < P; q++) {
                sq += ((const float*)(S.head_part(theirs, q) + S.dq))[s * K + i];
                sk += ((const float*)(S.head_part(theirs, q) + S.dk))[s * K + i];
            }
        }
        const size_t out = ((row0 + s) * parts + part) * K + i;
        dq_parts[out] = sq;
        dk_parts[out] = sk;
        s += ds;
        i += di;
        if (i >= K) {
            i -= K;
            s++;
        }
    }
}

// grid B·N/P (block b·(N/P) + n/P) in clusters of C blocks, block 32·P·slices (warp = head p · slices + slice),
// dynamic shared memory scan_tc_backward_layout(K, chunk, P, R).total; scratch: dW partials (B·slices, N, V, V),
// then dq and dk partials (B·T, N/(P·C), K) each, then the state buffers (B·N, scan_tc_state_buffer_uint4s).
// At most 128 registers a thread, so that 4 blocks of 2 heads (R = 2, K = 64: 128 threads) share an SM; left alone
// the compiler takes ~245.
template <int R> constexpr int scan_tc_backward_max_threads() { return 32 * SCAN_TC_BLOCK_HEADS * 4 / R; }
template <int R>
static __global__ void __launch_bounds__(scan_tc_backward_max_threads<R>(),
                                         65536 / 128 / scan_tc_backward_max_threads<R>()) m2rnn_scan_tc_backward_kernel(
    float* dqkv, float* df, float* scratch, const floatX* dy, const floatX* qkv, const float* f, const float* W,
    const float* checkpoints, float clip, M2RNNLayout L, int T, int chunk, int P, int C) {
    constexpr int V = SCAN_TC_V;
    extern __shared__ __align__(16) char scan_tc_smem[];
    char* smem = scan_tc_smem;
    const int K = L.K, slices = K / (16 * R), warp = threadIdx.x / 32, p = warp / slices, slice = warp % slices;
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int blocks = L.N / P, b = blockIdx.x / blocks, n0 = (blockIdx.x % blocks) * P, n = n0 + p;
    const int rank = blockIdx.x % C, part = (blockIdx.x % blocks) / C;  // the cluster's blocks are consecutive
    const int n_chunks = (T + chunk - 1) / chunk;
    const ScanTCBackwardLayout S = scan_tc_backward_layout(K, chunk, P, R);
    const int row = 16 * R * slice + 2 * g;  // this lane's first row of the state
    char *head = S.head_part(smem, p), *mine = S.warp_part(smem, warp);
    const size_t dW_floats = (size_t)gridDim.x / blocks * slices * L.N * V * V;
    float* dq_parts = scratch + dW_floats;
    float* dk_parts = dq_parts + (size_t)T * (gridDim.x / C) * K;  // (B·T, N/(P·C), K): gridDim.x = B·N/P
    uint4* states = reinterpret_cast<uint4*>(dk_parts + (size_t)T * (gridDim.x / C) * K) +
                    ((size_t)b * L.N + n) * scan_tc_state_buffer_uint4s(K, chunk) + slice * chunk * R * 32 + lane;
    const size_t in_bytes = scan_tc_inputs_bytes(K, chunk, true);
    auto inputs = [&](int q, int c) { return scan_tc_inputs_at(S.head_part(smem, q) + S.inputs + (c & 1) * in_bytes, K,
                                                               chunk, true); };
    auto stage_chunk = [&](int c) {  // every head's inputs of chunk c, into its buffer c & 1
        for (int q = 0; q < P; q++)
            scan_tc_stage(inputs(q, c), qkv, f, dy, L, b, n0 + q, T, c * chunk, min(chunk, T - c * chunk));
        cp_async_commit();
    };
    const float4* ckpt = reinterpret_cast<const float4*>(checkpoints);
    const floatX* zeros = scan_tc_zero_row(smem + S.total - scan_tc_zero_row_bytes(chunk), chunk);

    uint32_t w[2][2], wt[2][2], wt_lo[2][2];  // W_n (fp16) for Z; W_nᵀ as bf16 + its rounding residual
    scan_tc_load_b<true>(w, W + (size_t)n * V * V, false);
    scan_tc_load_b<false>(wt, W + (size_t)n * V * V, true);
    scan_tc_load_b<false>(wt_lo, W + (size_t)n * V * V, true, true);
    ScanTCTile<R> carry = {};  // C_t
    float dWt[2][4] = {};      // this slice's dW_nᵀ
    stage_chunk(n_chunks - 1);
    for (int c = n_chunks - 1; c >= 0; c--) {
        const int t0 = c * chunk, len = min(chunk, T - t0);
        cp_async_wait<0>();
        __syncthreads();  // chunk c's inputs are in
        if (c > 0) stage_chunk(c - 1);  // into the buffer chunk c + 1 used, free since the last cluster barrier
        const ScanTCInputs in = inputs(p, c);
        const ScanTCWarp wp{scan_tc_lane<R>(in, zeros, slice, chunk), (float*)(head + S.dq) + row, states,
                            (float*)(mine + S.dv)};
        ScanTCTile<R> h;
        scan_tc_load_tile<R>(h, ckpt, scan_tc_checkpoint<R>(b * L.N + n, n_chunks, c, K, slice));
        scan_tc_recompute_chunk<R>(h, wp, w, len, K);
        uint32_t a[R][4];
        scan_tc_load_state<R>(a, wp, len - 1);
        ScanTCGroupSums<R> sums = {};
        for (int s = len - 1; s >= 0; s--) {
            scan_tc_reverse_step<R>(carry, dWt, sums, wp, a, w, wt, wt_lo, clip, s, K);
            if ((s & 7) == 0) scan_tc_store_group_sums<R>(sums, wp, s, len, K);
        }
        scan_tc_cluster_sync(C);  // every warp's dq, dk, dv and df of the chunk, in the cluster's blocks
        scan_tc_chunk_sums(dqkv, df, dq_parts, dk_parts, S, smem, L, n0, P, slices, C, rank, part, (size_t)b * T + t0,
                           len);
        scan_tc_cluster_sync(C);  // the buffers are reused by the next chunk
    }
    float* dW_out = scratch + (((size_t)b * slices + slice) * L.N + n) * V * V;
#pragma unroll
    for (int cc = 0; cc < 2; cc++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            dW_out[scan_tc_column(8 * cc + 2 * t + e % 2) * V + scan_tc_column(g + 8 * (e / 2))] = dWt[cc][e];
}

#endif  // !ENABLE_FP32
