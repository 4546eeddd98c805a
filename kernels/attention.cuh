// Causal softmax attention with RoPE, forward and backward, flash-attention style: the reference steps
// attention_forward and attention_backward (RoPE included, rotations from model/model_math.h).
//
// Shapes: qkv, dqkv (B,T,3D) floatX, rows [q | k | v]; each of q, k, v splits into H heads of size hd = D/H (head h
// is columns h·hd … (h+1)·hd−1); qkv holds q and k unrotated until attention_forward rotates them in place. y, dy
// (B,T,D) floatX, heads concatenated. lse (B,H,T) fp32. rope_cos_sin (T, hd/2) float2, or nullptr for no RoPE.
//
//   RoPE (rotate-half) on q and k of every head at position t, with x₁ = x[:hd/2], x₂ = x[hd/2:],
//   ω_i = 10000^(−2i/hd):   rope(x) = [x₁ cos(tω) − x₂ sin(tω), x₂ cos(tω) + x₁ sin(tω)]
//   attention_forward first rotates q and k in qkv, in place, in one pass (rope_qk_kernel), with (cos tω_i, sin tω_i)
//   from the table rope_cos_sin[t][i] that rope_table fills once per forward (the angle formed and reduced to
//   [−π, π] in double, since in fp32 its rounding alone would cost ~1e-4 at T ~ 1000); the backward reads them
//   rotated and rotates dq and dk back (angle −tω) before writing them. Below, q and k are the rotated vectors.
//   (Rotating each tile as it is staged, as this file once did, rotates every key T/128 times: 2.0 of 6.5 ms a
//   layer at the 410M shape, against 0.07 ms for the pass.)
//
//   forward, per (b, h), s ≤ t:  S[t,s] = q_t·k_s / sqrt(hd),  lse_t = log Σ_s exp(S[t,s]),
//                                y_t = Σ_s P[t,s] v_s  with  P[t,s] = exp(S[t,s] − lse_t)
//   backward, overwriting all of dqkv:  P recomputed from q, k and lse,  dP[t,s] = dy_t·v_s,
//     δ_t = dy_t·y_t (= Σ_s P[t,s] dP[t,s]),  dS[t,s] = P[t,s] (dP[t,s] − δ_t),
//     dv_s = Σ_t P[t,s] dy_t,  dk_s = Σ_t dS[t,s] q_t / sqrt(hd),  dq_t = Σ_s dS[t,s] k_s / sqrt(hd)
//
// Work split (flash attention 2). A block owns a tile of rows of one (b, h), each warp 16 or 32 of them, and steps
// over the other side's rows a tile at a time; tiles pass through shared memory, double-buffered (the next tile is
// copied while the current one is used; in the Hopper kernels four buffers, loaded by TMA a step ahead). Scores and
// probabilities of a step live in the warps' registers: nothing T×T exists. Causal masking happens only in steps
// that cross the diagonal (with_mask: the element-wise code compiled with and without its masks); a warp skips a
// step none of its rows sees. Sums are fp32.
//   forward: query tiles of ATTENTION_FORWARD_ROWS rows (the longest rows first), stepping over the key tiles up to
//     the diagonal with the online softmax: per row a running max and sum, the output rescaled when the max grows
//     by more than a slack.
//   backward, three kernels, no atomics (deterministic):
//     row sum: δ_t and lse_t·log2 e into the first 8 bytes of row t's dq slot of the head (the other two kernels
//       read them there, the dq kernel then overwrites the slot with dq, so the backward needs no buffer beyond its
//       output);
//     dk, dv: key tiles of ATTENTION_BACKWARD_ROWS rows, stepping over the query tiles from the diagonal to T;
//     dq: query tiles of ATTENTION_BACKWARD_ROWS rows, stepping over the key tiles up to the diagonal (it recomputes
//       S and dP, two products more than a fused backward, which would need atomics or T/64 partial dq per row).
//
// Tile products (warp_row_dots: a warp's rows times a staged tile transposed; warp_accumulate: acc += W Z for W in
// registers) work in the mma.m16n8k16 accumulator layout in both builds: lane 4g + c holds rows g and g + 8,
// columns 2c and 2c + 1 of each 16×8 block. bf16 builds run them on tensor cores (ldmatrix fragments, bf16 inputs,
// fp32 accumulators; P and dS are rounded to bf16 as mma inputs); fp32 builds (the exact checking build) run the
// same products as fp32 FMAs, taking W's values from the other lanes by shuffles. Everything else (staging, masking,
// softmax, stores) is the same code.
// Head size hd: 8, 16, 32, 64 or 128, a template parameter; the products run over hd rounded up to a multiple of
// 16 (the mma's k), the extra staged columns zero.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "common.cuh"
#include "tensor_core.cuh"
#include "tma.cuh"
#include "wgmma.cuh"

static const int ATTENTION_FORWARD_ROWS = 128;          // query rows of a forward block
static const int ATTENTION_BACKWARD_ROWS = 64;          // key rows of a dk/dv block, query rows of a dq block
static const int ATTENTION_BACKWARD_WARPS = ATTENTION_BACKWARD_ROWS / 16;
static const int ATTENTION_ROW_SUM_THREADS = 256;
static const int ROPE_TABLE_THREADS = 256;
static constexpr float ATTENTION_LOG2E = 1.4426950408889634f;  // exp(x) = exp2(x · log2 e)

// The tiling for one head size.
template <int HD> struct AttentionTiles {
    static constexpr int width = (HD + 15) / 16 * 16;                 // columns of the products
    static constexpr int pitch = width + 16 / (int)sizeof(floatX);    // staged row pitch (elements): +16 bytes
                                                                      // spreads a column over all banks
    static constexpr int chunk = 16 / (int)sizeof(floatX) < HD / 2 ? 16 / (int)sizeof(floatX) : HD / 2;
                                                                      // elements per vector copy (≤ 16 bytes)
    static constexpr int step = HD <= 64 ? 64 : 32;                   // rows of the other side per step
    static constexpr int forward_row_tiles = HD <= 64 ? 2 : 1;        // 16-row tiles per forward warp
    static constexpr int forward_warps = ATTENTION_FORWARD_ROWS / (16 * forward_row_tiles);
};

// ROWS staged rows of the mma.sync kernels: row r at r·pitch (the padding spreads a column over the banks), the
// columns HD … width − 1 zero. (The Hopper kernels' tiles are wgmma.cuh's SwizzledTile, loaded by TMA.)
template <int HD, int ROWS> struct PaddedTile {
    static constexpr int width = AttentionTiles<HD>::width;
    static constexpr int elements = ROWS * AttentionTiles<HD>::pitch;
    __device__ __forceinline__ static int offset(int r, int i) { return r * AttentionTiles<HD>::pitch + i; }
};


// ---------------------------------------------------------------- RoPE

// sin and cos of the angle t·ω_i (model_math.h: rope_angle), reduced to [−π, π] in double.
static __device__ __forceinline__ void rope_sincos(int t, int i, int hd, float* s, float* c) {
    sincosf((float)remainder(rope_angle(t, i, hd), 6.283185307179586), s, c);
}

// cos_sin[t][i] = (cos tω_i, sin tω_i). grid ceil(T·hd/2 / ROPE_TABLE_THREADS), block ROPE_TABLE_THREADS
static __global__ void rope_table_kernel(float2* cos_sin, int T, int hd) {
    const int half = hd / 2;
    const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)T * half) return;
    float s, c;
    rope_sincos((int)(idx / half), (int)(idx % half), hd, &s, &c);
    cos_sin[idx] = make_float2(c, s);
}

// The pair (x₁, x₂) = (x[i], x[i + hd/2]) rotated by the table's angle (cos, sin), or back by its negative.
static __device__ __forceinline__ void rope_rotate_by(float& x1, float& x2, float2 cos_sin, bool inverse) {
    rope_rotate(x1, x2, cos_sin.x, inverse ? -cos_sin.y : cos_sin.y);
}

// q and k of every head of qkv (BT rows, position row % T) rotated in place: a thread per chunk pair, the chunks of
// x₁ at column i and of x₂ at i + hd/2. grid ceil(BT·2·heads·pairs / ROPE_TABLE_THREADS), block ROPE_TABLE_THREADS
template <int HD>
static __global__ void rope_qk_kernel(floatX* qkv, const float2* cos_sin, int BT, int T, int heads) {
    constexpr int CH = AttentionTiles<HD>::chunk, PAIRS = HD / 2 / CH;
    using Chunk = FloatXPack<CH>;
    const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)BT * 2 * heads * PAIRS) return;
    const size_t row = idx / (2 * heads * PAIRS);
    const int rest = (int)(idx % (2 * heads * PAIRS)), head = rest / PAIRS, i = rest % PAIRS * CH;  // q heads, then k
    floatX* x = qkv + row * 3 * heads * HD + head * HD;
    const float2* angle = cos_sin + (size_t)(row % T) * (HD / 2) + i;
    Chunk x1 = *reinterpret_cast<const Chunk*>(x + i), x2 = *reinterpret_cast<const Chunk*>(x + i + HD / 2);
#pragma unroll
    for (int u = 0; u < CH; u++) {
        float a = to_float(x1.v[u]), b = to_float(x2.v[u]);
        rope_rotate_by(a, b, __ldg(angle + u), false);
        x1.v[u] = from_float<floatX>(a);
        x2.v[u] = from_float<floatX>(b);
    }
    *reinterpret_cast<Chunk*>(x + i) = x1;
    *reinterpret_cast<Chunk*>(x + i + HD / 2) = x2;
}

// ---------------------------------------------------------------- staging and storing rows

// Row r, columns i … i + chunk − 1 of dst (a PaddedTile<HD, ROWS>) = src[(row0 + r)·stride + i …] for r < ROWS,
// i < HD, copied with cp.async by the whole block (the mma.sync kernels; the Hopper ones load by TMA); rows at or
// past T and the columns HD … width − 1 are zero.
template <int HD, int ROWS>
__device__ __forceinline__ void stage_rows(floatX* dst, const floatX* src, size_t stride, int row0, int T) {
    using Layout = PaddedTile<HD, ROWS>;
    constexpr int CH = AttentionTiles<HD>::chunk, CHUNKS = HD / CH;  // chunks per row
    using Chunk = FloatXPack<CH>;
    for (int e = threadIdx.x; e < ROWS * CHUNKS; e += blockDim.x) {
        const int r = e / CHUNKS, t = row0 + r, i = e % CHUNKS * CH;
        if (t < T)
            cp_async<sizeof(Chunk)>(dst + Layout::offset(r, i), src + t * stride + i);
        else
            *reinterpret_cast<Chunk*>(dst + Layout::offset(r, i)) = Chunk{};
    }
    if constexpr (HD < Layout::width) {
        constexpr int PAD = (Layout::width - HD) / CH;  // chunks of padding per row
        for (int e = threadIdx.x; e < ROWS * PAD; e += blockDim.x)
            *reinterpret_cast<Chunk*>(dst + Layout::offset(e / PAD, HD + e % PAD * CH)) = Chunk{};
    }
}

// Two neighbouring elements of a row, from one lane's accumulator pair.
static __device__ __forceinline__ void store_pair(floatX* p, float lo, float hi) {
#if defined(ENABLE_FP32)
    *reinterpret_cast<float2*>(p) = make_float2(lo, hi);
#else
    *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(lo, hi);
#endif
}

// A warp's accumulator tile (see the tile products below) times `scale`, rotated back by RoPE when rope_cos_sin is
// set, into rows row0 + 16m + … < T of out (row stride `stride`), columns < HD.
template <int HD, int M>
__device__ __forceinline__ void store_rows(floatX* out, size_t stride,
                                           float (&acc)[M][AttentionTiles<HD>::width / 8][4], int row0, int T,
                                           float scale, const float2* rope_cos_sin) {
    const int lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int n = 0; n < AttentionTiles<HD>::width / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[m][n][e] *= scale;
    if (rope_cos_sin) {
#pragma unroll
        for (int m = 0; m < M; m++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int t = row0 + 16 * m + g + 8 * (e / 2);
                if constexpr (HD >= 16) {
                    // column 8n + 2c + e%2 < hd/2 pairs with the same lane's column in block n + hd/16
#pragma unroll
                    for (int n = 0; n < HD / 16; n++)
                        if (t < T)
                            rope_rotate_by(acc[m][n][e], acc[m][n + HD / 16][e],
                                        rope_cos_sin[(size_t)t * (HD / 2) + 8 * n + 2 * c + e % 2], true);
                } else {
                    // hd = 8: columns 2c + e%2 of lanes c = 0, 1 pair with those of lanes c + 2
                    const float other = __shfl_xor_sync(0xffffffff, acc[m][0][e], 2);
                    if (t < T) {
                        float x1 = c < 2 ? acc[m][0][e] : other, x2 = c < 2 ? other : acc[m][0][e];
                        rope_rotate_by(x1, x2, rope_cos_sin[(size_t)t * (HD / 2) + (2 * c + e % 2) % (HD / 2)], true);
                        acc[m][0][e] = c < 2 ? x1 : x2;
                    }
                }
            }
    }
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int t = row0 + 16 * m + g + 8 * r;
            if (t >= T) continue;
#pragma unroll
            for (int n = 0; n < HD / 8; n++)
                store_pair(out + t * stride + 8 * n + 2 * c, acc[m][n][2 * r], acc[m][n][2 * r + 1]);
        }
}

// Query t's floats for the backward, in the first 8 bytes of row t's dq slot (hd ≥ 4 in bf16): δ_t, then
// lse_t·log2 e; memcpy, as the slot is only floatX-aligned.
static const int ATTENTION_QUERY_FLOATS = 2;
static __device__ __forceinline__ void store_query_floats(floatX* dq_slot, const float (&f)[ATTENTION_QUERY_FLOATS]) {
    memcpy(dq_slot, f, sizeof(f));
}
static __device__ __forceinline__ void load_query_floats(float (&f)[ATTENTION_QUERY_FLOATS], const floatX* dq_slot) {
    memcpy(f, dq_slot, sizeof(f));
}

// ---------------------------------------------------------------- the element-wise steps
// On a warp's accumulator tiles (layout below: lane 4g + c holds rows g, g + 8 and columns 2c, 2c + 1 of each 16×8
// block), shared by the mma.sync and the Hopper kernels.

// run(std::true_type()) for a tile that crosses the diagonal (its masks apply), run(std::false_type()) for one that
// does not: the tile's element-wise code is compiled twice, as a mask tested at run time costs a compare and a
// select on every element of every tile, and most tiles do not cross it.
template <typename Run> __device__ __forceinline__ void with_mask(bool crosses_diagonal, Run run) {
    if (crosses_diagonal)
        run(std::true_type());
    else
        run(std::false_type());
}

// The forward's online softmax over a warp's 16M rows from row0, one tile of keys at a time. The running max is
// raised only when a row's tile max passes it by more than ATTENTION_MAX_SLACK, so the output's rescale (32
// multiplies a lane a step at hd 64) is skipped in most steps; the probabilities exp2(S·log2 e − max) then stay
// below 2^SLACK, which bf16 and the fp32 sums hold at the same relative precision as values below 1. The decision
// is the warp's (a vote), so that the skip is a branch no lane diverges on.
static constexpr float ATTENTION_MAX_SLACK = 8.0f;
template <int M> struct OnlineSoftmax {
    float row_max[M][2];      // per row (m, r): the max of S·log2 e so far, or up to SLACK below it
    float row_sum[M][2];      // and this lane's part of Σ exp2(S·log2 e − max)
    float row_rescale[M][2];  // exp2(max before the last step − max): what the output's sums so far are scaled by
    bool raised = false;      // whether the last step raised the max (and the output needs its rescale)

    __device__ __forceinline__ OnlineSoftmax() {
#pragma unroll
        for (int m = 0; m < M; m++)
#pragma unroll
            for (int r = 0; r < 2; r++) row_max[m][r] = -INFINITY, row_sum[m][r] = 0.0f;
    }

    // s: the scores q·k of keys s0 … s0 + 8NK − 1 (masked past each row only if the tile crosses the diagonal).
    // Raises the running max if the warp must (then rescales the running sum by the change, row_rescale) and leaves
    // s = exp2(S·log2 e − max), the tile's unnormalised probabilities. The output is rescaled apart (rescale), so
    // that a kernel can run this step while the previous tile's P V, which the output waits for, is still in flight.
    // Only the lane's max is compiled with and without the masks: the shuffles after it then run where ptxas knows
    // the warp converged (inside the branch it added a divergent path for them, which spilled in the Hopper forward).
    template <int NK>
    __device__ __forceinline__ void step(float (&s)[M][NK][4], int row0, int s0, bool crosses_diagonal,
                                         float scale_log2) {
        float tile_max[M][2];  // of the raw scores: scale_log2 > 0, so it scales after the max
        with_mask(crosses_diagonal, [&](auto masked) { lane_max<decltype(masked)::value>(tile_max, s, row0, s0); });
        bool rise = false;
#pragma unroll
        for (int m = 0; m < M; m++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float& mx = tile_max[m][r];
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
                // finite: key 0, in the first step, is visible to every row (and -inf + SLACK is -inf)
                mx = fmaxf(row_max[m][r], mx * scale_log2);
                rise |= mx > row_max[m][r] + ATTENTION_MAX_SLACK;
            }
        raised = __any_sync(0xffffffff, rise);
#pragma unroll
        for (int m = 0; m < M; m++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                // a select, not a branch: a branch here cost the loop its uniform registers (descriptors, counters)
                const float new_max = raised ? tile_max[m][r] : row_max[m][r];
                row_rescale[m][r] = exp2_approx(row_max[m][r] - new_max);
                row_max[m][r] = new_max;
                float sum = 0.0f;
#pragma unroll
                for (int n = 0; n < NK; n++)
#pragma unroll
                    for (int f = 0; f < 2; f++) {
                        float& x = s[m][n][2 * r + f];
                        x = exp2_approx(x * scale_log2 - new_max);
                        sum += x;
                    }
                row_sum[m][r] = row_sum[m][r] * row_rescale[m][r] + sum;
            }
    }

    // The lane's max of each row's scores in s, -inf written over those past the row first if MASK.
    template <bool MASK, int NK>
    __device__ __forceinline__ static void lane_max(float (&tile_max)[M][2], float (&s)[M][NK][4], int row0, int s0) {
        const int lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
#pragma unroll
        for (int m = 0; m < M; m++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const int t = row0 + 16 * m + g + 8 * r;
                tile_max[m][r] = -INFINITY;
#pragma unroll
                for (int n = 0; n < NK; n++)
#pragma unroll
                    for (int f = 0; f < 2; f++) {
                        float& x = s[m][n][2 * r + f];
                        if (MASK && s0 + 8 * n + 2 * c + f > t) x = -INFINITY;
                        tile_max[m][r] = fmaxf(tile_max[m][r], x);
                    }
            }
    }

    // The output's sums so far (o: 8NO columns) scaled as the last step scaled the running sums, if it did.
    template <int NO> __device__ __forceinline__ void rescale(float (&o)[M][NO][4]) const {
        if (!raised) return;
#pragma unroll
        for (int m = 0; m < M; m++)
#pragma unroll
            for (int n = 0; n < NO; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) o[m][n][e] *= row_rescale[m][e / 2];
    }

    // After the last tile: o divided by each row's sum, and lse_t (natural log) into lse_bh[t] for rows t < T.
    template <int NO>
    __device__ __forceinline__ void finish(float (&o)[M][NO][4], float* lse_bh, int row0, int T) const {
        const int lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
#pragma unroll
        for (int m = 0; m < M; m++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float sum = row_sum[m][r];
                sum += __shfl_xor_sync(0xffffffff, sum, 1);
                sum += __shfl_xor_sync(0xffffffff, sum, 2);
                const float inv_sum = 1.0f / sum;
#pragma unroll
                for (int n = 0; n < NO; n++)
#pragma unroll
                    for (int f = 0; f < 2; f++) o[m][n][2 * r + f] *= inv_sum;
                const int t = row0 + 16 * m + g + 8 * r;
                if (c == 0 && t < T) lse_bh[t] = row_max[m][r] / ATTENTION_LOG2E + logf(sum);
            }
    }
};

// The backward at one pair: from the score s = q·k and dp = dy·v of a visible pair, P = exp(S − lse) (lse·log2 e
// given) and dS = P (dP − δ); both 0 for a masked pair.
static __device__ __forceinline__ void backward_pair(float& s_to_p, float& dp_to_ds, bool visible, float lse_log2,
                                                     float delta, float scale_log2) {
    const float p = visible ? exp2_approx(s_to_p * scale_log2 - lse_log2) : 0.0f;
    s_to_p = p;
    dp_to_ds = p * (dp_to_ds - delta);
}

// The key kernels' query floats of a step, in shared memory: query t0 + i's δ and lse·log2 e at
// ATTENTION_QUERY_STRIDE · i and one after (the Hopper kernel copies the first 16 bytes of each dq slot; 8-byte
// aligned).
static const int ATTENTION_QUERY_STRIDE = 4;

// backward_pair over a key kernel's transposed tiles: rows are the warp's 16 keys from key0, columns 8N queries from
// t0 (their δ and lse·log2 e in query_floats), those at or past T masked (their floats may be anything finite).
template <int N>
__device__ __forceinline__ void key_tile_scores(float (&p)[1][N][4], float (&ds)[1][N][4], int key0, int t0, int T,
                                                const float* query_floats, float scale_log2) {
    const int lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    // the warp's last key after the tile's first query, or the tile past T
    with_mask(key0 + 15 > t0 || t0 + 8 * N > T, [&](auto masked) {
        constexpr bool MASK = decltype(masked)::value;
#pragma unroll
        for (int n = 0; n < N; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = key0 + g + 8 * (e / 2), col = 8 * n + 2 * c + e % 2;
                // δ and lse·log2 e in one 8-byte load
                const float2 f = *reinterpret_cast<const float2*>(query_floats + ATTENTION_QUERY_STRIDE * col);
                backward_pair(p[0][n][e], ds[0][n][e], !MASK || (key <= t0 + col && t0 + col < T), f.y, f.x,
                              scale_log2);
            }
    });
}

// Query t's lse·log2 e (+inf past T: P = 0 there) and δ, from its dq slot.
static __device__ __forceinline__ void load_query_row(float& lse_log2, float& delta, const floatX* dq, size_t stride,
                                                      int t, int T) {
    float f[ATTENTION_QUERY_FLOATS] = {0.0f, INFINITY};
    if (t < T) load_query_floats(f, dq + t * stride);
    delta = f[0];
    lse_log2 = f[1];
}

// A query kernel's rows row0 + g and row0 + g + 8: their lse·log2 e and δ.
static __device__ __forceinline__ void load_query_rows(float (&lse_row)[2], float (&delta_row)[2], const floatX* dq,
                                                       size_t stride, int row0, int T) {
    const int g = threadIdx.x % 32 / 4;
#pragma unroll
    for (int r = 0; r < 2; r++) load_query_row(lse_row[r], delta_row[r], dq, stride, row0 + g + 8 * r, T);
}

// backward_pair over a query kernel's tiles: rows are the warp's 16 queries from row0 (their lse·log2 e and δ in
// lse_row, delta_row: rows g and g + 8), columns 8N keys from s0.
template <int N>
__device__ __forceinline__ void query_tile_scores(float (&p)[1][N][4], float (&ds)[1][N][4], int row0, int s0,
                                                  const float (&lse_row)[2], const float (&delta_row)[2],
                                                  float scale_log2) {
    const int lane = threadIdx.x % 32, g = lane / 4, c = lane % 4;
    with_mask(s0 + 8 * N - 1 > row0, [&](auto masked) {  // the tile's last key after the warp's first query
        constexpr bool MASK = decltype(masked)::value;
#pragma unroll
        for (int n = 0; n < N; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int key = s0 + 8 * n + 2 * c + e % 2, r = e / 2;
                backward_pair(p[0][n][e], ds[0][n][e], !MASK || key <= row0 + g + 8 * r, lse_row[r], delta_row[r],
                              scale_log2);
            }
    });
}

#if !defined(ENABLE_FP32)
// An accumulator tile w (16M × 8N) as bf16 A fragments: a[m][j] covers columns 16j … 16j + 15, since accumulator
// blocks 2j and 2j + 1, packed, are exactly an A fragment.
template <int M, int N>
__device__ __forceinline__ void pack_a_fragments(uint32_t (&a)[M][N / 2][4], const float (&w)[M][N][4]) {
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int j = 0; j < N / 2; j++) {
            a[m][j][0] = pack_bf16(w[m][2 * j][0], w[m][2 * j][1]);
            a[m][j][1] = pack_bf16(w[m][2 * j][2], w[m][2 * j][3]);
            a[m][j][2] = pack_bf16(w[m][2 * j + 1][0], w[m][2 * j + 1][1]);
            a[m][j][3] = pack_bf16(w[m][2 * j + 1][2], w[m][2 * j + 1][3]);
        }
}
#endif

// ---------------------------------------------------------------- warp tile products
// An accumulator tile float acc[M][N][4] holds a 16M × 8N block: element (m, n, e) of lane 4g + c is row
// 16m + g + 8(e/2), column 8n + 2c + e%2. x, y and z are staged tiles (pitch P).

// s = X Yᵀ: s(row, col) = Σ_{k < WIDTH} x[row][k] · y[col][k] for the 16M rows of x and 8N rows of y; overwrites s.
template <int M, int N, int WIDTH, int P>
__device__ __forceinline__ void warp_row_dots(float (&s)[M][N][4], const floatX* x, const floatX* y) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int m = 0; m < M; m++)
#pragma unroll
        for (int n = 0; n < N; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[m][n][e] = 0.0f;
#if defined(ENABLE_FP32)
    const int g = lane / 4, c = lane % 4;
#pragma unroll 1
    for (int k = 0; k < WIDTH; k++) {
        float xk[M][2], yk[N][2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
#pragma unroll
            for (int m = 0; m < M; m++) xk[m][h] = x[(16 * m + g + 8 * h) * P + k];
#pragma unroll
            for (int n = 0; n < N; n++) yk[n][h] = y[(8 * n + 2 * c + h) * P + k];
        }
#pragma unroll
        for (int m = 0; m < M; m++)
#pragma unroll
            for (int n = 0; n < N; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[m][n][e] += xk[m][e / 2] * yk[n][e % 2];
    }
#else
    static_assert(WIDTH % 16 == 0 && N % 2 == 0, "whole k-slices and pairs of column blocks");
#pragma unroll
    for (int k = 0; k < WIDTH; k += 16) {
        uint32_t a[M][4];  // matrices: rows 0–7 | 8–15 × columns k … k+7 | k+8 … k+15
#pragma unroll
        for (int m = 0; m < M; m++) ldmatrix_x4(a[m], x + (16 * m + lane % 16) * P + k + 8 * (lane / 16));
#pragma unroll
        for (int n = 0; n < N; n += 2) {
            uint32_t b[4];  // matrices: rows 8n … 8n+7 | 8n+8 … 8n+15 × columns k … k+7 | k+8 … k+15
            ldmatrix_x4(b, y + (8 * n + lane % 8 + 8 * (lane / 16)) * P + k + 8 * (lane / 8 % 2));
#pragma unroll
            for (int m = 0; m < M; m++) {
                mma_m16n8k16(s[m][n], a[m], b[0], b[1]);
                mma_m16n8k16(s[m][n + 1], a[m], b[2], b[3]);
            }
        }
    }
#endif
}

// acc += W Z: acc(row, col) += Σ_{j < 8N} w(row, j) · z[j][col] for col < WIDTH, w an accumulator tile (16M × 8N).
template <int M, int N, int WIDTH, int P>
__device__ __forceinline__ void warp_accumulate(float (&acc)[M][WIDTH / 8][4], const float (&w)[M][N][4],
                                                const floatX* z) {
    const int lane = threadIdx.x % 32;
#if defined(ENABLE_FP32)
    const int c = lane % 4;
#pragma unroll 1
    for (int source = 0; source < 4; source++)
#pragma unroll
        for (int j = 0; j < N; j++) {
            // columns 8j + 2·source + h of w's rows g, g + 8 are in lane 4g + source
            float wj[M][4];
#pragma unroll
            for (int m = 0; m < M; m++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    wj[m][e] = __shfl_sync(0xffffffff, w[m][j][e], (lane & ~3) | source);
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const floatX* zj = z + (8 * j + 2 * source + h) * P + 2 * c;
#pragma unroll
                for (int n = 0; n < WIDTH / 8; n++)
#pragma unroll
                    for (int f = 0; f < 2; f++) {
                        const float zv = zj[8 * n + f];
#pragma unroll
                        for (int m = 0; m < M; m++)
#pragma unroll
                            for (int r = 0; r < 2; r++) acc[m][n][2 * r + f] += wj[m][2 * r + h] * zv;
                    }
            }
        }
#else
    static_assert(WIDTH % 16 == 0 && N % 2 == 0, "pairs of column blocks");
    uint32_t a[M][N / 2][4];
    pack_a_fragments(a, w);
#pragma unroll
    for (int j = 0; j < N; j += 2) {
#pragma unroll
        for (int n = 0; n < WIDTH / 8; n += 2) {
            uint32_t b[4];  // transposed matrices: rows 8j … 8j+7 | 8j+8 … 8j+15 × columns 8n … 8n+7 | 8n+8 … 8n+15
            ldmatrix_x4_trans(b, z + (8 * j + lane % 16) * P + 8 * n + 8 * (lane / 16));
#pragma unroll
            for (int m = 0; m < M; m++) {
                mma_m16n8k16(acc[m][n], a[m][j / 2], b[0], b[1]);
                mma_m16n8k16(acc[m][n + 1], a[m][j / 2], b[2], b[3]);
            }
        }
    }
#endif
}

// ---------------------------------------------------------------- kernels
// Grids (ceil(T / rows of a block), B·H); dynamic shared memory as the launchers compute it. __launch_bounds__ says
// one block an SM suffices, so that ptxas gives a kernel the registers it needs (aiming at more blocks, it spills).

// Where head h of batch row b (blockIdx.y = b·heads + h) finds its rows: element offsets of its first row.
struct AttentionHead {
    int D;          // heads·hd: q, k and v are D apart inside a row of qkv (and dq, dk, dv of dqkv)
    size_t stride;  // 3D: a row of qkv
    size_t qkv;     // b·T·3D + h·hd: the head's q in qkv, its dq in dqkv
    size_t rows;    // b·T·D + h·hd: the head's columns of y and dy
    size_t lse;     // (b·heads + h)·T: its log-sum-exp row
    int batch;      // b: the third coordinate of the Hopper kernels' tensor maps
    int column;     // h·hd: the head's first column of q in qkv (k and v: + D, + 2D), of dq in dqkv, of y and dy
};

template <int HD> __device__ __forceinline__ AttentionHead attention_head(int T, int heads) {
    const int b = blockIdx.y / heads, h = blockIdx.y % heads;
    AttentionHead a;
    a.D = heads * HD;
    a.stride = 3 * (size_t)a.D;
    a.qkv = (size_t)b * T * a.stride + h * HD;
    a.rows = (size_t)b * T * a.D + h * HD;
    a.lse = ((size_t)b * heads + h) * T;
    a.batch = b;
    a.column = h * HD;
    return a;
}

// The tiles an mma.sync kernel steps over, in its shared memory after its own rows' tiles: STEP rows each in a
// PaddedTile, double-buffered: step i's in buffer i % 2 while step i + 1's are copied into the other. (The Hopper
// kernels load theirs by TMA: PipelineTiles.)
// KeyValueTiles: the head's k and v rows, for the forward and dq kernels.
template <int HD, int STEP> struct KeyValueTiles {
    using Layout = PaddedTile<HD, STEP>;
    floatX *k_tiles, *v_tiles;  // two buffers each
    const floatX *k, *v;        // the head's k and v in qkv
    size_t stride;              // a row of qkv
    int T;

    // q: the head's q in qkv, which its k and v follow at D and 2D
    __device__ __forceinline__ KeyValueTiles(floatX* shared, const floatX* q, const AttentionHead& head, int T)
        : k_tiles(shared), v_tiles(shared + 2 * Layout::elements), k(q + head.D), v(q + 2 * head.D),
          stride(head.stride), T(T) {}
    __device__ __forceinline__ const floatX* k_tile(int buf) const { return k_tiles + buf * Layout::elements; }
    __device__ __forceinline__ const floatX* v_tile(int buf) const { return v_tiles + buf * Layout::elements; }
    // keys s0 … s0 + STEP − 1 into buffer buf (zero past T)
    __device__ __forceinline__ void stage(int s0, int buf) const {
        stage_rows<HD, STEP>(k_tiles + buf * Layout::elements, k, stride, s0, T);
        stage_rows<HD, STEP>(v_tiles + buf * Layout::elements, v, stride, s0, T);
    }
};

// QueryTiles, for the dk/dv kernel: as KeyValueTiles, the head's q and dy rows, and the queries' floats as
// key_tile_scores reads them (load_query_row: from the dq slots of dqkv).
template <int HD, int STEP> struct QueryTiles {
    using Layout = PaddedTile<HD, STEP>;
    static constexpr int FLOATS = ATTENTION_QUERY_STRIDE * STEP;                // a step's query floats
    static constexpr size_t float_bytes = 2 * FLOATS * sizeof(float);          // two buffers
    floatX *q_tiles, *dy_tiles;  // two buffers each
    float* query_floats;         // FLOATS, two buffers
    const floatX *q, *dy_bh;     // the head's q in qkv, its columns of dy
    const floatX* dq;            // its dq slots in dqkv, which hold the query floats
    size_t stride;               // a row of qkv
    int D, T;                    // a row of dy; the sequence length

    __device__ __forceinline__ QueryTiles(floatX* shared, const floatX* q, const AttentionHead& head, const floatX* dy,
                                          const floatX* dqkv, int T)
        : q_tiles(shared), dy_tiles(shared + 2 * Layout::elements),
          query_floats(reinterpret_cast<float*>(dy_tiles + 2 * Layout::elements)), q(q), dy_bh(dy + head.rows),
          dq(dqkv + head.qkv), stride(head.stride), D(head.D), T(T) {}
    __device__ __forceinline__ const floatX* q_tile(int buf) const { return q_tiles + buf * Layout::elements; }
    __device__ __forceinline__ const floatX* dy_tile(int buf) const { return dy_tiles + buf * Layout::elements; }
    __device__ __forceinline__ const float* floats(int buf) const { return query_floats + buf * FLOATS; }
    // queries t0 … t0 + STEP − 1 into buffer buf
    __device__ __forceinline__ void stage(int t0, int buf) const {
        stage_rows<HD, STEP>(q_tiles + buf * Layout::elements, q, stride, t0, T);
        stage_rows<HD, STEP>(dy_tiles + buf * Layout::elements, dy_bh, D, t0, T);
        for (int i = threadIdx.x; i < STEP; i += blockDim.x) {
            float* f = query_floats + buf * FLOATS + ATTENTION_QUERY_STRIDE * i;
            load_query_row(f[1], f[0], dq, stride, t0 + i, T);
        }
    }
};

// The start of a step: waits until this step's tiles (copied by the step before, or before the loop) are in and
// every warp is done with the previous step's buffers, into which the caller may then copy the next step's.
__device__ __forceinline__ void await_step_tiles() {
    cp_async_wait_all();
    __syncthreads();
}

// The key tiles of KEYS rows that the query rows up to last_row step over: those up to the diagonal, none past T.
template <int KEYS> __device__ __forceinline__ int key_tiles_through(int last_row, int T) {
    return (min(last_row + 1, T) + KEYS - 1) / KEYS;
}

// y and lse for a tile of ATTENTION_FORWARD_ROWS queries.
// shared: q tile (ATTENTION_FORWARD_ROWS rows), k and v tiles (step rows) × 2 buffers each
template <int HD>
static __global__ void __launch_bounds__(32 * AttentionTiles<HD>::forward_warps, 1)
    attention_forward_kernel(floatX* y, float* lse, const floatX* qkv, int T, int heads) {
    using Tiles = AttentionTiles<HD>;
    constexpr int M = Tiles::forward_row_tiles, WARP_ROWS = 16 * M, KEYS = Tiles::step, NK = KEYS / 8;
    constexpr int W = Tiles::width, P = Tiles::pitch;
    extern __shared__ __align__(16) char attention_shared[];
    floatX* q_tile = reinterpret_cast<floatX*>(attention_shared);
    const AttentionHead head = attention_head<HD>(T, heads);
    const int t0 = (int)(gridDim.x - 1 - blockIdx.x) * ATTENTION_FORWARD_ROWS;
    const int row0 = t0 + (int)threadIdx.x / 32 * WARP_ROWS;  // the warp's first query
    const floatX* q = qkv + head.qkv;
    const KeyValueTiles<HD, KEYS> kv(q_tile + ATTENTION_FORWARD_ROWS * P, q, head, T);
    const int n_steps = key_tiles_through<KEYS>(t0 + ATTENTION_FORWARD_ROWS - 1, T);
    const float scale_log2 = ATTENTION_LOG2E / sqrtf((float)HD);

    stage_rows<HD, ATTENTION_FORWARD_ROWS>(q_tile, q, head.stride, t0, T);
    kv.stage(0, 0);
    float o[M][W / 8][4] = {};
    OnlineSoftmax<M> softmax;
    for (int step = 0; step < n_steps; step++) {
        const int s0 = step * KEYS, buf = step % 2;
        await_step_tiles();
        if (step + 1 < n_steps) kv.stage(s0 + KEYS, 1 - buf);
        if (s0 > row0 + WARP_ROWS - 1) continue;  // every key of the tile follows the warp's rows
        float s[M][NK][4];
        warp_row_dots<M, NK, W, P>(s, q_tile + (row0 - t0) * P, kv.k_tile(buf));
        softmax.step(s, row0, s0, s0 + KEYS - 1 > row0, scale_log2);
        softmax.rescale(o);
        warp_accumulate<M, NK, W, P>(o, s, kv.v_tile(buf));
    }
    softmax.finish(o, lse + head.lse, row0, T);
    store_rows<HD, M>(y + head.rows, head.D, o, row0, T, 1.0f, nullptr);
}

// δ_t = dy_t·y_t and lse_t·log2 e of each (position, head) into its dq slot (store_query_floats). HD / chunk
// consecutive lanes share a (position, head), one chunk of dy and y each, summed by shuffles, so that a warp's
// loads are whole 128-byte lines (a thread a (position, head) touched 32 lines a load, for 16 bytes of each).
// grid ceil(BT·heads·HD / chunk / ATTENTION_ROW_SUM_THREADS)
template <int HD>
static __global__ void attention_row_sum_kernel(floatX* dqkv, const floatX* dy, const floatX* y, const float* lse,
                                                int BT, int T, int heads) {
    static_assert(HD * sizeof(floatX) >= ATTENTION_QUERY_FLOATS * sizeof(float), "the query floats fit a dq slot");
    constexpr int CHUNK = AttentionTiles<HD>::chunk, LANES = HD / CHUNK;  // lanes of a (position, head)
    static_assert(LANES <= 32 && 32 % LANES == 0, "a (position, head) within one warp");
    using Chunk = FloatXPack<CHUNK>;
    const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x, pair = idx / LANES;
    const bool active = pair < (size_t)BT * heads;  // no early return: every lane takes part in the shuffles
    const size_t row = pair / heads, head = pair % heads, D = (size_t)heads * HD;
    const size_t offset = row * D + head * HD + idx % LANES * CHUNK;
    float sum = 0.0f;
    if (active) {
        const Chunk a = *reinterpret_cast<const Chunk*>(dy + offset);
        const Chunk b = *reinterpret_cast<const Chunk*>(y + offset);
#pragma unroll
        for (int u = 0; u < CHUNK; u++) sum += to_float(a.v[u]) * to_float(b.v[u]);
    }
#pragma unroll
    for (int lane_bit = LANES / 2; lane_bit > 0; lane_bit /= 2)
        sum += __shfl_xor_sync(0xffffffff, sum, lane_bit);
    if (active && idx % LANES == 0) {
        const size_t lse_at = (row / T * heads + head) * T + row % T;  // (b, head, t)
        store_query_floats(dqkv + row * 3 * D + head * HD, {sum, lse[lse_at] * ATTENTION_LOG2E});
    }
}

// dk and dv for a tile of ATTENTION_BACKWARD_ROWS keys (warp w: keys 16w … 16w + 15 of it), stepping over the
// query tiles from the diagonal to T. The warps compute Sᵀ and dPᵀ (rows keys, columns queries).
// shared: k and v tiles (ATTENTION_BACKWARD_ROWS rows); q and dy tiles (step rows), lse·log2 e and δ (step floats)
// × 2 buffers each
template <int HD>
static __global__ void __launch_bounds__(32 * ATTENTION_BACKWARD_WARPS, 1)
    attention_backward_key_kernel(floatX* dqkv, const floatX* dy, const floatX* qkv,
                                  const float2* rope_cos_sin, int T, int heads) {
    using Tiles = AttentionTiles<HD>;
    constexpr int QUERIES = Tiles::step, NQ = QUERIES / 8, W = Tiles::width, P = Tiles::pitch;
    extern __shared__ __align__(16) char attention_shared[];
    floatX* k_tile = reinterpret_cast<floatX*>(attention_shared);
    floatX* v_tile = k_tile + ATTENTION_BACKWARD_ROWS * P;
    const AttentionHead head = attention_head<HD>(T, heads);
    const int s0 = blockIdx.x * ATTENTION_BACKWARD_ROWS;  // low tiles, which have the most queries, run first
    const int key0 = s0 + (int)threadIdx.x / 32 * 16;     // the warp's first key
    const floatX* q = qkv + head.qkv;
    const floatX *k = q + head.D, *v = q + 2 * head.D;
    const QueryTiles<HD, QUERIES> queries(v_tile + ATTENTION_BACKWARD_ROWS * P, q, head, dy, dqkv, T);
    const int n_steps = (T - s0 + QUERIES - 1) / QUERIES;
    const float scale = 1.0f / sqrtf((float)HD), scale_log2 = ATTENTION_LOG2E * scale;

    stage_rows<HD, ATTENTION_BACKWARD_ROWS>(k_tile, k, head.stride, s0, T);
    stage_rows<HD, ATTENTION_BACKWARD_ROWS>(v_tile, v, head.stride, s0, T);
    queries.stage(s0, 0);
    float dk[1][W / 8][4] = {}, dv[1][W / 8][4] = {};
    for (int step = 0; step < n_steps; step++) {
        const int t0 = s0 + step * QUERIES, buf = step % 2;
        await_step_tiles();
        if (step + 1 < n_steps) queries.stage(t0 + QUERIES, 1 - buf);
        if (t0 + QUERIES - 1 < key0) continue;  // every query of the tile precedes the warp's keys
        const floatX *q_tile = queries.q_tile(buf), *dy_tile = queries.dy_tile(buf);
        float p[1][NQ][4], ds[1][NQ][4];
        warp_row_dots<1, NQ, W, P>(p, k_tile + (key0 - s0) * P, q_tile);    // Sᵀ
        warp_row_dots<1, NQ, W, P>(ds, v_tile + (key0 - s0) * P, dy_tile);  // dPᵀ
        key_tile_scores(p, ds, key0, t0, T, queries.floats(buf), scale_log2);
        warp_accumulate<1, NQ, W, P>(dv, p, dy_tile);
        warp_accumulate<1, NQ, W, P>(dk, ds, q_tile);
    }
    floatX* dk_out = dqkv + head.qkv + head.D;
    store_rows<HD, 1>(dk_out, head.stride, dk, key0, T, scale, rope_cos_sin);
    store_rows<HD, 1>(dk_out + head.D, head.stride, dv, key0, T, 1.0f, nullptr);
}

// dq for a tile of ATTENTION_BACKWARD_ROWS queries (warp w: queries 16w … 16w + 15 of it), stepping over the key
// tiles up to the diagonal; reads δ_t from the dq slots before overwriting them.
// shared: q and dy tiles (ATTENTION_BACKWARD_ROWS rows); k and v tiles (step rows) × 2 buffers each
template <int HD>
static __global__ void __launch_bounds__(32 * ATTENTION_BACKWARD_WARPS, 1)
    attention_backward_query_kernel(floatX* dqkv, const floatX* dy, const floatX* qkv,
                                    const float2* rope_cos_sin, int T, int heads) {
    using Tiles = AttentionTiles<HD>;
    constexpr int KEYS = Tiles::step, NK = KEYS / 8, W = Tiles::width, P = Tiles::pitch;
    extern __shared__ __align__(16) char attention_shared[];
    floatX* q_tile = reinterpret_cast<floatX*>(attention_shared);
    floatX* dy_tile = q_tile + ATTENTION_BACKWARD_ROWS * P;
    const AttentionHead head = attention_head<HD>(T, heads);
    const int t0 = (int)(gridDim.x - 1 - blockIdx.x) * ATTENTION_BACKWARD_ROWS;  // the longest rows first
    const int row0 = t0 + (int)threadIdx.x / 32 * 16;                            // the warp's first query
    const floatX* q = qkv + head.qkv;
    const KeyValueTiles<HD, KEYS> kv(dy_tile + ATTENTION_BACKWARD_ROWS * P, q, head, T);
    floatX* dq = dqkv + head.qkv;
    const int n_steps = key_tiles_through<KEYS>(t0 + ATTENTION_BACKWARD_ROWS - 1, T);
    const float scale = 1.0f / sqrtf((float)HD), scale_log2 = ATTENTION_LOG2E * scale;

    stage_rows<HD, ATTENTION_BACKWARD_ROWS>(q_tile, q, head.stride, t0, T);
    stage_rows<HD, ATTENTION_BACKWARD_ROWS>(dy_tile, dy + head.rows, head.D, t0, T);
    kv.stage(0, 0);
    float lse_row[2], delta_row[2];
    load_query_rows(lse_row, delta_row, dq, head.stride, row0, T);
    float acc[1][W / 8][4] = {};
    for (int step = 0; step < n_steps; step++) {
        const int s0 = step * KEYS, buf = step % 2;
        await_step_tiles();
        if (step + 1 < n_steps) kv.stage(s0 + KEYS, 1 - buf);
        if (s0 > row0 + 15) continue;  // every key of the tile follows the warp's rows
        const floatX* k_tile = kv.k_tile(buf);
        float p[1][NK][4], ds[1][NK][4];
        warp_row_dots<1, NK, W, P>(p, q_tile + (row0 - t0) * P, k_tile);              // S
        warp_row_dots<1, NK, W, P>(ds, dy_tile + (row0 - t0) * P, kv.v_tile(buf));  // dP
        query_tile_scores(p, ds, row0, s0, lse_row, delta_row, scale_log2);
        warp_accumulate<1, NK, W, P>(acc, ds, k_tile);
    }
    store_rows<HD, 1>(dq, head.stride, acc, row0, T, scale, rope_cos_sin);
}

// ---------------------------------------------------------------- Hopper kernels (wgmma)
// bf16 on sm_90a, hd 64 and 128 (the dk/dv kernel: hd 64): the same work split and steps as the kernels above, with
// blocks of ATTENTION_WGMMA_WARPGROUPS warpgroups of 64 rows each, and every tile product one warpgroup's wgmma
// (wgmma.cuh). The block's own rows (q; k and v; q and dy) are loaded once as A fragments into registers; the other
// side's tiles stay in shared memory as SwizzledTile, which the tensor cores read as B (K-major for the scores, MN-major
// for the sums). Steps are skipped per warpgroup; inside a crossing step the masks zero what a warp's rows do not see.
// Every tile arrives by TMA under mbarriers (PipelineTiles), so no step ends in a block barrier.

static const int ATTENTION_WGMMA_WARPGROUPS = 2;
static const int ATTENTION_WGMMA_ROWS = 64 * ATTENTION_WGMMA_WARPGROUPS;  // the block's rows
static const int ATTENTION_WGMMA_STEP = 64;                               // rows of the other side per step
static const int ATTENTION_WGMMA_THREADS = 128 * ATTENTION_WGMMA_WARPGROUPS;  // every launch's block size
static const int ATTENTION_WGMMA_PIPELINE_STAGES = 4;  // buffers of a step's tiles
static const int ATTENTION_WGMMA_PIPELINE_LEAD = ATTENTION_WGMMA_PIPELINE_STAGES - 3;  // tiles loaded ahead

// The block's dynamic shared memory from its first 1024-byte boundary (SwizzledTile blocks start on one; the
// launchers ask for 1024 bytes more).
static __device__ __forceinline__ floatX* swizzled_shared(char* shared) {
    const uint32_t address = (uint32_t)__cvta_generic_to_shared(shared);
    return reinterpret_cast<floatX*>(shared + (1024 - address % 1024) % 1024);
}

#if defined(ATTENTION_WGMMA)
// a[k]: the A fragment of rows r0 … r0 + 15, columns 16k … 16k + 15 of a SwizzledTile<HD, ROWS>.
// The kernels load their own rows' fragments once the tile is in, before their steps, and keep them for all steps.
template <int HD, int ROWS>
__device__ __forceinline__ void load_a_fragments(uint32_t (&a)[HD / 16][4], const floatX* tile, int r0) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int k = 0; k < HD / 16; k++)
        ldmatrix_x4(a[k], tile + SwizzledTile<HD, ROWS>::offset(r0 + lane % 16, 16 * k + 8 * (lane / 16)));
}
#endif

// Where the Hopper kernels' step tiles come from (tma.cuh's maps): the step's two tiles, each from a map
// (tensor_map_rows) at a column, rows row0 + 64·tile … for step tile `tile`; for the dk/dv kernel also the first 16
// bytes of the step's queries' dq slots, which begin with their query floats (slots: tensor_map_row_heads over
// dqkv, at the head's dq column, slot_column).
struct StepSources {
    const CUtensorMap *first, *second;
    int first_column, second_column, row0;
    const CUtensorMap* slots;
    int slot_column;
};

// The Hopper kernels' tiles, loaded by TMA (tma.cuh) into the block's shared memory: OWN tiles of its own
// ATTENTION_WGMMA_ROWS rows (q; q and dy; k and v), then STAGES buffers of a step's two tiles (k and v; q and dy)
// and, with QUERY_FLOATS, of its queries' floats (as key_tile_scores reads them), then the barriers: `own` (the
// own tiles are in), full[i] (buffer i is in: the loading thread's arrival and the bytes) and empty[i] (every warp
// is done reading it: an arrival a warp). Step tile i goes into buffer i % STAGES. Thread 0 issues every load: a
// copy is one instruction, and the other threads never wait for it.
template <int HD, int OWN, bool QUERY_FLOATS = false> struct PipelineTiles {
    using OwnTile = SwizzledTile<HD, ATTENTION_WGMMA_ROWS>;
    using StepTile = SwizzledTile<HD, ATTENTION_WGMMA_STEP>;
    static constexpr int STAGES = ATTENTION_WGMMA_PIPELINE_STAGES, WARPS = ATTENTION_WGMMA_THREADS / 32;
    static constexpr int FLOATS = QUERY_FLOATS ? ATTENTION_QUERY_STRIDE * ATTENTION_WGMMA_STEP : 0;  // a step's
    static_assert(ATTENTION_QUERY_STRIDE * sizeof(float) == 16, "a box row: the first 16 bytes of a dq slot");
    static constexpr size_t tile_bytes =
        (OWN * OwnTile::elements + 2 * STAGES * StepTile::elements) * sizeof(floatX) + STAGES * FLOATS * sizeof(float);
    // the launch's dynamic shared memory: the tiles from the first 1024-byte boundary, then the barriers
    static constexpr size_t shared_bytes = 1024 + tile_bytes + (1 + 2 * STAGES) * sizeof(uint64_t);

    floatX* tiles;       // own tiles, then the first and the second step tiles, then the floats
    uint64_t* barriers;  // own, full[STAGES], empty[STAGES]
    StepSources from;
    int batch;  // the head's batch row: the maps' third coordinate

    __device__ __forceinline__ PipelineTiles(char* shared, const StepSources& from, const AttentionHead& head)
        : tiles(swizzled_shared(shared)), barriers(reinterpret_cast<uint64_t*>(reinterpret_cast<char*>(tiles) +
                                                                             tile_bytes)),
          from(from), batch(head.batch) {}
#if defined(ATTENTION_WGMMA)
    __device__ __forceinline__ const floatX* own_tile(int i) const { return tiles + i * OwnTile::elements; }
    // step tile `tile`'s first (which = 0) or second tile
    __device__ __forceinline__ floatX* step_tile(int which, int tile) const {
        return tiles + OWN * OwnTile::elements + (which * STAGES + tile % STAGES) * StepTile::elements;
    }
    __device__ __forceinline__ float* query_floats(int tile) const {
        return reinterpret_cast<float*>(step_tile(2, 0)) + tile % STAGES * FLOATS;
    }
    __device__ __forceinline__ uint64_t* full(int tile) const { return barriers + 1 + tile % STAGES; }
    __device__ __forceinline__ uint64_t* empty(int tile) const { return full(tile) + STAGES; }

    // Every barrier initialised, then the block's barrier: before any load or wait.
    __device__ __forceinline__ void init() const {
        if (threadIdx.x == 0) {
            mbarrier_init(barriers, 1);
            for (int i = 0; i < STAGES; i++) {
                mbarrier_init(full(i), 1);
                mbarrier_init(empty(i), WARPS);
            }
            mbarrier_init_fence();
        }
        __syncthreads();
    }
    // Rows row0 … row0 + ROWS − 1, columns column … column + HD − 1 of map into a SwizzledTile<HD, ROWS> at dst.
    template <int ROWS>
    __device__ __forceinline__ void load_rows(floatX* dst, const CUtensorMap& map, int column, int row0,
                                              uint64_t* bar) const {
#pragma unroll
        for (int r = 0; r < ROWS; r += TMA_BOX)
#pragma unroll
            for (int c = 0; c < HD; c += TMA_BOX)
                tma_load_box(dst + SwizzledTile<HD, ROWS>::block_offset(r, c), map, column + c, row0 + r, batch, bar);
    }
    // Thread 0: the own tiles' bytes announced (expect_own), then own tile i's rows t0 … from map at column.
    __device__ __forceinline__ void expect_own() const {
        mbarrier_expect_bytes(barriers, OWN * OwnTile::elements * sizeof(floatX));
    }
    __device__ __forceinline__ void load_own(int i, const CUtensorMap& map, int column, int t0) const {
        load_rows<ATTENTION_WGMMA_ROWS>(tiles + i * OwnTile::elements, map, column, t0, barriers);
    }
    // Thread 0: step tile `tile`, once every warp released the tile that last used its buffer.
    __device__ __forceinline__ void load_step(int tile) const {
        if (tile >= STAGES) mbarrier_wait(empty(tile), (tile / STAGES - 1) & 1);
        mbarrier_expect_bytes(full(tile), 2 * StepTile::elements * sizeof(floatX) + FLOATS * sizeof(float));
        const int r0 = from.row0 + tile * ATTENTION_WGMMA_STEP;
        load_rows<ATTENTION_WGMMA_STEP>(step_tile(0, tile), *from.first, from.first_column, r0, full(tile));
        load_rows<ATTENTION_WGMMA_STEP>(step_tile(1, tile), *from.second, from.second_column, r0, full(tile));
        if constexpr (QUERY_FLOATS)
            tma_load_box(query_floats(tile), *from.slots, from.slot_column, r0, batch, full(tile));
    }
    __device__ __forceinline__ void wait_own() const { mbarrier_wait(barriers, 0); }
    __device__ __forceinline__ void wait_step(int tile) const { mbarrier_wait(full(tile), tile / STAGES & 1); }
    // The warp is done reading the tile (its last wgmma on it waited for).
    __device__ __forceinline__ void release(int tile) const {
        if (threadIdx.x % 32 == 0) mbarrier_arrive(empty(tile));
    }
#endif
};

#if defined(ATTENTION_WGMMA)
// The steps of a warpgroup that reads step tiles first … last − 1 of the block's n_steps, pipelined: step i issues
// tile i's score products (S and dP, or their transposes), then the sum over tile i − 1 (O += P V; dQ += dS K;
// dV += Pᵀ dY and dK += dSᵀ Q), waits for the scores alone (committed first) and forms tile i's P or dS while the sum
// runs; the next step waits for the sum (there, not at the end of its own step, where ptxas hoisted the wait to the
// top of the element-wise code's basic block) and packs P or dS over the A fragments it read. The last sum follows
// the loop; the caller waits for it. Loads: tiles 0 … LEAD before the steps, tile i + LEAD in step i, into the
// buffer of tile i + LEAD − STAGES = i − 3, which every warp released by its step i − 1 (step i releases tile
// i − 2, whose sum step i's pack waited for; tiles before `first` at the start): a step of slack before thread 0
// would wait for the other warpgroup. Thread 0's warpgroup must read every tile from 0 and all but at most the last.
// No wgmma is issued under a branch: ptxas (CUDA 13.0) serialised every wgmma of a kernel that did (C7514).
//   own_fragments(): the block's own rows as A fragments, once they are in; scores(i), accumulate(i): issue and
//   commit tile i's products; elementwise(i, sum_in_flight): wait for the scores (past the sum's commit groups
//   when sum_in_flight), then tile i's P or dS; pack(): the wait for the sum in flight, then the packing.
template <typename Tiles, typename OwnFragments, typename Scores, typename Elementwise, typename Accumulate,
          typename Pack>
__device__ __forceinline__ void pipelined_steps(const Tiles& kv, int n_steps, int first, int last,
                                                OwnFragments own_fragments, Scores scores, Elementwise elementwise,
                                                Accumulate accumulate, Pack pack) {
    constexpr int LEAD = ATTENTION_WGMMA_PIPELINE_LEAD;
    static_assert(LEAD >= 1 && Tiles::STAGES == LEAD + 3, "the buffer a load reuses was released a step before");
    static_assert(ATTENTION_WGMMA_ROWS == 2 * ATTENTION_WGMMA_STEP,
                  "two warpgroups a step apart: thread 0's reads every tile from 0, all but at most the last");
    if (threadIdx.x == 0)
        for (int i = 0; i <= LEAD && i < n_steps; i++) kv.load_step(i);
    for (int i = 0; i < first; i++) kv.release(i);  // tiles the warpgroup never reads
    kv.wait_own();
    own_fragments();
    kv.wait_step(first);
    scores(first);
    elementwise(first, std::false_type());
    for (int step = first + 1; step < last; step++) {
        pack();
        if (step >= first + 2) kv.release(step - 2);
        if (threadIdx.x == 0 && step + LEAD < n_steps) kv.load_step(step + LEAD);
        kv.wait_step(step);
        scores(step);
        accumulate(step - 1);
        elementwise(step, std::true_type());  // the scores are done; the sum may still run
    }
    pack();
    accumulate(last - 1);
}
#endif

// As attention_forward_kernel, for ATTENTION_WGMMA_ROWS queries, pipelined (pipelined_steps): the softmax of tile i
// runs while O += P_{i−1} V_{i−1} does; O is rescaled by tile i's max once that product is done.
// shared: PipelineTiles<HD, 1> (the q tile; k and v tiles)
template <int HD>
static __global__ void __launch_bounds__(ATTENTION_WGMMA_THREADS, HD <= 64 ? 2 : 1)
    attention_forward_wgmma_kernel(floatX* y, float* lse, const __grid_constant__ CUtensorMap qkv_map, int T,
                                   int heads) {
#if defined(ATTENTION_WGMMA)
    constexpr int ROWS = ATTENTION_WGMMA_ROWS, KEYS = ATTENTION_WGMMA_STEP;
    extern __shared__ __align__(16) char attention_shared[];
    const AttentionHead head = attention_head<HD>(T, heads);
    const PipelineTiles<HD, 1> kv(
        attention_shared, {&qkv_map, &qkv_map, head.column + head.D, head.column + 2 * head.D, 0, nullptr, 0}, head);
    const int warp = (int)threadIdx.x / 32;
    const int t0 = (int)(gridDim.x - 1 - blockIdx.x) * ROWS;
    const int group_row0 = t0 + warp / 4 * 64, row0 = t0 + warp * 16;  // the warpgroup's and the warp's first query
    const int n_steps = key_tiles_through<KEYS>(t0 + ROWS - 1, T);        // up to the block's last row
    const int group_tiles = key_tiles_through<KEYS>(group_row0 + 63, T);  // and up to the warpgroup's
    const float scale_log2 = ATTENTION_LOG2E / sqrtf((float)HD);

    kv.init();
    if (threadIdx.x == 0) {
        kv.expect_own();
        kv.load_own(0, qkv_map, head.column, t0);
    }
    uint32_t q_rows[HD / 16][4], p[1][KEYS / 16][4];  // A fragments: the warp's queries; P of the tile before
    float s[1][KEYS / 8][4], o[1][HD / 8][4] = {};
    OnlineSoftmax<1> softmax;
    pipelined_steps(
        kv, n_steps, 0, group_tiles, [&] { load_a_fragments<HD, ROWS>(q_rows, kv.own_tile(0), row0 - t0); },
        [&](int tile) { wgmma_row_dots<HD, KEYS>(s[0], q_rows, kv.step_tile(0, tile)); },
        [&](int tile, auto sum_in_flight) {
            wgmma_wait<decltype(sum_in_flight)::value ? 1 : 0>(s[0]);
            const int s0 = tile * KEYS;
            softmax.step(s, row0, s0, s0 + KEYS - 1 > row0, scale_log2);
        },
        [&](int tile) { wgmma_accumulate<HD, KEYS>(o[0], p[0], kv.step_tile(1, tile)); },
        [&] {
            wgmma_wait<0>(o[0], p[0]);
            softmax.rescale(o);  // after step 0: o, zero, by 0
            pack_a_fragments(p, s);
        });
    wgmma_wait<0>(o[0]);
    softmax.finish(o, lse + head.lse, row0, T);
    store_rows<HD, 1>(y + head.rows, head.D, o, row0, T, 1.0f, nullptr);
#endif
}

// As attention_backward_key_kernel, for ATTENTION_WGMMA_ROWS keys, pipelined (pipelined_steps): P and dS of query
// tile i are formed from Sᵀ_i = K Q_iᵀ and dPᵀ_i = V dY_iᵀ while dV += P_{i−1}ᵀ dY_{i−1} and dK += dS_{i−1}ᵀ Q_{i−1}
// run.
// dy_map, slot_map: tensor maps of dy and of dqkv's row heads (tensor_map_row_heads: the dq slots' query floats).
// shared: PipelineTiles<HD, 2, true> (the k and v tiles; q and dy tiles, the query floats)
template <int HD>
static __global__ void __launch_bounds__(ATTENTION_WGMMA_THREADS, 1)
    attention_backward_key_wgmma_kernel(floatX* dqkv, const __grid_constant__ CUtensorMap qkv_map,
                                        const __grid_constant__ CUtensorMap dy_map,
                                        const __grid_constant__ CUtensorMap slot_map, const float2* rope_cos_sin,
                                        int T, int heads) {
#if defined(ATTENTION_WGMMA)
    constexpr int ROWS = ATTENTION_WGMMA_ROWS, QUERIES = ATTENTION_WGMMA_STEP;
    extern __shared__ __align__(16) char attention_shared[];
    const AttentionHead head = attention_head<HD>(T, heads);
    const int warp = (int)threadIdx.x / 32;
    const int s0 = blockIdx.x * ROWS;  // low tiles, which have the most queries, run first
    const int key0 = s0 + warp * 16;   // the warp's first key
    const PipelineTiles<HD, 2, true> queries(
        attention_shared, {&qkv_map, &dy_map, head.column, head.column, s0, &slot_map, head.column}, head);
    const int n_steps = (T - s0 + QUERIES - 1) / QUERIES;
    const float scale = 1.0f / sqrtf((float)HD), scale_log2 = ATTENTION_LOG2E * scale;

    queries.init();
    if (threadIdx.x == 0) {
        queries.expect_own();
        queries.load_own(0, qkv_map, head.column + head.D, s0);
        queries.load_own(1, qkv_map, head.column + 2 * head.D, s0);
    }
    // the warpgroup's first query tile: the first that reaches its keys (or the last, all masked, if none does)
    const int first = min(warp / 4, n_steps - 1);
    uint32_t k_rows[HD / 16][4], v_rows[HD / 16][4];                          // A fragments: the warp's keys
    uint32_t p_rows[1][QUERIES / 16][4], ds_rows[1][QUERIES / 16][4];          // and P, dS of the tile before
    float p[1][QUERIES / 8][4], ds[1][QUERIES / 8][4], dk[1][HD / 8][4] = {}, dv[1][HD / 8][4] = {};
    pipelined_steps(
        queries, n_steps, first, n_steps,
        [&] {
            load_a_fragments<HD, ROWS>(k_rows, queries.own_tile(0), key0 - s0);
            load_a_fragments<HD, ROWS>(v_rows, queries.own_tile(1), key0 - s0);
        },
        [&](int tile) {
            wgmma_row_dots<HD, QUERIES>(p[0], k_rows, queries.step_tile(0, tile));   // Sᵀ
            wgmma_row_dots<HD, QUERIES>(ds[0], v_rows, queries.step_tile(1, tile));  // dPᵀ
        },
        [&](int tile, auto sum_in_flight) {
            wgmma_wait<decltype(sum_in_flight)::value ? 2 : 0>(p[0], ds[0]);  // the sum: two commit groups
            key_tile_scores(p, ds, key0, s0 + tile * QUERIES, T, queries.query_floats(tile), scale_log2);
        },
        [&](int tile) {
            wgmma_accumulate<HD, QUERIES>(dv[0], p_rows[0], queries.step_tile(1, tile));
            wgmma_accumulate<HD, QUERIES>(dk[0], ds_rows[0], queries.step_tile(0, tile));
        },
        [&] {
            wgmma_wait<0>(dv[0], dk[0], p_rows[0], ds_rows[0]);
            pack_a_fragments(p_rows, p);
            pack_a_fragments(ds_rows, ds);
        });
    wgmma_wait<0>(dv[0], dk[0]);
    floatX* dk_out = dqkv + head.qkv + head.D;
    store_rows<HD, 1>(dk_out, head.stride, dk, key0, T, scale, rope_cos_sin);
    store_rows<HD, 1>(dk_out + head.D, head.stride, dv, key0, T, 1.0f, nullptr);
#endif
}

// As attention_backward_query_kernel, for ATTENTION_WGMMA_ROWS queries, pipelined (pipelined_steps): dS of tile i is
// formed from S_i = Q K_iᵀ and dP_i = dY V_iᵀ while dQ += dS_{i−1} K_{i−1} runs. dy_map: dy's tensor map.
// shared: PipelineTiles<HD, 2> (the q and dy tiles; k and v tiles)
template <int HD>
static __global__ void __launch_bounds__(ATTENTION_WGMMA_THREADS, 1)
    attention_backward_query_wgmma_kernel(floatX* dqkv, const __grid_constant__ CUtensorMap qkv_map,
                                          const __grid_constant__ CUtensorMap dy_map, const float2* rope_cos_sin,
                                          int T, int heads) {
#if defined(ATTENTION_WGMMA)
    constexpr int ROWS = ATTENTION_WGMMA_ROWS, KEYS = ATTENTION_WGMMA_STEP;
    extern __shared__ __align__(16) char attention_shared[];
    const AttentionHead head = attention_head<HD>(T, heads);
    const PipelineTiles<HD, 2> kv(
        attention_shared, {&qkv_map, &qkv_map, head.column + head.D, head.column + 2 * head.D, 0, nullptr, 0}, head);
    const int warp = (int)threadIdx.x / 32;
    const int t0 = (int)(gridDim.x - 1 - blockIdx.x) * ROWS;            // the longest rows first
    const int group_row0 = t0 + warp / 4 * 64, row0 = t0 + warp * 16;  // the warpgroup's and the warp's first query
    floatX* dq = dqkv + head.qkv;
    const int n_steps = key_tiles_through<KEYS>(t0 + ROWS - 1, T);        // up to the block's last row
    const int group_tiles = key_tiles_through<KEYS>(group_row0 + 63, T);  // and up to the warpgroup's
    const float scale = 1.0f / sqrtf((float)HD), scale_log2 = ATTENTION_LOG2E * scale;

    kv.init();
    if (threadIdx.x == 0) {
        kv.expect_own();
        kv.load_own(0, qkv_map, head.column, t0);
        kv.load_own(1, dy_map, head.column, t0);
    }
    float lse_row[2], delta_row[2];
    load_query_rows(lse_row, delta_row, dq, head.stride, row0, T);
    uint32_t q_rows[HD / 16][4], dy_rows[HD / 16][4], ds_rows[1][KEYS / 16][4];  // A fragments; dS of the tile before
    float p[1][KEYS / 8][4], ds[1][KEYS / 8][4], acc[1][HD / 8][4] = {};
    pipelined_steps(
        kv, n_steps, 0, group_tiles,
        [&] {
            load_a_fragments<HD, ROWS>(q_rows, kv.own_tile(0), row0 - t0);
            load_a_fragments<HD, ROWS>(dy_rows, kv.own_tile(1), row0 - t0);
        },
        [&](int tile) {
            wgmma_row_dots<HD, KEYS>(p[0], q_rows, kv.step_tile(0, tile));    // S
            wgmma_row_dots<HD, KEYS>(ds[0], dy_rows, kv.step_tile(1, tile));  // dP
        },
        [&](int tile, auto sum_in_flight) {
            wgmma_wait<decltype(sum_in_flight)::value ? 1 : 0>(p[0], ds[0]);
            query_tile_scores(p, ds, row0, tile * KEYS, lse_row, delta_row, scale_log2);
        },
        [&](int tile) { wgmma_accumulate<HD, KEYS>(acc[0], ds_rows[0], kv.step_tile(0, tile)); },
        [&] {
            wgmma_wait<0>(acc[0], ds_rows[0]);
            pack_a_fragments(ds_rows, ds);
        });
    wgmma_wait<0>(acc[0]);
    store_rows<HD, 1>(dq, head.stride, acc, row0, T, scale, rope_cos_sin);
#endif
}

// ---------------------------------------------------------------- launchers

// The head sizes the attention kernels take.
static inline bool attention_supports_head_size(int hd) {
    return hd == 8 || hd == 16 || hd == 32 || hd == 64 || hd == 128;
}

// run(std::integral_constant<int, hd>()) for the head size D/heads; stops with a message for one not supported.
template <typename Run>
static inline void attention_with_head_size(int D, int heads, Run run) {
    const int hd = heads > 0 ? D / heads : 0;
    if (heads <= 0 || D % heads != 0 || !attention_supports_head_size(hd)) {
        fprintf(stderr, "attention: head size D/heads = %d/%d must be 8, 16, 32, 64 or 128\n", D, heads);
        exit(EXIT_FAILURE);
    }
    switch (hd) {
        case 8: run(std::integral_constant<int, 8>()); break;
        case 16: run(std::integral_constant<int, 16>()); break;
        case 32: run(std::integral_constant<int, 32>()); break;
        case 64: run(std::integral_constant<int, 64>()); break;
        default: run(std::integral_constant<int, 128>()); break;
    }
}

// `bytes` of dynamic shared memory for `kernel`, raising its limit past the default 48 KB where needed.
template <typename Kernel>
static inline size_t attention_shared_bytes(Kernel kernel, size_t bytes) {
    if (bytes > 48 * 1024)
        cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    return bytes;
}

// cos_sin (T, hd/2): RoPE's (cos tω_i, sin tω_i), read by attention_forward and attention_backward.
static inline void rope_table(float2* cos_sin, int T, int hd, cudaStream_t stream) {
    const size_t n = (size_t)T * (hd / 2);
    rope_table_kernel<<<(unsigned)ceil_div(n, (size_t)ROPE_TABLE_THREADS), ROPE_TABLE_THREADS, 0, stream>>>(cos_sin,
                                                                                                          T, hd);
    cudaCheckLaunch();
}

// Which kernels run: the Hopper ones where they apply (best), or the mma.sync ones everywhere (portable: what Ampere
// and the fp32 build run, which the tests also check on a Hopper GPU).
enum class AttentionKernels { best, portable };

// Whether the Hopper kernels run here: a bf16 build whose kernels were built for sm_90a (their binary version says
// which target was built), on its GPU.
static inline bool attention_hopper_available() {
#if defined(ENABLE_FP32)
    return false;
#else
    static const bool available = [] {
        cudaFuncAttributes attributes;
        cudaCheck(cudaFuncGetAttributes(&attributes, attention_forward_wgmma_kernel<64>));
        return attributes.binaryVersion >= 90;
    }();
    return available;
#endif
}

// y (B,T,D) and lse (B,heads,T) from qkv (B,T,3D); with rope_cos_sin (rope_table) q and k of qkv are first rotated
// in place, as the backward reads them.
static inline void attention_forward(floatX* y, float* lse, floatX* qkv, const float2* rope_cos_sin, int B, int T,
                                     int D, int heads, cudaStream_t stream,
                                     AttentionKernels kernels = AttentionKernels::best) {
    attention_with_head_size(D, heads, [&](auto head_size) {
        constexpr int HD = decltype(head_size)::value;
        using Tiles = AttentionTiles<HD>;
        if (rope_cos_sin) {
            const size_t chunk_pairs = (size_t)B * T * 2 * heads * (HD / 2 / Tiles::chunk);
            rope_qk_kernel<HD><<<(unsigned)ceil_div(chunk_pairs, (size_t)ROPE_TABLE_THREADS), ROPE_TABLE_THREADS, 0,
                                 stream>>>(qkv, rope_cos_sin, B * T, T, heads);
            cudaCheckLaunch();
        }
        if constexpr (HD == 64 || HD == 128) {
            if (kernels == AttentionKernels::best && attention_hopper_available()) {
                const size_t shared =
                    attention_shared_bytes(attention_forward_wgmma_kernel<HD>, PipelineTiles<HD, 1>::shared_bytes);
                const dim3 grid(ceil_div(T, ATTENTION_WGMMA_ROWS), B * heads);
                attention_forward_wgmma_kernel<HD><<<grid, ATTENTION_WGMMA_THREADS, shared, stream>>>(
                    y, lse, tensor_map_rows(qkv, B, T, 3 * D), T, heads);
                cudaCheckLaunch();
                return;
            }
        }
        const size_t shared = attention_shared_bytes(
            attention_forward_kernel<HD>, (ATTENTION_FORWARD_ROWS + 4 * Tiles::step) * Tiles::pitch * sizeof(floatX));
        const dim3 grid(ceil_div(T, ATTENTION_FORWARD_ROWS), B * heads);
        attention_forward_kernel<HD><<<grid, 32 * Tiles::forward_warps, shared, stream>>>(y, lse, qkv, T, heads);
        cudaCheckLaunch();
    });
}

// dqkv (B,T,3D), overwritten, from dy (B,T,D), the forward's y (B,T,D) and lse (B,heads,T), qkv (B,T,3D) as the
// forward left it (q and k rotated) and the same rope_cos_sin as the forward.
static inline void attention_backward(floatX* dqkv, const floatX* dy, const floatX* y, const float* lse,
                                      const floatX* qkv, const float2* rope_cos_sin, int B, int T, int D, int heads,
                                      cudaStream_t stream, AttentionKernels kernels = AttentionKernels::best) {
    attention_with_head_size(D, heads, [&](auto head_size) {
        constexpr int HD = decltype(head_size)::value;
        using Tiles = AttentionTiles<HD>;
        const size_t lanes = (size_t)B * T * heads * (HD / Tiles::chunk);
        attention_row_sum_kernel<HD><<<(unsigned)ceil_div(lanes, (size_t)ATTENTION_ROW_SUM_THREADS),
                                       ATTENTION_ROW_SUM_THREADS, 0, stream>>>(dqkv, dy, y, lse, B * T, T, heads);
        cudaCheckLaunch();
        auto launch = [&](auto kernel, int block_rows, int threads, size_t shared) {
            const dim3 grid(ceil_div(T, block_rows), B * heads);
            kernel<<<grid, threads, attention_shared_bytes(kernel, shared), stream>>>(dqkv, dy, qkv, rope_cos_sin, T,
                                                                                      heads);
            cudaCheckLaunch();
        };
        const size_t tiles_bytes = (2 * ATTENTION_BACKWARD_ROWS + 4 * Tiles::step) * Tiles::pitch * sizeof(floatX);
        auto key_kernel = [&] {
            launch(attention_backward_key_kernel<HD>, ATTENTION_BACKWARD_ROWS, 32 * ATTENTION_BACKWARD_WARPS,
                   tiles_bytes + QueryTiles<HD, Tiles::step>::float_bytes);
        };
        if constexpr (HD == 64 || HD == 128) {
            if (kernels == AttentionKernels::best && attention_hopper_available()) {
                const dim3 grid(ceil_div(T, ATTENTION_WGMMA_ROWS), B * heads);
                const CUtensorMap qkv_map = tensor_map_rows(qkv, B, T, 3 * D), dy_map = tensor_map_rows(dy, B, T, D);
                if constexpr (HD == 64) {
                    auto kernel = attention_backward_key_wgmma_kernel<HD>;
                    kernel<<<grid, ATTENTION_WGMMA_THREADS,
                             attention_shared_bytes(kernel, PipelineTiles<HD, 2, true>::shared_bytes), stream>>>(
                        dqkv, qkv_map, dy_map, tensor_map_row_heads(dqkv, B, T, 3 * D), rope_cos_sin, T, heads);
                    cudaCheckLaunch();
                } else {  // at hd 128 its accumulators and fragments would outgrow the registers
                    key_kernel();
                }
                auto query_kernel = attention_backward_query_wgmma_kernel<HD>;
                query_kernel<<<grid, ATTENTION_WGMMA_THREADS,
                               attention_shared_bytes(query_kernel, PipelineTiles<HD, 2>::shared_bytes), stream>>>(
                    dqkv, qkv_map, dy_map, rope_cos_sin, T, heads);
                cudaCheckLaunch();
                return;
            }
        }
        key_kernel();
        launch(attention_backward_query_kernel<HD>, ATTENTION_BACKWARD_ROWS, 32 * ATTENTION_BACKWARD_WARPS,
               tiles_bytes);
    });
}
