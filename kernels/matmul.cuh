// Every GEMM of the model, through cuBLASLt. Weights are stored PyTorch-style (out, in), row-major.
//
//   matmul_forward:   out (n, O) = x (n, I) Wᵀ                     W (O, I)
//                     out (n, O) = residual (n, O) + x Wᵀ          (the residual add in cuBLASLt's epilogue)
//   matmul_backward:  dx (n, I) = dout (n, O) W      (overwritten)
//                     dW (O, I) += doutᵀ x           (fp32, accumulated: gradient accumulation is free)
//
// Inputs are floatX with fp32 accumulation (CUBLAS_COMPUTE_32F: with fp32 inputs this is true fp32,
// TF32 stays off). cuBLASLt is column-major, and a row-major (r, c) buffer read column-major is the
// (c, r) transpose, so each product is written on the stored buffers as (suffix _cm = read column-major):
//   outᵀ (O×n) = op_T(W_cm (I×O)) · x_cm (I×n)
//   dxᵀ  (I×n) = W_cm (I×O) · dout_cm (O×n)
//   dWᵀ  (I×O) += x_cm (I×n) · op_T(dout_cm (O×n))
// Operands may be slices of larger buffers (a tensor inside the parameter arena, a chunk of rows), so each
// GEMM tells cuBLASLt's heuristic how aligned its pointers really are (it assumes 256 bytes otherwise). The
// descriptors and the heuristic's choice are built once per distinct GEMM and kept (MatmulPlan).
#pragma once
#include <cublasLt.h>

#include <cstdint>
#include <vector>

#include "common.cuh"

static inline void cublas_check(cublasStatus_t status, const char* file, int line) {
    if (status != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "cuBLASLt error %d at %s:%d\n", (int)status, file, line);
        exit(EXIT_FAILURE);
    }
}
#define cublasCheck(call) cublas_check((call), __FILE__, __LINE__)

static const size_t MATMUL_WORKSPACE_BYTES = 32ull << 20;

// One GEMM's cuBLASLt plan: its descriptors and the algorithm the heuristic chose, for one shape, transposition,
// output type and operand alignment. Built on that GEMM's first call and kept: a training step makes a few hundred
// GEMM calls of a dozen shapes, and building descriptors and asking the heuristic on every call cost host time that
// the GPU may spend waiting (docs/perf.md).
struct MatmulPlan {
    int m, n, k, lda, ldb;
    bool transA, transB;
    cudaDataType_t d_type;
    uint32_t align_a, align_b, align_d;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
};

struct Matmul {
    cublasLtHandle_t handle = nullptr;
    void* workspace = nullptr;  // MATMUL_WORKSPACE_BYTES of device memory, owned by the caller's arena
    std::vector<MatmulPlan> plans;
};

static inline void matmul_init(Matmul& mm, void* workspace) {
    cublasCheck(cublasLtCreate(&mm.handle));
    mm.workspace = workspace;
}

static inline void matmul_destroy(Matmul& mm) {
    for (const MatmulPlan& p : mm.plans) {
        cublasCheck(cublasLtMatrixLayoutDestroy(p.la));
        cublasCheck(cublasLtMatrixLayoutDestroy(p.lb));
        cublasCheck(cublasLtMatrixLayoutDestroy(p.ld));
        cublasCheck(cublasLtMatmulDescDestroy(p.desc));
    }
    mm.plans.clear();
    if (mm.handle) cublasCheck(cublasLtDestroy(mm.handle));
    mm.handle = nullptr;
}

// The largest power of two up to 256 that divides the address.
static inline uint32_t matmul_alignment(const void* p) {
    uint32_t alignment = 256;
    while (reinterpret_cast<uintptr_t>(p) % alignment != 0) alignment /= 2;
    return alignment;
}

template <typename T> static inline cudaDataType_t cuda_type();
template <> inline cudaDataType_t cuda_type<float>() { return CUDA_R_32F; }
template <> inline cudaDataType_t cuda_type<__nv_bfloat16>() { return CUDA_R_16BF; }

// A new plan for `key` (its shape, type and alignment fields set): the descriptors, and the heuristic's choice for
// operands that are as aligned as the key says.
static inline MatmulPlan matmul_plan(Matmul& mm, MatmulPlan key) {
    MatmulPlan& p = key;
    cublasCheck(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opA = p.transA ? CUBLAS_OP_T : CUBLAS_OP_N, opB = p.transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof(opA)));
    cublasCheck(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof(opB)));
    cublasCheck(cublasLtMatrixLayoutCreate(&p.la, cuda_type<floatX>(), p.transA ? p.k : p.m, p.transA ? p.m : p.k,
                                           p.lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&p.lb, cuda_type<floatX>(), p.transB ? p.n : p.k, p.transB ? p.k : p.n,
                                           p.ldb));
    cublasCheck(cublasLtMatrixLayoutCreate(&p.ld, p.d_type, p.m, p.n, p.m));
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &MATMUL_WORKSPACE_BYTES, sizeof(MATMUL_WORKSPACE_BYTES)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &p.align_a,
                                                     sizeof(p.align_a)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &p.align_b,
                                                     sizeof(p.align_b)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &p.align_d,
                                                     sizeof(p.align_d)));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &p.align_d,
                                                     sizeof(p.align_d)));
    cublasLtMatmulHeuristicResult_t heuristic;
    int found = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(mm.handle, p.desc, p.la, p.lb, p.ld, p.ld, pref, 1, &heuristic, &found));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    if (found == 0) {
        fprintf(stderr, "cuBLASLt has no algorithm for a %dx%dx%d GEMM (transA %d, transB %d)\n", p.m, p.n, p.k,
                p.transA, p.transB);
        exit(EXIT_FAILURE);
    }
    p.algo = heuristic.algo;
    return p;
}

// D (m×n, column-major, leading dim m) = op(A) op(B) + C, with A, B floatX and C, D of type TD (C laid out as D,
// possibly D itself; nullptr for none). A is (transA ? k×m : m×k) with leading dimension lda; B is (transB ? n×k :
// k×n) with ldb.
template <typename TD>
static inline void matmul_cublaslt(Matmul& mm, TD* d, const TD* c, const floatX* a, const floatX* b, int m, int n,
                                   int k, bool transA, bool transB, int lda, int ldb, cudaStream_t stream) {
    const MatmulPlan key{m, n, k, lda, ldb, transA, transB, cuda_type<TD>(), matmul_alignment(a),
                         matmul_alignment(b), std::min(matmul_alignment(d), c ? matmul_alignment(c) : 256u), nullptr,
                         nullptr, nullptr, nullptr, {}};
    const MatmulPlan* plan = nullptr;
    for (const MatmulPlan& p : mm.plans)
        if (p.m == m && p.n == n && p.k == k && p.lda == lda && p.ldb == ldb && p.transA == transA &&
            p.transB == transB && p.d_type == key.d_type && p.align_a == key.align_a && p.align_b == key.align_b &&
            p.align_d == key.align_d) {
            plan = &p;
            break;
        }
    if (!plan) {
        mm.plans.push_back(matmul_plan(mm, key));
        plan = &mm.plans.back();
    }
    const float alpha = 1.0f, beta = c ? 1.0f : 0.0f;
    cublasCheck(cublasLtMatmul(mm.handle, plan->desc, &alpha, a, plan->la, b, plan->lb, &beta, c ? c : d, plan->ld, d,
                               plan->ld, &plan->algo, mm.workspace, MATMUL_WORKSPACE_BYTES, stream));
}

// out (n, O) = x (n, I) Wᵀ
static inline void matmul_forward(Matmul& mm, floatX* out, const floatX* x, const floatX* W, int n, int I, int O,
                                  cudaStream_t stream) {
    matmul_cublaslt<floatX>(mm, out, nullptr, W, x, O, n, I, true, false, I, I, stream);
}

// out (n, O) = residual (n, O) + x (n, I) Wᵀ, rounded once; out may be residual itself
static inline void matmul_forward_residual(Matmul& mm, floatX* out, const floatX* residual, const floatX* x,
                                           const floatX* W, int n, int I, int O, cudaStream_t stream) {
    matmul_cublaslt<floatX>(mm, out, residual, W, x, O, n, I, true, false, I, I, stream);
}

// dx (n, I) = dout W (overwritten); dW (O, I) += doutᵀ x (fp32)
static inline void matmul_backward(Matmul& mm, floatX* dx, float* dW, const floatX* dout, const floatX* x,
                                   const floatX* W, int n, int I, int O, cudaStream_t stream) {
    matmul_cublaslt<floatX>(mm, dx, nullptr, W, dout, I, n, O, false, false, I, O, stream);
    matmul_cublaslt<float>(mm, dW, dW, x, dout, I, O, n, false, true, I, O, stream);
}
