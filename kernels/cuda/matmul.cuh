/*
 * Linear layers through cuBLASLt in the row-major (OUT, IN) weight layout of kernels/ops.h: fp32
 * storage with TF32 tensor-core compute, or bf16 storage (CUDA_R_16BF operands and output) with fp32
 * compute and accumulation on the bf16 tensor cores. cuBLASLt is column-major, so every row-major product is
 * computed as its transpose: out = inp·Wᵀ (N, OUT) is, column-major, outᵀ = W·inpᵀ.
 * Weight gradients accumulate (beta = 1).
 */
#pragma once

#include <cublasLt.h>

#include "kernels/cuda/common.cuh"

static cublasLtHandle_t qstar_lt;
static void* qstar_lt_workspace;
static const size_t QSTAR_LT_WORKSPACE = QSTAR_DEVICE_WORKSPACE_BYTES;

static inline void cublas_check_(cublasStatus_t st, const char* what, const char* file, int line) {
    if (st != CUBLAS_STATUS_SUCCESS) fatal("cuBLAS error %d at %s:%d: %s", (int)st, file, line, what);
}
#define cublasCheck(call) cublas_check_((call), #call, __FILE__, __LINE__)

// The handle and workspace are made on the first product, so only the precision a run uses has them.
static void matmul_init(void) {
    if (qstar_lt) return;
    cublasCheck(cublasLtCreate(&qstar_lt));
    cudaCheck(cudaMalloc(&qstar_lt_workspace, QSTAR_LT_WORKSPACE));
}

// floatX as cuBLASLt sees it, and the compute type of its products: bf16 operands with fp32 compute, or fp32
// operands on the TF32 tensor cores. QSTAR_TF32=0 in the environment makes fp32 products exact fp32 (the
// CUDA cores, ~15x slower): finite-difference gradient checks and comparisons at fp32 precision need it,
// since TF32's 10-bit operands move a loss by more than a finite-difference step does.
static const cudaDataType QSTAR_LT_TYPE = sizeof(floatX) == 2 ? CUDA_R_16BF : CUDA_R_32F;
static cublasComputeType_t lt_compute_type(void) {
    if (sizeof(floatX) == 2) return CUBLAS_COMPUTE_32F;
    const char* tf32 = getenv("QSTAR_TF32");
    return tf32 && !strcmp(tf32, "0") ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
}

// Every operand 16-byte aligned: cuBLASLt's fast bf16/TF32 kernels load 128-bit vectors, and a misaligned
// pointer or leading dimension silently drops it to slow ones (the vocabulary is padded to 128 for this,
// config.h). A matrix of one row or one column is a contiguous vector (the mixing head's Linear(H -> 1)):
// only its pointer can be aligned.
static void lt_check_aligned(const void* p, int ld, int rows, int cols, const char* which, int m, int n, int k) {
    if ((uintptr_t)p % 16 || (rows > 1 && cols > 1 && ((size_t)ld * sizeof(floatX)) % 16))
        fatal("cuBLASLt operand %s of a %d x %d x %d matmul is not 16-byte aligned (pointer %p, leading dimension %d)",
              which, m, n, k, p, ld);
}

// Column-major D (m, n) = alpha · op(A) · op(B) + beta · D, with A stored (ta ? k : m) x (ta ? m : k).
static void lt_gemm(floatX* d, const floatX* a, const floatX* b, int m, int n, int k, int ta, int tb, int lda, int ldb,
                    int ldd, float alpha, float beta) {
    lt_check_aligned(a, lda, ta ? k : m, ta ? m : k, "A", m, n, k);
    lt_check_aligned(b, ldb, tb ? n : k, tb ? k : n, "B", m, n, k);
    lt_check_aligned(d, ldd, m, n, "D", m, n, k);
    matmul_init();
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescCreate(&desc, lt_compute_type(), CUDA_R_32F));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    cublasCheck(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    cublasCheck(cublasLtMatrixLayoutCreate(&la, QSTAR_LT_TYPE, ta ? k : m, ta ? m : k, lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&lb, QSTAR_LT_TYPE, tb ? n : k, tb ? k : n, ldb));
    cublasCheck(cublasLtMatrixLayoutCreate(&ld, QSTAR_LT_TYPE, m, n, ldd));
    // One algorithm from the heuristic, asked afresh for each shape: the same shape always gets the
    // same algorithm, so results are reproducible run to run.
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    size_t ws = QSTAR_LT_WORKSPACE;
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    cublasCheck(cublasLtMatmulAlgoGetHeuristic(qstar_lt, desc, la, lb, ld, ld, pref, 1, &heur, &found));
    if (found == 0) fatal("cuBLASLt: no algorithm for a %d x %d x %d matmul", m, n, k);
    cublasCheck(cublasLtMatmul(qstar_lt, desc, &alpha, a, la, b, lb, &beta, d, ld, d, ld, &heur.algo,
                               qstar_lt_workspace, QSTAR_LT_WORKSPACE, qstar_stream));
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    cublasCheck(cublasLtMatrixLayoutDestroy(la));
    cublasCheck(cublasLtMatrixLayoutDestroy(lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(ld));
    cublasCheck(cublasLtMatmulDescDestroy(desc));
}

// out (N, OUT) = inp (N, IN) · weight (OUT, IN)ᵀ   ==  column-major outᵀ = W · inpᵀ
static void cuda_matmul_forward(floatX* out, const floatX* inp, const floatX* weight, int N, int IN, int OUT) {
    NVTX_RANGE_FN();
    lt_gemm(out, weight, inp, OUT, N, IN, 1, 0, IN, IN, OUT, 1.0f, 0.0f);
}

// dinp (N, IN) = dout · W  ==  dinpᵀ = Wᵀ · doutᵀ ;  dweight (OUT, IN) += doutᵀ · inp  ==  dWᵀ += inpᵀ · dout
static void cuda_matmul_backward(floatX* dinp, floatX* dweight, const floatX* dout, const floatX* inp,
                                 const floatX* weight, int N, int IN, int OUT, int accumulate_dinp) {
    NVTX_RANGE_FN();
    if (dinp) lt_gemm(dinp, weight, dout, IN, N, OUT, 0, 0, IN, OUT, IN, 1.0f, accumulate_dinp ? 1.0f : 0.0f);
    if (dweight) lt_gemm(dweight, inp, dout, IN, OUT, N, 0, 1, IN, OUT, IN, 1.0f, 1.0f);
}
