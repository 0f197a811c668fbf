/*
 * cublas_emu.cpp — cuBLAS and cuBLASLt entry points for the CPU emulator, computed with CBLAS
 * (OpenBLAS). The real headers (cublas_v2.h, cublasLt.h) supply the types and exact signatures;
 * the real libcublas is never linked into the emulator build.
 *
 * Everything is column-major with cuBLAS's semantics: C = alpha*op(A)*op(B) + beta*C, op = N/T/C
 * (C = T for real types), C is not read when beta == 0, and leading dimensions are validated as
 * cuBLAS does. Every GEMM goes through one path (gemm_one): inputs that are not fp32 (bf16, fp16)
 * are widened to fp32, the product accumulates in fp32 into a dense temporary that starts as
 * beta*C, the cuBLASLt epilogue (bias, ReLU, GELU, bias gradients) is applied there, and the
 * result is narrowed once into D. That matches CUBLAS_COMPUTE_32F; the GPU's summation order and
 * FMA use differ, so tests compare exactly only on small-integer data.
 *
 * cuBLASLt descriptors live inside the semi-opaque structs the header defines (uint64_t data[]),
 * tagged with a magic number so that a descriptor that was never created is reported.
 */
#include "cuemu.h"

#include <cblas.h>
#include <cublasLt.h>
#include <cublas_v2.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math;
    cublasPointerMode_t pointer_mode;
};
struct cublasLtContext {
    int unused;
};

namespace {

bool supported_type(cudaDataType t) { return t == CUDA_R_32F || t == CUDA_R_16BF || t == CUDA_R_16F; }
size_t type_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

inline float load(const void* p, cudaDataType t, size_t i) {
    switch (t) {
    case CUDA_R_32F: return static_cast<const float*>(p)[i];
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: return __half2float(static_cast<const __half*>(p)[i]);
    }
}
inline void store(void* p, cudaDataType t, size_t i, float v) {
    switch (t) {
    case CUDA_R_32F: static_cast<float*>(p)[i] = v; break;
    case CUDA_R_16BF: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v); break;
    default: static_cast<__half*>(p)[i] = __float2half(v); break;
    }
}

/* fp32 -> TF32 (10 explicit mantissa bits), round to nearest even, inf and nan kept: what a tensor core
 * multiplies when cuBLAS computes CUBLAS_COMPUTE_32F_FAST_TF32 (cvt.rn.tf32.f32) */
inline float round_tf32(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7F800000u) != 0x7F800000u) b += 0xFFFu + ((b >> 13) & 1u);
    b &= 0xFFFFE000u;
    memcpy(&x, &b, 4);
    return x;
}

/* CUEMU_TF32=1: fp32 operands of FAST_TF32 products are rounded to TF32 first, as on a GPU. Off by
 * default: the fp32 emu backend is compared with the C oracle at fp32 tolerances, and the tests that
 * know TF32 (test_ops with TF32-aware GEMM bounds) turn it on. */
bool tf32_inputs(cublasComputeType_t c) {
    static int on = -1;
    if (on < 0) on = getenv("CUEMU_TF32") && atoi(getenv("CUEMU_TF32")) > 0;
    return on && c == CUBLAS_COMPUTE_32F_FAST_TF32;
}

/* a rows x cols column-major matrix with leading dimension ld, as a dense fp32 copy (ld = rows)
 * unless it already is fp32, in which case it is used in place (or copied rounded to TF32 when tf32) */
const float* as_f32(const void* p, cudaDataType t, int64_t rows, int64_t cols, int64_t ld, std::vector<float>& buf,
                    int64_t& ld_out, bool tf32) {
    if (t == CUDA_R_32F && tf32) {
        buf.resize((size_t)(rows * cols));
        for (int64_t j = 0; j < cols; j++)
            for (int64_t i = 0; i < rows; i++)
                buf[(size_t)(j * rows + i)] = round_tf32(static_cast<const float*>(p)[(size_t)(j * ld + i)]);
        ld_out = rows > 0 ? rows : 1;
        return buf.data();
    }
    if (t == CUDA_R_32F) {
        ld_out = ld;
        return static_cast<const float*>(p);
    }
    buf.resize((size_t)(rows * cols));
    for (int64_t j = 0; j < cols; j++)
        for (int64_t i = 0; i < rows; i++) buf[(size_t)(j * rows + i)] = load(p, t, (size_t)(j * ld + i));
    ld_out = rows > 0 ? rows : 1;
    return buf.data();
}

enum Epi : unsigned { E_NONE = 0, E_BIAS = 1, E_RELU = 2, E_GELU = 4, E_AUX = 8, E_BGRADA = 16, E_BGRADB = 32 };

struct Epilogue {
    unsigned flags = E_NONE;
    const void* bias = nullptr; /* E_BIAS: read; E_BGRADA/B: written */
    cudaDataType bias_type = CUDA_R_32F;
    void* aux = nullptr; /* E_AUX: the pre-activation values, for the backward pass */
    int64_t aux_ld = 0;
    cudaDataType aux_type = CUDA_R_32F;
};

inline float gelu_tanh(float x) {
    /* cuBLASLt's GELU is the tanh approximation */
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

/* D(m x n) = alpha * op(A) * op(B) + beta * C, then the epilogue; one matrix of a batch */
void gemm_one(cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, float alpha,
              const void* A, cudaDataType at, int64_t lda, const void* B, cudaDataType bt, int64_t ldb, float beta,
              const void* C, cudaDataType ct, int64_t ldc, void* D, cudaDataType dt, int64_t ldd, const Epilogue& epi,
              bool tf32 = false) {
    if (m <= 0 || n <= 0) return;
    bool tra = ta != CUBLAS_OP_N, trb = tb != CUBLAS_OP_N;
    std::vector<float> acc((size_t)(m * n), 0.0f), abuf, bbuf;
    if (beta != 0.0f)
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < m; i++) acc[(size_t)(j * m + i)] = beta * load(C, ct, (size_t)(j * ldc + i));
    int64_t a_rows = tra ? k : m, a_cols = tra ? m : k, b_rows = trb ? n : k, b_cols = trb ? k : n;
    int64_t la = 0, lb = 0;
    const float* Af = k > 0 ? as_f32(A, at, a_rows, a_cols, lda, abuf, la, tf32) : nullptr;
    const float* Bf = k > 0 ? as_f32(B, bt, b_rows, b_cols, ldb, bbuf, lb, tf32) : nullptr;
    if (k > 0 && alpha != 0.0f)
        cblas_sgemm(CblasColMajor, tra ? CblasTrans : CblasNoTrans, trb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                    (int)k, alpha, Af, (int)la, Bf, (int)lb, 1.0f, acc.data(), (int)m);
    if (epi.flags & E_BIAS)
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < m; i++) acc[(size_t)(j * m + i)] += load(epi.bias, epi.bias_type, (size_t)i);
    if (epi.flags & E_AUX)
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < m; i++) store(epi.aux, epi.aux_type, (size_t)(j * epi.aux_ld + i), acc[(size_t)(j * m + i)]);
    if (epi.flags & (E_RELU | E_GELU))
        for (float& v : acc) v = (epi.flags & E_RELU) ? (v > 0.0f ? v : 0.0f) : gelu_tanh(v);
    /* bias gradients: sums of op(A) over k (length m) or of op(B) over k (length n) */
    if (epi.flags & E_BGRADA)
        for (int64_t i = 0; i < m; i++) {
            float s = 0.0f;
            for (int64_t p = 0; p < k; p++) s += tra ? Af[i * la + p] : Af[p * la + i];
            store(const_cast<void*>(epi.bias), epi.bias_type, (size_t)i, s);
        }
    if (epi.flags & E_BGRADB)
        for (int64_t j = 0; j < n; j++) {
            float s = 0.0f;
            for (int64_t p = 0; p < k; p++) s += trb ? Bf[p * lb + j] : Bf[j * lb + p];
            store(const_cast<void*>(epi.bias), epi.bias_type, (size_t)j, s);
        }
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < m; i++) store(D, dt, (size_t)(j * ldd + i), acc[(size_t)(j * m + i)]);
}

bool valid_op(cublasOperation_t t) { return t == CUBLAS_OP_N || t == CUBLAS_OP_T || t == CUBLAS_OP_C; }

/* the classic API's argument checks (cuBLAS returns INVALID_VALUE for these) */
cublasStatus_t check_gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n,
                          int64_t k, int64_t lda, int64_t ldb, int64_t ldc, int64_t batch) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!valid_op(ta) || !valid_op(tb) || m < 0 || n < 0 || k < 0 || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    auto mx = [](int64_t v) { return v > 1 ? v : 1; };
    if (lda < mx(ta == CUBLAS_OP_N ? m : k) || ldb < mx(tb == CUBLAS_OP_N ? k : n) || ldc < mx(m))
        return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

bool compute_32f(cublasComputeType_t c) {
    return c == CUBLAS_COMPUTE_32F || c == CUBLAS_COMPUTE_32F_PEDANTIC || c == CUBLAS_COMPUTE_32F_FAST_16F ||
           c == CUBLAS_COMPUTE_32F_FAST_16BF || c == CUBLAS_COMPUTE_32F_FAST_TF32;
}

/* ---------------------------------------------------------------- cuBLASLt descriptors */
constexpr uint32_t kDescMagic = 0x51e3d001u, kLayoutMagic = 0x51e3d002u, kPrefMagic = 0x51e3d003u;

struct LtDesc {
    uint32_t magic;
    int32_t compute, scale, pointer_mode, transa, transb, transc, bias_type, aux_type;
    uint32_t epilogue;
    const void* bias;
    int64_t bias_batch_stride;
    void* aux;
    int64_t aux_ld, aux_batch_stride;
};
static_assert(sizeof(LtDesc) <= sizeof(cublasLtMatmulDescOpaque_t), "LtDesc does not fit");

struct LtLayout {
    uint32_t magic;
    int32_t type, order, batch;
    uint64_t rows, cols;
    int64_t ld, stride;
};
static_assert(sizeof(LtLayout) <= sizeof(cublasLtMatrixLayoutOpaque_t), "LtLayout does not fit");

struct LtPref {
    uint32_t magic;
    uint64_t max_workspace;
};
static_assert(sizeof(LtPref) <= sizeof(cublasLtMatmulPreferenceOpaque_t), "LtPref does not fit");

LtDesc* desc_of(cublasLtMatmulDesc_t d) {
    auto* p = reinterpret_cast<LtDesc*>(d);
    return p && p->magic == kDescMagic ? p : nullptr;
}
LtLayout* layout_of(cublasLtMatrixLayout_t l) {
    auto* p = reinterpret_cast<LtLayout*>(l);
    return p && p->magic == kLayoutMagic ? p : nullptr;
}

/* copy an attribute value of exactly the expected size */
template <class T>
cublasStatus_t set_attr(T& field, const void* buf, size_t size) {
    if (!buf || size != sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&field, buf, sizeof(T));
    return CUBLAS_STATUS_SUCCESS;
}
template <class T>
cublasStatus_t get_attr(const T& field, void* buf, size_t size, size_t* written) {
    if (written) *written = sizeof(T);
    if (!buf && size == 0) return written ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
    if (!buf || size < sizeof(T)) return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(buf, &field, sizeof(T));
    return CUBLAS_STATUS_SUCCESS;
}

bool epilogue_flags(uint32_t e, unsigned& flags) {
    switch (e) {
    case CUBLASLT_EPILOGUE_DEFAULT: flags = E_NONE; return true;
    case CUBLASLT_EPILOGUE_BIAS: flags = E_BIAS; return true;
    case CUBLASLT_EPILOGUE_RELU: flags = E_RELU; return true;
    case CUBLASLT_EPILOGUE_RELU_BIAS: flags = E_RELU | E_BIAS; return true;
    case CUBLASLT_EPILOGUE_GELU: flags = E_GELU; return true;
    case CUBLASLT_EPILOGUE_GELU_BIAS: flags = E_GELU | E_BIAS; return true;
    case CUBLASLT_EPILOGUE_GELU_AUX: flags = E_GELU | E_AUX; return true;
    case CUBLASLT_EPILOGUE_GELU_AUX_BIAS: flags = E_GELU | E_AUX | E_BIAS; return true;
    case CUBLASLT_EPILOGUE_BGRADA: flags = E_BGRADA; return true;
    case CUBLASLT_EPILOGUE_BGRADB: flags = E_BGRADB; return true;
    default: return false; /* DRELU/DGELU variants are not emulated */
    }
}

/* everything cublasLtMatmul needs, checked once (also answers AlgoGetHeuristic) */
struct LtPlan {
    const LtDesc* d;
    const LtLayout *a, *b, *c, *dl;
    int64_t m, n, k, batch;
    Epilogue epi;
};
cublasStatus_t plan(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                    cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D, LtPlan& p) {
    p.d = desc_of(desc);
    p.a = layout_of(A);
    p.b = layout_of(B);
    p.c = layout_of(C);
    p.dl = layout_of(D);
    if (!p.d || !p.a || !p.b || !p.c || !p.dl) return CUBLAS_STATUS_INVALID_VALUE;
    if (!compute_32f((cublasComputeType_t)p.d->compute) || p.d->scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    for (const LtLayout* l : {p.a, p.b, p.c, p.dl})
        if (l->order != CUBLASLT_ORDER_COL || !supported_type((cudaDataType)l->type)) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (p.c->type != p.dl->type) return CUBLAS_STATUS_NOT_SUPPORTED;
    if (!valid_op((cublasOperation_t)p.d->transa) || !valid_op((cublasOperation_t)p.d->transb) ||
        p.d->transc != CUBLAS_OP_N)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    bool tra = p.d->transa != CUBLAS_OP_N, trb = p.d->transb != CUBLAS_OP_N;
    p.m = (int64_t)p.dl->rows;
    p.n = (int64_t)p.dl->cols;
    p.k = (int64_t)(tra ? p.a->rows : p.a->cols);
    if ((int64_t)(tra ? p.a->cols : p.a->rows) != p.m || (int64_t)(trb ? p.b->rows : p.b->cols) != p.n ||
        (int64_t)(trb ? p.b->cols : p.b->rows) != p.k || p.c->rows != p.dl->rows || p.c->cols != p.dl->cols)
        return CUBLAS_STATUS_INVALID_VALUE;
    for (const LtLayout* l : {p.a, p.b, p.c, p.dl})
        if (l->ld < (int64_t)(l->rows > 1 ? l->rows : 1) || l->batch < 1) return CUBLAS_STATUS_INVALID_VALUE;
    p.batch = p.dl->batch;
    for (const LtLayout* l : {p.a, p.b, p.c})
        if (l->batch != p.batch && l->batch != 1) return CUBLAS_STATUS_INVALID_VALUE;
    if (!epilogue_flags(p.d->epilogue, p.epi.flags)) return CUBLAS_STATUS_NOT_SUPPORTED;
    p.epi.bias = p.d->bias;
    p.epi.bias_type = (cudaDataType)(p.d->bias_type >= 0 ? p.d->bias_type : p.dl->type);
    p.epi.aux = p.d->aux;
    p.epi.aux_ld = p.d->aux_ld;
    p.epi.aux_type = (cudaDataType)(p.d->aux_type >= 0 ? p.d->aux_type : p.dl->type);
    if ((p.epi.flags & (E_BIAS | E_BGRADA | E_BGRADB)) && (!p.epi.bias || !supported_type(p.epi.bias_type)))
        return CUBLAS_STATUS_INVALID_VALUE;
    if ((p.epi.flags & E_AUX) && (!p.epi.aux || p.epi.aux_ld < p.m || !supported_type(p.epi.aux_type)))
        return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

}  // namespace

extern "C" {

/* ====================================================================== cuBLAS */
const char* cublasGetStatusName(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}
const char* cublasGetStatusString(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported (by the qstar CPU emulator)";
    default: return "unknown error";
    }
}
const char* cublasLtGetStatusString(cublasStatus_t s) { return cublasGetStatusString(s); }
const char* cublasLtGetStatusName(cublasStatus_t s) { return cublasGetStatusName(s); }
size_t cublasLtGetVersion(void) { return CUBLAS_VERSION; }

cublasStatus_t cublasCreate_v2(cublasHandle_t* h) {
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    *h = new cublasContext{nullptr, CUBLAS_DEFAULT_MATH, CUBLAS_POINTER_MODE_HOST};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t h) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetVersion_v2(cublasHandle_t, int* v) {
    if (!v) return CUBLAS_STATUS_INVALID_VALUE;
    *v = CUBLAS_VERSION;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream_v2(cublasHandle_t h, cudaStream_t* s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!s) return CUBLAS_STATUS_INVALID_VALUE;
    *s = h->stream;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->math = m; /* TF32 and reduced-precision modes compute in full fp32 here */
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetMathMode(cublasHandle_t h, cublasMath_t* m) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!m) return CUBLAS_STATUS_INVALID_VALUE;
    *m = h->math;
    return CUBLAS_STATUS_SUCCESS;
}
/* host and device pointers are the same memory here, so both modes read alpha/beta the same way */
cublasStatus_t cublasSetPointerMode_v2(cublasHandle_t h, cublasPointerMode_t m) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->pointer_mode = m;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetPointerMode_v2(cublasHandle_t h, cublasPointerMode_t* m) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!m) return CUBLAS_STATUS_INVALID_VALUE;
    *m = h->pointer_mode;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t h, void*, size_t) {
    return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float* alpha, const float* A, int lda, long long sA,
                                         const float* B, int ldb, long long sB, const float* beta, float* C, int ldc,
                                         long long sC, int batch) {
    cublasStatus_t st = check_gemm(h, ta, tb, m, n, k, lda, ldb, ldc, batch);
    if (st) return st;
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    for (int b = 0; b < batch; b++)
        gemm_one(ta, tb, m, n, k, *alpha, A + b * sA, CUDA_R_32F, lda, B + b * sB, CUDA_R_32F, ldb, *beta,
                 C + b * sC, CUDA_R_32F, ldc, C + b * sC, CUDA_R_32F, ldc, Epilogue());
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                              float* C, int ldc) {
    return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}
cublasStatus_t cublasSgemmBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float* alpha, const float* const A[], int lda, const float* const B[], int ldb,
                                  const float* beta, float* const C[], int ldc, int batch) {
    cublasStatus_t st = check_gemm(h, ta, tb, m, n, k, lda, ldb, ldc, batch);
    if (st) return st;
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    for (int b = 0; b < batch; b++)
        gemm_one(ta, tb, m, n, k, *alpha, A[b], CUDA_R_32F, lda, B[b], CUDA_R_32F, ldb, *beta, C[b], CUDA_R_32F, ldc,
                 C[b], CUDA_R_32F, ldc, Epilogue());
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType at, int lda,
                                          long long sA, const void* B, cudaDataType bt, int ldb, long long sB,
                                          const void* beta, void* C, cudaDataType ct, int ldc, long long sC,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t) {
    cublasStatus_t st = check_gemm(h, ta, tb, m, n, k, lda, ldb, ldc, batch);
    if (st) return st;
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    if (!compute_32f(compute) || !supported_type(at) || !supported_type(bt) || !supported_type(ct))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
    for (int i = 0; i < batch; i++) {
        const char* Ai = static_cast<const char*>(A) + (size_t)(i * sA) * type_size(at);
        const char* Bi = static_cast<const char*>(B) + (size_t)(i * sB) * type_size(bt);
        char* Ci = static_cast<char*>(C) + (size_t)(i * sC) * type_size(ct);
        gemm_one(ta, tb, m, n, k, a, Ai, at, lda, Bi, bt, ldb, b, Ci, ct, ldc, Ci, ct, ldc, Epilogue(), tf32_inputs(compute));
    }
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType at, int lda, const void* B, cudaDataType bt,
                            int ldb, const void* beta, void* C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ct, ldc, 0, 1,
                                      compute, algo);
}

/* ====================================================================== cuBLASLt */
cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
    if (!h) return CUBLAS_STATUS_INVALID_VALUE;
    *h = new cublasLtContext{0};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute, cudaDataType_t scale) {
    if (!d) return CUBLAS_STATUS_INVALID_VALUE;
    auto* o = new cublasLtMatmulDescOpaque_t();
    LtDesc* p = reinterpret_cast<LtDesc*>(o);
    p->magic = kDescMagic;
    p->compute = compute;
    p->scale = scale;
    p->pointer_mode = CUBLASLT_POINTER_MODE_HOST;
    p->transa = p->transb = p->transc = CUBLAS_OP_N;
    p->epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    p->bias_type = p->aux_type = -1; /* = the type of D */
    *d = o;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    LtDesc* p = desc_of(d);
    if (!p) return CUBLAS_STATUS_INVALID_VALUE;
    p->magic = 0;
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t size) {
    LtDesc* p = desc_of(d);
    if (!p) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: return set_attr(p->compute, buf, size);
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: return set_attr(p->scale, buf, size);
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: {
        int32_t mode;
        cublasStatus_t st = set_attr(mode, buf, size);
        if (st) return st;
        if (mode != CUBLASLT_POINTER_MODE_HOST && mode != CUBLASLT_POINTER_MODE_DEVICE) return CUBLAS_STATUS_NOT_SUPPORTED;
        p->pointer_mode = mode;
        return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_TRANSA: return set_attr(p->transa, buf, size);
    case CUBLASLT_MATMUL_DESC_TRANSB: return set_attr(p->transb, buf, size);
    case CUBLASLT_MATMUL_DESC_TRANSC: return set_attr(p->transc, buf, size);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return set_attr(p->epilogue, buf, size);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return set_attr(p->bias, buf, size);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return set_attr(p->bias_type, buf, size);
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE: return set_attr(p->bias_batch_stride, buf, size);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER: return set_attr(p->aux, buf, size);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD: return set_attr(p->aux_ld, buf, size);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE: return set_attr(p->aux_batch_stride, buf, size);
    case CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE: return set_attr(p->aux_type, buf, size);
    default: return CUBLAS_STATUS_NOT_SUPPORTED; /* loudly: a silently ignored attribute would give wrong results */
    }
}
cublasStatus_t cublasLtMatmulDescGetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, void* buf,
                                              size_t size, size_t* written) {
    LtDesc* p = desc_of(d);
    if (!p) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: return get_attr(p->compute, buf, size, written);
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: return get_attr(p->scale, buf, size, written);
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: return get_attr(p->pointer_mode, buf, size, written);
    case CUBLASLT_MATMUL_DESC_TRANSA: return get_attr(p->transa, buf, size, written);
    case CUBLASLT_MATMUL_DESC_TRANSB: return get_attr(p->transb, buf, size, written);
    case CUBLASLT_MATMUL_DESC_TRANSC: return get_attr(p->transc, buf, size, written);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return get_attr(p->epilogue, buf, size, written);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return get_attr(p->bias, buf, size, written);
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: return get_attr(p->bias_type, buf, size, written);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type, uint64_t rows, uint64_t cols,
                                          int64_t ld) {
    if (!l) return CUBLAS_STATUS_INVALID_VALUE;
    auto* o = new cublasLtMatrixLayoutOpaque_t();
    LtLayout* p = reinterpret_cast<LtLayout*>(o);
    p->magic = kLayoutMagic;
    p->type = type;
    p->order = CUBLASLT_ORDER_COL;
    p->batch = 1;
    p->rows = rows;
    p->cols = cols;
    p->ld = ld;
    p->stride = 0;
    *l = o;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    LtLayout* p = layout_of(l);
    if (!p) return CUBLAS_STATUS_INVALID_VALUE;
    p->magic = 0;
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t size) {
    LtLayout* p = layout_of(l);
    if (!p) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: return set_attr(p->type, buf, size);
    case CUBLASLT_MATRIX_LAYOUT_ORDER: return set_attr(p->order, buf, size);
    case CUBLASLT_MATRIX_LAYOUT_ROWS: return set_attr(p->rows, buf, size);
    case CUBLASLT_MATRIX_LAYOUT_COLS: return set_attr(p->cols, buf, size);
    case CUBLASLT_MATRIX_LAYOUT_LD: return set_attr(p->ld, buf, size);
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: return set_attr(p->batch, buf, size);
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: return set_attr(p->stride, buf, size);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}
cublasStatus_t cublasLtMatrixLayoutGetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                                void* buf, size_t size, size_t* written) {
    LtLayout* p = layout_of(l);
    if (!p) return CUBLAS_STATUS_INVALID_VALUE;
    switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_TYPE: return get_attr(p->type, buf, size, written);
    case CUBLASLT_MATRIX_LAYOUT_ORDER: return get_attr(p->order, buf, size, written);
    case CUBLASLT_MATRIX_LAYOUT_ROWS: return get_attr(p->rows, buf, size, written);
    case CUBLASLT_MATRIX_LAYOUT_COLS: return get_attr(p->cols, buf, size, written);
    case CUBLASLT_MATRIX_LAYOUT_LD: return get_attr(p->ld, buf, size, written);
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: return get_attr(p->batch, buf, size, written);
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET: return get_attr(p->stride, buf, size, written);
    default: return CUBLAS_STATUS_NOT_SUPPORTED;
    }
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
    if (!pref) return CUBLAS_STATUS_INVALID_VALUE;
    auto* o = new cublasLtMatmulPreferenceOpaque_t();
    reinterpret_cast<LtPref*>(o)->magic = kPrefMagic;
    *pref = o;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
    if (!pref || reinterpret_cast<LtPref*>(pref)->magic != kPrefMagic) return CUBLAS_STATUS_INVALID_VALUE;
    reinterpret_cast<LtPref*>(pref)->magic = 0;
    delete pref;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t size) {
    LtPref* p = reinterpret_cast<LtPref*>(pref);
    if (!p || p->magic != kPrefMagic) return CUBLAS_STATUS_INVALID_VALUE;
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) return set_attr(p->max_workspace, buf, size);
    return buf ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE; /* search hints: nothing to choose from */
}
cublasStatus_t cublasLtMatmulPreferenceGetAttribute(cublasLtMatmulPreference_t pref,
                                                    cublasLtMatmulPreferenceAttributes_t attr, void* buf, size_t size,
                                                    size_t* written) {
    LtPref* p = reinterpret_cast<LtPref*>(pref);
    if (!p || p->magic != kPrefMagic) return CUBLAS_STATUS_INVALID_VALUE;
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) return get_attr(p->max_workspace, buf, size, written);
    return CUBLAS_STATUS_NOT_SUPPORTED;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t A,
                                              cublasLtMatrixLayout_t B, cublasLtMatrixLayout_t C,
                                              cublasLtMatrixLayout_t D, cublasLtMatmulPreference_t,
                                              int requested, cublasLtMatmulHeuristicResult_t results[], int* count) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (requested < 1 || !results || !count) return CUBLAS_STATUS_INVALID_VALUE;
    *count = 0;
    LtPlan p;
    cublasStatus_t st = plan(desc, A, B, C, D, p);
    if (st) return st;
    memset(&results[0], 0, sizeof results[0]);
    results[0].workspaceSize = 0;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.0f;
    *count = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t Adesc, const void* B, cublasLtMatrixLayout_t Bdesc,
                              const void* beta, const void* C, cublasLtMatrixLayout_t Cdesc, void* D,
                              cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t*, void*, size_t, cudaStream_t) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    LtPlan p;
    cublasStatus_t st = plan(desc, Adesc, Bdesc, Cdesc, Ddesc, p);
    if (st) return st;
    if (!alpha || !beta || !D || (p.k > 0 && (!A || !B))) return CUBLAS_STATUS_INVALID_VALUE;
    float a = *static_cast<const float*>(alpha), b = *static_cast<const float*>(beta);
    if (b != 0.0f && !C) return CUBLAS_STATUS_INVALID_VALUE;
    cudaDataType at = (cudaDataType)p.a->type, bt = (cudaDataType)p.b->type, ct = (cudaDataType)p.c->type,
                 dt = (cudaDataType)p.dl->type;
    for (int64_t i = 0; i < p.batch; i++) {
        /* a layout with batch count 1 is shared by every matrix of the batch */
        auto at_batch = [i](const void* base, const LtLayout* l, cudaDataType t) {
            return static_cast<const char*>(base) + (l->batch > 1 ? (size_t)(i * l->stride) * type_size(t) : 0);
        };
        Epilogue e = p.epi;
        if (e.bias) e.bias = static_cast<const char*>(e.bias) + (size_t)(i * p.d->bias_batch_stride) * type_size(e.bias_type);
        if (e.aux) e.aux = static_cast<char*>(e.aux) + (size_t)(i * p.d->aux_batch_stride) * type_size(e.aux_type);
        gemm_one((cublasOperation_t)p.d->transa, (cublasOperation_t)p.d->transb, p.m, p.n, p.k, a,
                 A ? at_batch(A, p.a, at) : nullptr, at, p.a->ld, B ? at_batch(B, p.b, bt) : nullptr, bt, p.b->ld, b,
                 C ? at_batch(C, p.c, ct) : nullptr, ct, p.c->ld, const_cast<char*>(at_batch(D, p.dl, dt)), dt,
                 p.dl->ld, e, tf32_inputs((cublasComputeType_t)p.d->compute));
    }
    return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */
