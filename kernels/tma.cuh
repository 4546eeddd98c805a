// Hopper's tensor memory accelerator (TMA, sm_90a) and the shared-memory barriers (mbarrier) that say when its copies
// have landed: what kernels/attention.cuh's Hopper kernels load their tiles with.
//
// A tensor map (made on the host) describes a tensor in global memory and the box one copy moves. tensor_map_rows:
// a bf16 tensor (B, T, width), boxes of 64 × 64; tma_load_box copies columns c … c + 63, rows t … t + 63 of batch
// row b into shared memory in wgmma.cuh's SwizzledTile order (128-byte rows, 16-byte chunk j of row r at j ^ (r % 8):
// the copy's 128-byte swizzle, from a 1024-byte aligned destination); rows at or past T arrive as zeros.
// tensor_map_row_heads: the same tensor in boxes of 16 bytes × 64 rows, unswizzled (row r at 16r bytes). The copy runs
// on its own: a thread announces the bytes it awaits on a barrier (mbarrier_expect_bytes), issues the copies, and
// every thread that reads the box first waits for the barrier's phase (mbarrier_wait). A barrier completes a phase
// when its count of arrivals and its awaited bytes are both in; phases alternate parity 0, 1, 0, …
// Shared memory read by wgmma needs no fence after such a wait (both are the async proxy).
#pragma once
#include <cstdint>
#include <cuda.h>
#include <cudaTypedefs.h>

#include "common.cuh"

static const int TMA_BOX = 64;  // rows and columns of a box (64 bf16 columns: one 128-byte swizzled row)

#if defined(__CUDA_ARCH_FEAT_SM90_ALL) && !defined(ENABLE_FP32)
__device__ __forceinline__ uint32_t shared_address(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

// One thread: the barrier expects `arrivals` arrivals a phase. Then mbarrier_init_fence, by that thread, and a block
// barrier, before any other use.
__device__ __forceinline__ void mbarrier_init(uint64_t* bar, int arrivals) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)), "r"(arrivals) : "memory");
}
__device__ __forceinline__ void mbarrier_init_fence() {
    asm volatile("fence.mbarrier_init.release.cluster;\nfence.proxy.async.shared::cta;\n" ::: "memory");
}

// One arrival that also adds `bytes` to what the current phase awaits (the copies issued next deliver them).
__device__ __forceinline__ void mbarrier_expect_bytes(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(shared_address(bar)), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbarrier_arrive(uint64_t* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(shared_address(bar)) : "memory");
}
// Until the phase of this parity is complete.
__device__ __forceinline__ void mbarrier_wait(uint64_t* bar, uint32_t parity) {
    asm volatile(
        "{\n.reg .pred done;\nwaiting:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
        "@!done bra waiting;\n}\n" ::"r"(shared_address(bar)),
        "r"(parity)
        : "memory");
}

// The box at (column, row, batch) of a three-dimensional `map` into dst (1024-byte aligned when swizzled, else
// 128), its bytes counted on `bar`.
__device__ __forceinline__ void tma_load_box(void* dst, const CUtensorMap& map, int column, int row, int batch,
                                             uint64_t* bar) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
        "[%5];\n" ::"r"(shared_address(dst)),
        "l"(reinterpret_cast<uint64_t>(&map)), "r"(column), "r"(row), "r"(batch), "r"(shared_address(bar))
        : "memory");
}
#endif

// The tensor map of a bf16 tensor (B, T, width) at `base` (16-byte aligned, width a multiple of 8) in boxes of
// `box_columns` × 64 rows; rows past T read as zeros. The driver's encoder is found through the runtime, so that
// nothing links the driver library.
static inline CUtensorMap tensor_map_bf16(const void* base, int B, int T, int width, int box_columns,
                                          CUtensorMapSwizzle swizzle) {
    static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
        void* function = nullptr;
        cudaDriverEntryPointQueryResult found;
        cudaCheck(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function, 12000, cudaEnableDefault,
                                                   &found));
        if (found != cudaDriverEntryPointSuccess || !function) {
            fprintf(stderr, "tensor_map_bf16: the CUDA driver has no cuTensorMapEncodeTiled; update the driver\n");
            exit(EXIT_FAILURE);
        }
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(function);
    }();
    const cuuint64_t dims[3] = {(cuuint64_t)width, (cuuint64_t)T, (cuuint64_t)B};
    const cuuint64_t strides[2] = {(cuuint64_t)width * 2, (cuuint64_t)width * 2 * T};  // bytes, of rows and batches
    const cuuint32_t box[3] = {(cuuint32_t)box_columns, TMA_BOX, 1}, element_strides[3] = {1, 1, 1};
    CUtensorMap map;
    const CUresult result = encode(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(base), dims, strides,
                                   box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                                   CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (result != CUDA_SUCCESS) {
        fprintf(stderr, "tensor_map_bf16: cuTensorMapEncodeTiled failed (CUresult %d) for (%d, %d, %d) at %p\n",
                (int)result, B, T, width, base);
        exit(EXIT_FAILURE);
    }
    return map;
}

// 64 × 64 boxes, 128-byte swizzled: what tma_load_box reads into a SwizzledTile.
static inline CUtensorMap tensor_map_rows(const void* base, int B, int T, int width) {
    return tensor_map_bf16(base, B, T, width, TMA_BOX, CU_TENSOR_MAP_SWIZZLE_128B);
}
// Boxes of 8 columns (16 bytes) × 64 rows, unswizzled.
static inline CUtensorMap tensor_map_row_heads(const void* base, int B, int T, int width) {
    return tensor_map_bf16(base, B, T, width, 8, CU_TENSOR_MAP_SWIZZLE_NONE);
}
