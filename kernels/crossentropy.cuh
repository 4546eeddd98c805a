// Softmax, cross-entropy loss and its gradient over the padded vocabulary, in one kernel: the reference
// steps crossentropy_forward and crossentropy_backward, fused (as llm.c's fused classifier).
//
// Shapes: the logits are (B·T, Vp) floatX, of which only the first `vocab` columns are real (Vp is the
// vocabulary padded to a multiple of 128); tokens (B, T+1) int, the target of position (b, t) is
// tokens[b·(T+1) + t + 1]; losses (B·T) fp32. A call handles `rows` consecutive rows from row0 on (the
// classifier runs in chunks of rows so the whole (B·T, Vp) logits never exist at once): `logits` and `losses`
// point at row row0, `tokens` at the whole (B, T+1). Per row i (position b·T + t) with target y:
//   m = max_{j<vocab} z_j,   s = Σ_{j<vocab} exp(z_j − m),   p_j = exp(z_j − m) / s
//   losses[i] = −log p_y = m + log s − z_y          (the caller takes the mean over B·T)
//   when dloss > 0, the row is overwritten IN PLACE by the gradient of the loss Σ_i dloss · losses[i]:
//   dlogits_j = (p_j − [j = y]) · dloss for j < vocab,  0 for the padded columns
//   (dloss = 1/(B·T) for the mean over one batch, 1/(B·T·steps) with gradient accumulation)
// The padded columns are never read into m or s, so whatever the GEMM left there (their lm_head rows get no
// gradient) takes no part.
//
// Work split: one block per row of the chunk, reading it in 16-byte packs (rows are 16-byte aligned: Vp is a
// multiple of the pack width). The first pass keeps each thread's running (m, s) over its packs, rescaling s whenever
// m grows, so the row is read once for both; the block then merges the threads' (m, s). The second pass
// re-reads the row (mostly from L2) and writes dlogits over it, each thread over the packs it read.
#pragma once
#include "common.cuh"

static const int CROSSENTROPY_THREADS = 512;
static const float LOGIT_FLOOR = -3.4e38f;          // below any logit; finite, so FLOOR − FLOOR is 0, not NaN

using LogitPack = FloatXPack<FLOATX_PACK>;  // 16 bytes of logits

// The softmax statistics of a set of logits: their max m and s = Σ exp(z − m).
struct LogitStats {
    float max, sum;
};

static __device__ __forceinline__ LogitStats logit_stats_merge(LogitStats a, LogitStats b) {
    const float m = fmaxf(a.max, b.max);
    return LogitStats{m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

static __device__ __forceinline__ LogitStats warp_logit_stats(LogitStats s) {
    for (int offset = 16; offset > 0; offset >>= 1)
        s = logit_stats_merge(s, LogitStats{__shfl_xor_sync(0xffffffff, s.max, offset),
                                            __shfl_xor_sync(0xffffffff, s.sum, offset)});
    return s;
}

// The block's statistics, in every thread; the call is a barrier of the block. Called once per block.
static __device__ LogitStats block_logit_stats(LogitStats s) {
    __shared__ float maxes[32], sums[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    s = warp_logit_stats(s);
    if (lane == 0) {
        maxes[warp] = s.max;
        sums[warp] = s.sum;
    }
    __syncthreads();
    s = lane < warps ? LogitStats{maxes[lane], sums[lane]} : LogitStats{LOGIT_FLOOR, 0.0f};
    return warp_logit_stats(s);
}

// grid rows, block CROSSENTROPY_THREADS: one block per row of the chunk (logits, losses point at row row0)
static __global__ void crossentropy_forward_backward_kernel(float* losses, floatX* logits, const int* tokens, int row0,
                                                            int T, int vocab, int Vp, float dloss) {
    const int i = row0 + blockIdx.x;  // the position b·T + t
    floatX* z_row = logits + (size_t)blockIdx.x * Vp;
    LogitPack* row = reinterpret_cast<LogitPack*>(z_row);
    const int target = tokens[i + i / T + 1];  // i = b·T + t  →  b·(T+1) + t + 1
    // read before block_logit_stats' barrier, hence before any thread overwrites the row
    const float target_logit = threadIdx.x == 0 ? to_float(z_row[target]) : 0.0f;

    LogitStats s{LOGIT_FLOOR, 0.0f};
    for (int p = threadIdx.x; p * FLOATX_PACK < vocab; p += blockDim.x) {
        const LogitPack z = row[p];
        const int j0 = p * FLOATX_PACK;
        float pack_max = LOGIT_FLOOR;
#pragma unroll
        for (int k = 0; k < FLOATX_PACK; k++)
            if (j0 + k < vocab) pack_max = fmaxf(pack_max, to_float(z.v[k]));
        const float m = fmaxf(s.max, pack_max);
        float sum = s.sum * expf(s.max - m);
#pragma unroll
        for (int k = 0; k < FLOATX_PACK; k++)
            if (j0 + k < vocab) sum += expf(to_float(z.v[k]) - m);
        s = LogitStats{m, sum};
    }
    s = block_logit_stats(s);
    if (threadIdx.x == 0) losses[blockIdx.x] = s.max + logf(s.sum) - target_logit;
    if (dloss <= 0.0f) return;

    const float inv_sum = 1.0f / s.sum;
    for (int p = threadIdx.x; p < Vp / FLOATX_PACK; p += blockDim.x) {
        LogitPack z = row[p];
#pragma unroll
        for (int k = 0; k < FLOATX_PACK; k++) {
            const int j = p * FLOATX_PACK + k;
            const float prob = expf(to_float(z.v[k]) - s.max) * inv_sum;
            const float d = j < vocab ? (prob - (j == target ? 1.0f : 0.0f)) * dloss : 0.0f;
            z.v[k] = from_float<floatX>(d);
        }
        row[p] = z;
    }
}

// Rows row0 … row0+rows−1 of the B·T positions: logits (rows, Vp) and losses (rows) fp32 point at row row0,
// tokens is the whole (B, T+1). dloss is the weight of each position's loss in the loss being differentiated:
// 1/(B·T) for one batch, 1/(B·T·steps) with gradient accumulation over `steps` micro-batches; when it is
// > 0 the logits are overwritten by dlogits = (p − onehot)·dloss, when 0 they are left unchanged.
static inline void crossentropy_forward_backward(float* losses, floatX* logits, const int* tokens, int row0, int rows,
                                                 int T, int vocab, int Vp, float dloss, cudaStream_t stream) {
    if (Vp % FLOATX_PACK != 0 || reinterpret_cast<size_t>(logits) % 16 != 0 || vocab > Vp) {
        fprintf(stderr, "crossentropy_forward_backward: needs 16-byte aligned logits rows (Vp %d a multiple of %d) "
                        "and vocab %d <= Vp\n", Vp, FLOATX_PACK, vocab);
        exit(EXIT_FAILURE);
    }
    crossentropy_forward_backward_kernel<<<rows, CROSSENTROPY_THREADS, 0, stream>>>(
        losses, logits, tokens, row0, T, vocab, Vp, dloss);
    cudaCheckLaunch();
}
