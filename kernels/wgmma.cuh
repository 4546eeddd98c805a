// Hopper's warpgroup matrix multiply (wgmma, sm_90a) for bf16 operands with fp32 accumulators, and the shared-memory
// layout it reads: the helpers kernels/attention.cuh's Hopper kernels are built from.
//
// A warpgroup is 4 consecutive warps (the first warp index a multiple of 4); one wgmma.m64n64k16 computes
//   D (64×64) += A (64×16) B (16×64)
// with A in registers and B in shared memory. Register layouts are mma.m16n8k16's (tensor_core.cuh), warp w of the
// warpgroup holding rows 16w … 16w+15: its A fragment is that of an m16n8k16 over those rows, and its accumulators
// float d[8][4] are those of 8 column blocks of 8: d[n][e] is row 16w + g + 8(e/2), column 8n + 2c + e%2 for lane
// 4g + c.
// B is read from a 128-byte-swizzled tile (SwizzledTile below), either as K-major (the tile's rows are B's columns:
// B = Yᵀ for a product X Yᵀ) or as MN-major (the tile's rows are B's rows: B = Z for X Z).
// The instruction runs asynchronously: wgmma_fence before a batch (its registers were written by ordinary code),
// after wgmma_fence_operands on its accumulators and A fragments (the compiler then cannot move their writes past
// the fence: those of P and dS are computed just before), wgmma_commit after it, and wgmma_wait<n>(registers…)
// until at most the newest n batches are in flight (batches complete in the order committed), which then releases
// the given accumulators and A fragments of the completed ones to ordinary code. The B tiles arrive by TMA
// (tma.cuh), whose writes wgmma sees once their barrier's wait returns.
#pragma once
#include <cstdint>

#include "common.cuh"

// Rows × HD (a multiple of 64) floatX in shared memory as wgmma reads them: HD/64 column blocks of rows × 64
// (128-byte rows) one after another, in each 16-byte chunk j of row r stored at chunk j ^ (r % 8) of its row, so
// that the 8 rows of a chunk column lie in 8 different bank groups. Each block must start 1024-byte aligned.
template <int HD, int ROWS> struct SwizzledTile {
    static_assert(HD % 64 == 0 && ROWS % 8 == 0, "whole 64-column blocks of whole 8-row groups");
    static constexpr int width = HD;
    static constexpr int elements = ROWS * HD;
    // the element offset of row r, column i (i a multiple of 8: the start of a 16-byte chunk)
    __device__ __forceinline__ static int offset(int r, int i) {
        return i / 64 * ROWS * 64 + r * 64 + ((i % 64 / 8) ^ (r % 8)) * 8;
    }
    // the start of rows r … of column block i / 64, columns i % 64 … (r a multiple of 8, i of 16): a wgmma operand
    __device__ __forceinline__ static int block_offset(int r, int i) { return i / 64 * ROWS * 64 + r * 64 + i % 64; }
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && !defined(ENABLE_FP32)
#define ATTENTION_WGMMA 1

// The shared-memory descriptor of a B operand at `start` in a SwizzledTile: 128-byte swizzle, 8-row groups 1024 bytes
// apart (the stride offset); the leading offset is unused, as one instruction reads within one 64-column block.
__device__ __forceinline__ uint64_t wgmma_descriptor(const floatX* start) {
    const uint32_t address = (uint32_t)__cvta_generic_to_shared(start);
    return (uint64_t)((address & 0x3FFFF) >> 4) | (uint64_t)1 << 16 | (uint64_t)(1024 >> 4) << 32 | (uint64_t)1 << 62;
}

// The descriptor of the operand `elements` further into the same SwizzledTile as descriptor d: its start field
// advanced (it cannot carry out: every shared-memory address fits it). Cheaper than a descriptor formed anew.
__device__ __forceinline__ uint64_t wgmma_descriptor_at(uint64_t d, int elements) {
    return d + (uint64_t)(elements * (int)sizeof(floatX) / 16);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }

// Keeps the compiler from moving reads or writes of these registers across an asynchronous wgmma.
template <int N> __device__ __forceinline__ void wgmma_fence_operands(float (&d)[N][4]) {
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+f"(d[n][e])::"memory");
}
template <int N> __device__ __forceinline__ void wgmma_fence_operands(uint32_t (&a)[N][4]) {
#pragma unroll
    for (int n = 0; n < N; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+r"(a[n][e])::"memory");
}

// d (64×64) = a b + (accumulate ? d : 0); b's descriptor from wgmma_descriptor, read MN-major when MN_MAJOR.
template <int MN_MAJOR>
__device__ __forceinline__ void wgmma_m64n64k16(float* d, const uint32_t (&a)[4], uint64_t b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
        "{%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(MN_MAJOR));
}

// s (the warpgroup's 64 rows × YROWS) = X Yᵀ over HD columns: X's A fragments in registers (x[k]: columns 16k …),
// Y a SwizzledTile<HD, YROWS>. Issued and committed; the caller waits.
template <int HD, int YROWS>
__device__ __forceinline__ void wgmma_row_dots(float (&s)[YROWS / 8][4], uint32_t (&x)[HD / 16][4],
                                               const floatX* y) {
    using Tile = SwizzledTile<HD, YROWS>;
    const uint64_t tile = wgmma_descriptor(y);
    wgmma_fence_operands(s);
    wgmma_fence_operands(x);
    wgmma_fence();
#pragma unroll
    for (int n = 0; n < YROWS / 64; n++)
#pragma unroll
        for (int k = 0; k < HD / 16; k++)
            wgmma_m64n64k16<0>(&s[8 * n][0], x[k], wgmma_descriptor_at(tile, Tile::block_offset(64 * n, 16 * k)),
                               k > 0);
    wgmma_commit();
}

// acc (the warpgroup's 64 rows × HD) += W Z: W's A fragments in registers (w[j]: columns 16j … of its ZROWS), Z a
// SwizzledTile<HD, ZROWS>. Issued and committed; the caller waits.
template <int HD, int ZROWS>
__device__ __forceinline__ void wgmma_accumulate(float (&acc)[HD / 8][4], uint32_t (&w)[ZROWS / 16][4],
                                                 const floatX* z) {
    using Tile = SwizzledTile<HD, ZROWS>;
    const uint64_t tile = wgmma_descriptor(z);
    wgmma_fence_operands(acc);
    wgmma_fence_operands(w);
    wgmma_fence();
#pragma unroll
    for (int j = 0; j < ZROWS / 16; j++)
#pragma unroll
        for (int n = 0; n < HD / 64; n++)
            wgmma_m64n64k16<1>(&acc[8 * n][0], w[j], wgmma_descriptor_at(tile, Tile::block_offset(16 * j, 64 * n)),
                               1);
    wgmma_commit();
}

// Waits until at most the newest `pending` batches are in flight, then releases these registers (accumulators and A
// fragments of the completed batches) to ordinary code: the compiler cannot move their reads or writes above it.
template <int pending, typename... Registers> __device__ __forceinline__ void wgmma_wait(Registers&... registers) {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(pending) : "memory");
    (wgmma_fence_operands(registers), ...);
}
#endif
