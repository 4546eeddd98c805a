// Causal softmax attention and RoPE, forward and backward: the reference steps rope_forward,
// attention_forward, attention_backward and rope_backward, one launcher each.
//
// Shapes: qkv, dqkv (B,T,3D) floatX, rows [q | k | v]; each of q, k, v splits into H heads of size hd = D/H
// (head h is columns h·hd … (h+1)·hd−1). y, dy (B,T,D) floatX, heads concatenated. prob (B,H,T,T) fp32.
//
//   RoPE (rotate-half), in place on q and k of every head at position t, with x₁ = x[:hd/2], x₂ = x[hd/2:],
//   ω_i = 10000^(−2i/hd):       rope(x) = [x₁ cos(tω) − x₂ sin(tω), x₂ cos(tω) + x₁ sin(tω)]
//   Its backward is the inverse rotation (angle −tω) applied to dq and dk. The angle tω is formed and reduced
//   to [−π, π] in double, since in fp32 its rounding alone (|tω| up to T) would cost ~1e-4 at T ~ 1000.
//
//   forward, per (b, h), with s ≤ t:
//     p[t,s] = softmax_s(q_t·k_s / sqrt(hd))      written to prob, 0 above the diagonal (every element written)
//     y_t    = Σ_s p[t,s] v_s
//   backward, overwriting all of dqkv:
//     dp[t,s] = dy_t·v_s,   D_t = Σ_s p[t,s] dp[t,s],   ds[t,s] = p[t,s] (dp[t,s] − D_t) / sqrt(hd)
//     dv_s = Σ_t p[t,s] dy_t,   dk_s = Σ_t ds[t,s] q_t,   dq_t = Σ_s ds[t,s] k_s
//
// Work split: a block owns a tile of ATTENTION_TILE rows of one (b, h) and steps over the other side in tiles
// of the same size, each tile of q, k, v or dy staged in shared memory as fp32 (all sums are fp32). Warp w
// holds rows w, w + ATTENTION_WARPS, …, and lane c the column c of each step: scores and dp live in registers
// one step at a time, so nothing T×T is held beyond prob itself. The forward writes the scaled scores to prob
// in a first pass (keeping each row's running max and sum) and rewrites them as probabilities in the second,
// which also accumulates y; each prob element is read back by the thread that wrote it.
// The backward runs three kernels: query tiles compute D_t; key tiles compute dk and dv (which need D_t of
// every later row); query tiles compute dq. D_t passes between them in the first 4 bytes of row t's dq slot
// of the head, which the last kernel reads and then overwrites with dq, so the backward needs no buffer
// beyond its output. Head size up to ATTENTION_MAX_HEAD_SIZE (each lane holds hd/32 columns of its rows).
#pragma once
#include <cstring>

#include "common.cuh"

static const int ATTENTION_TILE = 32;                                      // rows per block, columns per step
static const int ATTENTION_WARPS = 8;
static const int ATTENTION_THREADS = 32 * ATTENTION_WARPS;
static const int ATTENTION_ROWS_PER_WARP = ATTENTION_TILE / ATTENTION_WARPS;
static const int ATTENTION_MAX_HEAD_SIZE = 128;
static const int ATTENTION_COLUMNS_PER_LANE = ATTENTION_MAX_HEAD_SIZE / 32;
static const int ATTENTION_SQUARE_PITCH = ATTENTION_TILE + 1;              // pitch of a TILE×TILE tile
static const int ROPE_THREADS = 256;

// ---------------------------------------------------------------- RoPE

// sin and cos of the angle t·ω_i, ω_i = 10000^(−2i/hd), formed and reduced to [−π, π] in double.
static __device__ __forceinline__ void rope_sincos(int t, int i, int hd, float* s, float* c) {
    const double angle = t * pow(10000.0, -2.0 * i / hd);
    sincosf((float)remainder(angle, 6.283185307179586), s, c);
}

// One thread per (position, head, i < hd/2) pair, rotating q and k by sign·tω_i.
// grid ceil(B·T·D/2 / ROPE_THREADS), block ROPE_THREADS
static __global__ void rope_rotate_kernel(floatX* qkv, int B, int T, int D, int heads, float sign) {
    const int hd = D / heads, half = hd / 2;
    const size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)B * T * (D / 2)) return;
    const size_t row = idx / (D / 2);
    const int pair = (int)(idx % (D / 2)), h = pair / half, i = pair % half;
    float s, c;
    rope_sincos((int)(row % T), i, hd, &s, &c);
    s *= sign;
    for (int part = 0; part < 2; part++) {
        floatX* x = qkv + row * 3 * D + part * D + h * hd + i;
        const float x1 = to_float(x[0]), x2 = to_float(x[half]);
        x[0] = from_float<floatX>(x1 * c - x2 * s);
        x[half] = from_float<floatX>(x2 * c + x1 * s);
    }
}

// ---------------------------------------------------------------- attention: tile helpers

// dst[r][i] = scale · src[r·stride + i] for rows r < n_rows of the tile, 0 for the rest (the tail of the
// sequence), so that no uninitialised value reaches a product. dst has pitch hd + 1 (conflict-free columns).
static __device__ __forceinline__ void load_tile(float* dst, const floatX* src, size_t stride, int n_rows, int hd,
                                                 float scale) {
    const int pitch = hd + 1;
    for (int e = threadIdx.x; e < ATTENTION_TILE * hd; e += blockDim.x) {
        const int r = e / hd, i = e % hd;
        dst[r * pitch + i] = r < n_rows ? scale * to_float(src[r * stride + i]) : 0.0f;
    }
}

// The warp's rows of the tile: row j of this thread is warp + ATTENTION_WARPS·j.
static __device__ __forceinline__ int tile_row(int j) { return threadIdx.x / 32 + ATTENTION_WARPS * j; }

// out[j] = Σ_i a[row j][i] · b[lane][i]: one column of a TILE×TILE block of a bᵀ, for a, b tiles (TILE, hd).
static __device__ __forceinline__ void tile_dot(float out[ATTENTION_ROWS_PER_WARP], const float* a, const float* b,
                                                int hd) {
    const int pitch = hd + 1, lane = threadIdx.x % 32;
#pragma unroll
    for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) out[j] = 0.0f;
    for (int i = 0; i < hd; i++) {
        const float bi = b[lane * pitch + i];
#pragma unroll
        for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) out[j] += a[tile_row(j) * pitch + i] * bi;
    }
}

// acc[j][m] += Σ_c w[row j][c] · x[c][lane + 32m]: the thread's part of a TILE×hd block of w x, for w a
// TILE×TILE tile (pitch ATTENTION_SQUARE_PITCH) and x a tile (TILE, hd).
static __device__ __forceinline__ void tile_accumulate(
    float acc[ATTENTION_ROWS_PER_WARP][ATTENTION_COLUMNS_PER_LANE], const float* w, const float* x, int hd) {
    const int pitch = hd + 1, lane = threadIdx.x % 32;
    for (int c = 0; c < ATTENTION_TILE; c++) {
        float xc[ATTENTION_COLUMNS_PER_LANE];
#pragma unroll
        for (int m = 0; m < ATTENTION_COLUMNS_PER_LANE; m++)
            xc[m] = lane + 32 * m < hd ? x[c * pitch + lane + 32 * m] : 0.0f;
#pragma unroll
        for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) {
            const float wjc = w[tile_row(j) * ATTENTION_SQUARE_PITCH + c];
#pragma unroll
            for (int m = 0; m < ATTENTION_COLUMNS_PER_LANE; m++) acc[j][m] += wjc * xc[m];
        }
    }
}

// Writes the thread's columns of row j of the block's TILE×hd result to out + (t0 + row j)·stride, rows < T.
static __device__ __forceinline__ void store_tile_rows(
    floatX* out, size_t stride, int t0, int T, int hd,
    const float acc[ATTENTION_ROWS_PER_WARP][ATTENTION_COLUMNS_PER_LANE]) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) {
        const int t = t0 + tile_row(j);
        if (t >= T) continue;
#pragma unroll
        for (int m = 0; m < ATTENTION_COLUMNS_PER_LANE; m++)
            if (lane + 32 * m < hd) out[t * stride + lane + 32 * m] = from_float<floatX>(acc[j][m]);
    }
}

// D_t in the first 4 bytes of row t's dq slot (hd ≥ 2 in bf16); memcpy, as the slot is only floatX-aligned.
static __device__ __forceinline__ void store_row_sum(floatX* dq_slot, float d) { memcpy(dq_slot, &d, sizeof(d)); }
static __device__ __forceinline__ float load_row_sum(const floatX* dq_slot) {
    float d;
    memcpy(&d, dq_slot, sizeof(d));
    return d;
}

// ---------------------------------------------------------------- attention: kernels
// Grids: (ceil(T / ATTENTION_TILE), B·H), block ATTENTION_THREADS. Query-tile kernels take the last tiles
// (the longest rows) first. Dynamic shared memory as attention_shared_bytes says.

static __device__ __forceinline__ int query_tile_start() {
    return (int)(gridDim.x - 1 - blockIdx.x) * ATTENTION_TILE;
}

// shared: q tile, k or v tile (TILE, hd + 1); p tile (TILE, TILE + 1)
static __global__ void __launch_bounds__(ATTENTION_THREADS)
    attention_forward_kernel(floatX* y, float* prob, const floatX* qkv, int T, int D, int heads) {
    extern __shared__ float shared[];
    const int hd = D / heads, tile_size = ATTENTION_TILE * (hd + 1), lane = threadIdx.x % 32;
    float *q_tile = shared, *kv_tile = q_tile + tile_size, *p_tile = kv_tile + tile_size;
    const int b = blockIdx.y / heads, h = blockIdx.y % heads, t0 = query_tile_start();
    const size_t stride = 3 * (size_t)D;
    const floatX* q = qkv + (size_t)b * T * stride + h * hd;
    const floatX *k = q + D, *v = q + 2 * D;
    float* prob_bh = prob + (size_t)blockIdx.y * T * T;
    const int s_end = min(t0 + ATTENTION_TILE, T);  // keys any row of the tile sees

    load_tile(q_tile, q + t0 * stride, stride, T - t0, hd, 1.0f / sqrtf((float)hd));
    // pass 1: scaled scores into prob; per thread, the running max and sum of exp over its columns
    float row_max[ATTENTION_ROWS_PER_WARP], row_sum[ATTENTION_ROWS_PER_WARP];
#pragma unroll
    for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) row_max[j] = -INFINITY, row_sum[j] = 0.0f;
    for (int s0 = 0; s0 < s_end; s0 += ATTENTION_TILE) {
        __syncthreads();  // the previous k tile is consumed
        load_tile(kv_tile, k + s0 * stride, stride, T - s0, hd, 1.0f);
        __syncthreads();
        float score[ATTENTION_ROWS_PER_WARP];
        tile_dot(score, q_tile, kv_tile, hd);
        const int s = s0 + lane;
#pragma unroll
        for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) {
            const int t = t0 + tile_row(j);
            if (t >= T || s > t) continue;
            prob_bh[(size_t)t * T + s] = score[j];
            if (score[j] > row_max[j]) {
                row_sum[j] = row_sum[j] * expf(row_max[j] - score[j]) + 1.0f;
                row_max[j] = score[j];
            } else {
                row_sum[j] += expf(score[j] - row_max[j]);
            }
        }
    }
    float inv_sum[ATTENTION_ROWS_PER_WARP];
#pragma unroll
    for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) {
        const float m = warp_max(row_max[j]);
        inv_sum[j] = 1.0f / warp_sum(row_sum[j] > 0.0f ? row_sum[j] * expf(row_max[j] - m) : 0.0f);
        row_max[j] = m;
    }
    // pass 2: probabilities into prob and into p_tile, y += p v
    float acc[ATTENTION_ROWS_PER_WARP][ATTENTION_COLUMNS_PER_LANE] = {};
    for (int s0 = 0; s0 < s_end; s0 += ATTENTION_TILE) {
        __syncthreads();  // the previous v and p tiles are consumed
        load_tile(kv_tile, v + s0 * stride, stride, T - s0, hd, 1.0f);
        const int s = s0 + lane;
#pragma unroll
        for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) {
            const int t = t0 + tile_row(j);
            float p = 0.0f;
            if (t < T && s <= t) p = expf(prob_bh[(size_t)t * T + s] - row_max[j]) * inv_sum[j];
            if (t < T && s < T) prob_bh[(size_t)t * T + s] = p;
            p_tile[tile_row(j) * ATTENTION_SQUARE_PITCH + lane] = p;
        }
        __syncthreads();
        tile_accumulate(acc, p_tile, kv_tile, hd);
    }
    // zeros right of the last step, which ended at key t0 + TILE − 1
#pragma unroll
    for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) {
        const int t = t0 + tile_row(j);
        if (t >= T) continue;
        for (int s = t0 + ATTENTION_TILE + lane; s < T; s += 32) prob_bh[(size_t)t * T + s] = 0.0f;
    }
    store_tile_rows(y + (size_t)b * T * D + h * hd, D, t0, T, hd, acc);
}

// D_t = Σ_s p[t,s] (dy_t·v_s) for the tile's rows, into their dq slots.
// shared: dy tile, v tile (TILE, hd + 1)
static __global__ void __launch_bounds__(ATTENTION_THREADS)
    attention_backward_row_sum_kernel(floatX* dqkv, const floatX* dy, const floatX* qkv, const float* prob, int T,
                                      int D, int heads) {
    extern __shared__ float shared[];
    const int hd = D / heads, tile_size = ATTENTION_TILE * (hd + 1), lane = threadIdx.x % 32;
    float *dy_tile = shared, *v_tile = dy_tile + tile_size;
    const int b = blockIdx.y / heads, h = blockIdx.y % heads, t0 = query_tile_start();
    const size_t stride = 3 * (size_t)D;
    const floatX* v = qkv + (size_t)b * T * stride + 2 * D + h * hd;
    floatX* dq = dqkv + (size_t)b * T * stride + h * hd;
    const float* prob_bh = prob + (size_t)blockIdx.y * T * T;
    const int s_end = min(t0 + ATTENTION_TILE, T);

    load_tile(dy_tile, dy + ((size_t)b * T + t0) * D + h * hd, D, T - t0, hd, 1.0f);
    float d[ATTENTION_ROWS_PER_WARP] = {};
    for (int s0 = 0; s0 < s_end; s0 += ATTENTION_TILE) {
        __syncthreads();
        load_tile(v_tile, v + s0 * stride, stride, T - s0, hd, 1.0f);
        __syncthreads();
        float dp[ATTENTION_ROWS_PER_WARP];
        tile_dot(dp, dy_tile, v_tile, hd);
        const int s = s0 + lane;
#pragma unroll
        for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) {
            const int t = t0 + tile_row(j);
            if (t < T && s <= t) d[j] += prob_bh[(size_t)t * T + s] * dp[j];
        }
    }
#pragma unroll
    for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) {
        const int t = t0 + tile_row(j);
        const float row_sum = warp_sum(d[j]);
        if (lane == 0 && t < T) store_row_sum(dq + t * stride, row_sum);
    }
}

// dv_s and dk_s for the block's tile of keys s, stepping over the query tiles t ≥ s.
// shared: v tile (own keys), q tile, dy tile (TILE, hd + 1); pᵀ tile, dsᵀ tile (TILE, TILE + 1)
static __global__ void __launch_bounds__(ATTENTION_THREADS)
    attention_backward_key_kernel(floatX* dqkv, const floatX* dy, const floatX* qkv, const float* prob, int T, int D,
                                  int heads) {
    extern __shared__ float shared[];
    const int hd = D / heads, tile_size = ATTENTION_TILE * (hd + 1), lane = threadIdx.x % 32;
    const int square_size = ATTENTION_TILE * ATTENTION_SQUARE_PITCH;
    float *v_tile = shared, *q_tile = v_tile + tile_size, *dy_tile = q_tile + tile_size;
    float *pt_tile = dy_tile + tile_size, *dst_tile = pt_tile + square_size;
    const int b = blockIdx.y / heads, h = blockIdx.y % heads, s0 = blockIdx.x * ATTENTION_TILE;
    const size_t stride = 3 * (size_t)D;
    const floatX* q = qkv + (size_t)b * T * stride + h * hd;
    const floatX* dy_bh = dy + (size_t)b * T * D + h * hd;
    floatX* dq = dqkv + (size_t)b * T * stride + h * hd;
    const float* prob_bh = prob + (size_t)blockIdx.y * T * T;
    const float scale = 1.0f / sqrtf((float)hd);

    load_tile(v_tile, q + 2 * D + s0 * stride, stride, T - s0, hd, 1.0f);
    float dk[ATTENTION_ROWS_PER_WARP][ATTENTION_COLUMNS_PER_LANE] = {};
    float dv[ATTENTION_ROWS_PER_WARP][ATTENTION_COLUMNS_PER_LANE] = {};
    for (int t0 = s0; t0 < T; t0 += ATTENTION_TILE) {
        __syncthreads();  // the previous q, dy, pᵀ and dsᵀ tiles are consumed
        load_tile(q_tile, q + t0 * stride, stride, T - t0, hd, 1.0f);
        load_tile(dy_tile, dy_bh + t0 * (size_t)D, D, T - t0, hd, 1.0f);
        for (int e = threadIdx.x; e < ATTENTION_TILE * ATTENTION_TILE; e += blockDim.x) {
            const int c = e / ATTENTION_TILE, r = e % ATTENTION_TILE, t = t0 + c, s = s0 + r;
            pt_tile[r * ATTENTION_SQUARE_PITCH + c] = t < T && s <= t ? prob_bh[(size_t)t * T + s] : 0.0f;
        }
        __syncthreads();
        float dpt[ATTENTION_ROWS_PER_WARP];  // dp[t0 + lane, s0 + row j]
        tile_dot(dpt, v_tile, dy_tile, hd);
        const float d = t0 + lane < T ? load_row_sum(dq + (t0 + lane) * stride) : 0.0f;
#pragma unroll
        for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) {
            const int i = tile_row(j) * ATTENTION_SQUARE_PITCH + lane;
            dst_tile[i] = pt_tile[i] * (dpt[j] - d) * scale;
        }
        __syncthreads();
        tile_accumulate(dv, pt_tile, dy_tile, hd);
        tile_accumulate(dk, dst_tile, q_tile, hd);
    }
    floatX* dk_out = dqkv + (size_t)b * T * stride + D + h * hd;
    store_tile_rows(dk_out, stride, s0, T, hd, dk);
    store_tile_rows(dk_out + D, stride, s0, T, hd, dv);
}

// dq_t for the block's tile of queries t, stepping over the key tiles s ≤ t; reads D_t from the dq slots
// before overwriting them.
// shared: dy tile (own queries), k tile, v tile (TILE, hd + 1); ds tile (TILE, TILE + 1)
static __global__ void __launch_bounds__(ATTENTION_THREADS)
    attention_backward_query_kernel(floatX* dqkv, const floatX* dy, const floatX* qkv, const float* prob, int T,
                                    int D, int heads) {
    extern __shared__ float shared[];
    const int hd = D / heads, tile_size = ATTENTION_TILE * (hd + 1), lane = threadIdx.x % 32;
    float *dy_tile = shared, *k_tile = dy_tile + tile_size, *v_tile = k_tile + tile_size;
    float* ds_tile = v_tile + tile_size;
    const int b = blockIdx.y / heads, h = blockIdx.y % heads, t0 = query_tile_start();
    const size_t stride = 3 * (size_t)D;
    const floatX* k = qkv + (size_t)b * T * stride + D + h * hd;
    const floatX* v = k + D;
    floatX* dq = dqkv + (size_t)b * T * stride + h * hd;
    const float* prob_bh = prob + (size_t)blockIdx.y * T * T;
    const float scale = 1.0f / sqrtf((float)hd);
    const int s_end = min(t0 + ATTENTION_TILE, T);

    load_tile(dy_tile, dy + ((size_t)b * T + t0) * D + h * hd, D, T - t0, hd, 1.0f);
    float d[ATTENTION_ROWS_PER_WARP];
#pragma unroll
    for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) {
        const int t = t0 + tile_row(j);
        d[j] = t < T ? load_row_sum(dq + t * stride) : 0.0f;
    }
    float acc[ATTENTION_ROWS_PER_WARP][ATTENTION_COLUMNS_PER_LANE] = {};
    for (int s0 = 0; s0 < s_end; s0 += ATTENTION_TILE) {
        __syncthreads();  // the previous k, v and ds tiles are consumed
        load_tile(k_tile, k + s0 * stride, stride, T - s0, hd, 1.0f);
        load_tile(v_tile, v + s0 * stride, stride, T - s0, hd, 1.0f);
        __syncthreads();
        float dp[ATTENTION_ROWS_PER_WARP];
        tile_dot(dp, dy_tile, v_tile, hd);
        const int s = s0 + lane;
#pragma unroll
        for (int j = 0; j < ATTENTION_ROWS_PER_WARP; j++) {
            const int t = t0 + tile_row(j);
            const float p = t < T && s <= t ? prob_bh[(size_t)t * T + s] : 0.0f;
            ds_tile[tile_row(j) * ATTENTION_SQUARE_PITCH + lane] = p * (dp[j] - d[j]) * scale;
        }
        __syncthreads();
        tile_accumulate(acc, ds_tile, k_tile, hd);
    }
    store_tile_rows(dq, stride, t0, T, hd, acc);
}

// ---------------------------------------------------------------- launchers

static inline void rope_launch(floatX* qkv, int B, int T, int D, int heads, float sign, cudaStream_t stream) {
    if (D % heads != 0 || (D / heads) % 2 != 0) {
        fprintf(stderr, "rope: head size D/heads = %d/%d must be an even integer\n", D, heads);
        exit(EXIT_FAILURE);
    }
    const size_t pairs = (size_t)B * T * (D / 2);
    const unsigned grid = (unsigned)ceil_div(pairs, (size_t)ROPE_THREADS);
    rope_rotate_kernel<<<grid, ROPE_THREADS, 0, stream>>>(qkv, B, T, D, heads, sign);
    cudaCheckLaunch();
}

// In place on q and k of qkv (B,T,3D).
static inline void rope_forward(floatX* qkv, int B, int T, int D, int heads, cudaStream_t stream) {
    rope_launch(qkv, B, T, D, heads, 1.0f, stream);
}

// In place on dq and dk of dqkv (B,T,3D).
static inline void rope_backward(floatX* dqkv, int B, int T, int D, int heads, cudaStream_t stream) {
    rope_launch(dqkv, B, T, D, heads, -1.0f, stream);
}

// Dynamic shared memory of an attention kernel holding `tiles` tiles (TILE, hd + 1) and `squares` (TILE, TILE + 1);
// checks the head size and raises the kernel's limit past the default 48 KB where needed.
template <typename Kernel>
static inline size_t attention_shared_bytes(Kernel kernel, int D, int heads, int tiles, int squares) {
    const int hd = D / heads;
    if (D % heads != 0 || hd < 2 || hd > ATTENTION_MAX_HEAD_SIZE) {
        fprintf(stderr, "attention: head size D/heads = %d/%d must be an integer in 2..%d\n", D, heads,
                ATTENTION_MAX_HEAD_SIZE);
        exit(EXIT_FAILURE);
    }
    const size_t floats = (size_t)ATTENTION_TILE * (tiles * (hd + 1) + squares * ATTENTION_SQUARE_PITCH);
    const size_t bytes = floats * sizeof(float);
    if (bytes > 48 * 1024)
        cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    return bytes;
}

// y (B,T,D) and prob (B,heads,T,T) from qkv (B,T,3D).
static inline void attention_forward(floatX* y, float* prob, const floatX* qkv, int B, int T, int D, int heads,
                                     cudaStream_t stream) {
    const size_t shared = attention_shared_bytes(attention_forward_kernel, D, heads, 2, 1);
    const dim3 grid(ceil_div(T, ATTENTION_TILE), B * heads);
    attention_forward_kernel<<<grid, ATTENTION_THREADS, shared, stream>>>(y, prob, qkv, T, D, heads);
    cudaCheckLaunch();
}

// dqkv (B,T,3D), overwritten, from dy (B,T,D), qkv (B,T,3D) and prob (B,heads,T,T) of the forward.
static inline void attention_backward(floatX* dqkv, const floatX* dy, const floatX* qkv, const float* prob, int B,
                                      int T, int D, int heads, cudaStream_t stream) {
    const dim3 grid(ceil_div(T, ATTENTION_TILE), B * heads);
    size_t shared = attention_shared_bytes(attention_backward_row_sum_kernel, D, heads, 2, 0);
    attention_backward_row_sum_kernel<<<grid, ATTENTION_THREADS, shared, stream>>>(dqkv, dy, qkv, prob, T, D, heads);
    cudaCheckLaunch();
    shared = attention_shared_bytes(attention_backward_key_kernel, D, heads, 3, 2);
    attention_backward_key_kernel<<<grid, ATTENTION_THREADS, shared, stream>>>(dqkv, dy, qkv, prob, T, D, heads);
    cudaCheckLaunch();
    shared = attention_shared_bytes(attention_backward_query_kernel, D, heads, 3, 1);
    attention_backward_query_kernel<<<grid, ATTENTION_THREADS, shared, stream>>>(dqkv, dy, qkv, prob, T, D, heads);
    cudaCheckLaunch();
}
