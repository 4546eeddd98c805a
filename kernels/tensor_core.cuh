// PTX helpers shared by the tensor-core kernels (attention.cuh, m2rnn_scan_tc.cuh): mma.m16n8k16 and its fragment
// loads and transposes, packing floats into 16-bit pairs, tanh.approx and ex2.approx, and asynchronous copies to
// shared memory.
//
// mma.m16n8k16 with fp32 accumulators, lane = 4g + c:
//   A (16×16) a0 = A[g][2c, 2c+1], a1 = A[g+8][2c, 2c+1], a2 = A[g][2c+8, 2c+9], a3 = A[g+8][2c+8, 2c+9]
//   B (16×8)  b0 = B[2c, 2c+1][g], b1 = B[2c+8, 2c+9][g]
//   C, D (16×8) C[g][2c], C[g][2c+1], C[g+8][2c], C[g+8][2c+1]   (pairs: the lower index in the low half)
// so the accumulators of two adjacent 16×8 tiles, packed, are exactly an A fragment. mma.m16n8k8 (bf16) is its first
// half in k: A (16×8) a0 = A[g][2c, 2c+1], a1 = A[g+8][2c, 2c+1]; B (8×8) b0 = B[2c, 2c+1][g]; C, D as above.
// ldmatrix.x4 loads four 8×8 b16 matrices whose 16-byte rows lanes 8q … 8q+7 address: register q of lane l holds
// elements 2(l%4), 2(l%4)+1 of row l/4 of matrix q, or with .trans rows 2(l%4), 2(l%4)+1 of column l/4.
#pragma once
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "common.cuh"

#if !defined(ENABLE_FP32)
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const floatX* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"((uint32_t)__cvta_generic_to_shared(row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const floatX* row) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"((uint32_t)__cvta_generic_to_shared(row)));
}
#endif

// d += a b, operands bf16 (or fp16).
template <bool fp16 = false>
__device__ __forceinline__ void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    if constexpr (fp16)
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// d += a b over k = 8, operands bf16.
__device__ __forceinline__ void mma_m16n8k8_bf16(float (&d)[4], const uint32_t (&a)[2], uint32_t b) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5}, {%6}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(b));
}

// The transpose of the 8×8 16-bit matrix whose row lane/4, columns 2(lane%4), +1 this lane holds, same layout.
__device__ __forceinline__ uint32_t movmatrix_trans(uint32_t x) {
    uint32_t y;
    asm("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
    return y;
}

// Two floats as one register of 16-bit values (lo in the low half), and back.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    const __nv_bfloat162 p = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&p);
}
__device__ __forceinline__ uint32_t pack_f16(float lo, float hi) {
    const __half2 p = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&p);
}
// bf16 → fp32 is the bf16 bits in the upper half: one shift or mask each (the intrinsic adds a byte permute).
__device__ __forceinline__ float2 unpack_bf16(uint32_t x) {
    return make_float2(__uint_as_float(x << 16), __uint_as_float(x & 0xffff0000u));
}
__device__ __forceinline__ float2 unpack_f16(uint32_t x) {
    return __half22float2(*reinterpret_cast<const __half2*>(&x));
}

// tanh on the special-function unit: one MUFU op, relative error about 2⁻¹¹.
__device__ __forceinline__ float tanh_approx(float x) {
    float y;
    asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// 2^x on the special-function unit: one MUFU op (exp2f adds a range check and two scalings around it), relative
// error about 2⁻²²; 2^−∞ = 0, and results below 2⁻¹²⁶ flush to zero, as the softmax needs no subnormals.
__device__ __forceinline__ float exp2_approx(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// BYTES (4, 8 or 16) bytes from global to shared memory, asynchronously. cp_async_wait_all (or cp_async_commit,
// then cp_async_wait<n>: all but the newest n committed groups) makes the thread's own copies visible to it, a
// __syncthreads then every thread's. 16-byte copies bypass L1 (the data streams through once).
template <int BYTES> __device__ __forceinline__ void cp_async(void* dst, const void* src) {
    const uint32_t shared = (uint32_t)__cvta_generic_to_shared(dst);
    if constexpr (BYTES == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(shared), "l"(src));
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(shared), "l"(src), "n"(BYTES));
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int pending> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(pending) : "memory");
}
