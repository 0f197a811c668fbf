/*
 * test_blas.cu — the emulator's cuBLAS and cuBLASLt shims (emu/cublas_emu.cpp) against a
 * naive column-major loop: every transpose combination, alpha/beta (beta = 0 must not read C, so
 * C starts as NaN there), leading dimensions larger than the rows, strided batches, GemmEx with
 * fp32 and bf16 inputs, and cuBLASLt with bias / ReLU / GELU epilogues, bias gradients, batches
 * and C != D. Inputs are small integers, so every fp32 result is exact and compared with ==
 * (GELU with a tolerance).
 */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <math.h>

#include "test_helpers.h"

#define BL_OK(call) CHECK((call) == CUBLAS_STATUS_SUCCESS, "%s failed", #call)

/* C = alpha op(A) op(B) + beta C, all column-major */
static void ref_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const std::vector<float>& A, int lda,
                     const std::vector<float>& B, int ldb, float beta, std::vector<float>& C, int ldc,
                     size_t offA = 0, size_t offB = 0, size_t offC = 0) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                float a = ta ? A[offA + (size_t)i * lda + p] : A[offA + (size_t)p * lda + i];
                float b = tb ? B[offB + (size_t)p * ldb + j] : B[offB + (size_t)j * ldb + p];
                s += (double)a * b;
            }
            float& c = C[offC + (size_t)j * ldc + i];
            c = (float)(alpha * s + (beta != 0.0f ? beta * c : 0.0));
        }
}

static std::vector<float> ints(size_t n, int seed, int mod = 7) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; i++) v[i] = (float)((int)(((i * 2654435761u + seed * 40503u) >> 5) % mod) - mod / 2);
    return v;
}

static int count_diff(const std::vector<float>& a, const std::vector<float>& b, float tol = 0.0f) {
    int bad = 0;
    for (size_t i = 0; i < a.size(); i++) bad += !(fabsf(a[i] - b[i]) <= tol);
    return bad;
}

int main(void) {
    if (!have_device()) return 0;
    cublasHandle_t h;
    BL_OK(cublasCreate(&h));
    cudaStream_t s;
    cudaStreamCreate(&s);
    BL_OK(cublasSetStream(h, s));
    BL_OK(cublasSetMathMode(h, CUBLAS_TF32_TENSOR_OP_MATH));
    const int m = 13, n = 9, k = 11, pad = 3;

    /* cublasSgemm: 4 transpose combos x (alpha, beta) */
    const float alphas[] = {1.0f, 2.0f}, betas[] = {0.0f, -1.0f};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (float alpha : alphas)
                for (float beta : betas) {
                    int lda = (ta ? k : m) + pad, ldb = (tb ? n : k) + pad, ldc = m + pad;
                    std::vector<float> A = ints((size_t)lda * (ta ? m : k), 1), B = ints((size_t)ldb * (tb ? k : n), 2);
                    std::vector<float> C = ints((size_t)ldc * n, 3);
                    if (beta == 0.0f)
                        for (float& c : C) c = NAN; /* must not be read */
                    float *dA = to_device(A), *dB = to_device(B), *dC = to_device(C);
                    BL_OK(cublasSgemm(h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k,
                                      &alpha, dA, lda, dB, ldb, &beta, dC, ldc));
                    std::vector<float> got = to_host(dC, C.size());
                    ref_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
                    /* the padding rows of C must be untouched */
                    int bad = 0;
                    for (int j = 0; j < n; j++)
                        for (int i = 0; i < ldc; i++) {
                            float g = got[(size_t)j * ldc + i], e = C[(size_t)j * ldc + i];
                            bad += !(g == e || (i >= m && isnan(g) && isnan(e)));
                        }
                    CHECK(bad == 0, "Sgemm ta=%d tb=%d alpha=%g beta=%g: %d wrong", ta, tb, alpha, beta, bad);
                    cudaFree(dA); cudaFree(dB); cudaFree(dC);
                }

    /* argument checking as cuBLAS does it */
    {
        float one = 1.0f;
        float* d = device_zeros<float>(16);
        CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, d, 3, d, 4, &one, d, 4) ==
                  CUBLAS_STATUS_INVALID_VALUE, "lda < m must be rejected");
        CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, -1, 4, 4, &one, d, 4, d, 4, &one, d, 4) ==
                  CUBLAS_STATUS_INVALID_VALUE, "negative m must be rejected");
        cudaFree(d);
    }

    /* cublasSgemmStridedBatched and cublasGemmStridedBatchedEx (fp32) */
    {
        const int batch = 4, lda = m, ldb = n, ldc = m; /* A: N (m x k), B: T (stored n x k) */
        long long sA = (long long)lda * k + 5, sB = (long long)ldb * k + 2, sC = (long long)ldc * n + 7;
        std::vector<float> A = ints(sA * batch, 4), B = ints(sB * batch, 5), C = ints(sC * batch, 6);
        float alpha = 2.0f, beta = 1.0f;
        float *dA = to_device(A), *dB = to_device(B), *dC = to_device(C), *dC2 = to_device(C);
        BL_OK(cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &alpha, dA, lda, sA, dB, ldb, sB, &beta,
                                        dC, ldc, sC, batch));
        BL_OK(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_T, m, n, k, &alpha, dA, CUDA_R_32F, lda, sA, dB,
                                         CUDA_R_32F, ldb, sB, &beta, dC2, CUDA_R_32F, ldc, sC, batch,
                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        std::vector<float> got = to_host(dC, C.size()), got2 = to_host(dC2, C.size());
        for (int b = 0; b < batch; b++)
            ref_gemm(false, true, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, b * sA, b * sB, b * sC);
        CHECK(count_diff(got, C) == 0, "SgemmStridedBatched: %d wrong", count_diff(got, C));
        CHECK(count_diff(got2, C) == 0, "GemmStridedBatchedEx fp32: %d wrong", count_diff(got2, C));
        cudaFree(dA); cudaFree(dB); cudaFree(dC); cudaFree(dC2);
    }

    /* cublasGemmEx: bf16 inputs, fp32 output and bf16 output */
    {
        std::vector<float> A = ints((size_t)k * m, 7), B = ints((size_t)k * n, 8), C(m * n, 0.0f);
        std::vector<__nv_bfloat16> Ab(A.size()), Bb(B.size());
        for (size_t i = 0; i < A.size(); i++) Ab[i] = __float2bfloat16(A[i]);
        for (size_t i = 0; i < B.size(); i++) Bb[i] = __float2bfloat16(B[i]);
        __nv_bfloat16 *dA = to_device(Ab), *dB = to_device(Bb);
        float* dC = device_zeros<float>(m * n);
        __nv_bfloat16* dCb = device_zeros<__nv_bfloat16>(m * n);
        float alpha = 1.0f, beta = 0.0f;
        /* A stored k x m and used transposed, B stored k x n */
        BL_OK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, dA, CUDA_R_16BF, k, dB, CUDA_R_16BF, k, &beta,
                           dC, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        BL_OK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, dA, CUDA_R_16BF, k, dB, CUDA_R_16BF, k, &beta,
                           dCb, CUDA_R_16BF, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        ref_gemm(true, false, m, n, k, alpha, A, k, B, k, beta, C, m);
        std::vector<float> got = to_host(dC, C.size());
        std::vector<__nv_bfloat16> gotb = to_host(dCb, C.size());
        int badb = 0;
        /* fp32 accumulation, one rounding to bf16 at the end */
        for (size_t i = 0; i < C.size(); i++) badb += __bfloat162float(gotb[i]) != __bfloat162float(__float2bfloat16(C[i]));
        CHECK(count_diff(got, C) == 0, "GemmEx bf16 x bf16 -> fp32: %d wrong", count_diff(got, C));
        CHECK(badb == 0, "GemmEx bf16 -> bf16: %d wrong", badb);
        CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, dA, CUDA_R_8I, k, dB, CUDA_R_8I, k, &beta,
                           dC, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED,
              "int8 GemmEx must say NOT_SUPPORTED");
        cudaFree(dA); cudaFree(dB); cudaFree(dC); cudaFree(dCb);
    }

    /* cuBLASLt */
    cublasLtHandle_t lt;
    BL_OK(cublasLtCreate(&lt));
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            /* D = alpha op(A) op(B) + beta C (+ bias per row), C and D distinct, batch 3 (A shared) */
            const int batch = 3;
            int lda = (ta ? k : m) + 1, ldb = (tb ? n : k), ldc = m + 2, ldd = m;
            int arows = ta ? k : m, acols = ta ? m : k, brows = tb ? n : k, bcols = tb ? k : n;
            long long sB = (long long)ldb * bcols, sC = (long long)ldc * n + 4, sD = (long long)ldd * n;
            std::vector<float> A = ints((size_t)lda * acols, 9), B = ints(sB * batch, 10), C = ints(sC * batch, 11);
            std::vector<float> bias = ints(m, 12), D(sD * batch, 0.0f);
            float *dA = to_device(A), *dB = to_device(B), *dC = to_device(C), *dbias = to_device(bias);
            float* dD = device_zeros<float>(D.size());
            cublasLtMatmulDesc_t op;
            BL_OK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
            cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
            cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
            BL_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
            BL_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
            BL_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
            BL_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &dbias, sizeof dbias));
            cublasLtMatrixLayout_t la, lb, lc, ld;
            BL_OK(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, arows, acols, lda));
            BL_OK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, brows, bcols, ldb));
            BL_OK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, m, n, ldc));
            BL_OK(cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, m, n, ldd));
            int32_t bc = batch;
            BL_OK(cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
            BL_OK(cublasLtMatrixLayoutSetAttribute(lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sB, sizeof sB));
            BL_OK(cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
            BL_OK(cublasLtMatrixLayoutSetAttribute(lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sC, sizeof sC));
            BL_OK(cublasLtMatrixLayoutSetAttribute(ld, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
            BL_OK(cublasLtMatrixLayoutSetAttribute(ld, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sD, sizeof sD));
            cublasLtMatmulPreference_t pref;
            BL_OK(cublasLtMatmulPreferenceCreate(&pref));
            size_t ws = 1 << 20;
            BL_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
            cublasLtMatmulHeuristicResult_t res;
            int nres = 0;
            BL_OK(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, lc, ld, pref, 1, &res, &nres));
            CHECK(nres == 1 && res.state == CUBLAS_STATUS_SUCCESS, "heuristic returns one algo");
            float alpha = 2.0f, beta = -1.0f;
            BL_OK(cublasLtMatmul(lt, op, &alpha, dA, la, dB, lb, &beta, dC, lc, dD, ld, &res.algo, nullptr, 0, s));
            for (int b = 0; b < batch; b++) {
                std::vector<float> Cb(C.begin() + b * sC, C.begin() + b * sC + (size_t)ldc * n);
                ref_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, Cb, ldc, 0, b * sB, 0);
                for (int j = 0; j < n; j++)
                    for (int i = 0; i < m; i++) D[b * sD + (size_t)j * ldd + i] = Cb[(size_t)j * ldc + i] + bias[i];
            }
            std::vector<float> got = to_host(dD, D.size());
            CHECK(count_diff(got, D) == 0, "cublasLtMatmul ta=%d tb=%d bias, batch 3: %d wrong", ta, tb,
                  count_diff(got, D));

            /* RELU_BIAS, in place (C == D), beta 0, batch 1 */
            epi = CUBLASLT_EPILOGUE_RELU_BIAS;
            BL_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
            cublasLtMatrixLayout_t lb1, ld1;
            BL_OK(cublasLtMatrixLayoutCreate(&lb1, CUDA_R_32F, brows, bcols, ldb));
            BL_OK(cublasLtMatrixLayoutCreate(&ld1, CUDA_R_32F, m, n, ldd));
            beta = 0.0f;
            BL_OK(cublasLtMatmul(lt, op, &alpha, dA, la, dB, lb1, &beta, dD, ld1, dD, ld1, nullptr, nullptr, 0, s));
            std::vector<float> R((size_t)ldd * n, 0.0f);
            ref_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, 0.0f, R, ldd);
            for (int j = 0; j < n; j++)
                for (int i = 0; i < m; i++) {
                    float v = R[(size_t)j * ldd + i] + bias[i];
                    R[(size_t)j * ldd + i] = v > 0 ? v : 0;
                }
            got = to_host(dD, R.size());
            CHECK(count_diff(got, R) == 0, "cublasLtMatmul ta=%d tb=%d relu+bias in place: %d wrong", ta, tb,
                  count_diff(got, R));

            BL_OK(cublasLtMatrixLayoutDestroy(la)); BL_OK(cublasLtMatrixLayoutDestroy(lb));
            BL_OK(cublasLtMatrixLayoutDestroy(lc)); BL_OK(cublasLtMatrixLayoutDestroy(ld));
            BL_OK(cublasLtMatrixLayoutDestroy(lb1)); BL_OK(cublasLtMatrixLayoutDestroy(ld1));
            BL_OK(cublasLtMatmulPreferenceDestroy(pref));
            BL_OK(cublasLtMatmulDescDestroy(op));
            cudaFree(dA); cudaFree(dB); cudaFree(dC); cudaFree(dbias); cudaFree(dD);
        }

    /* GELU_BIAS with bf16 inputs and a bf16 bias, BGRADB, unsupported epilogue */
    {
        std::vector<float> A = ints((size_t)m * k, 13, 5), B = ints((size_t)k * n, 14, 5), bias = ints(m, 15);
        std::vector<__nv_bfloat16> Ab(A.size()), Bb(B.size()), biasb(m);
        for (size_t i = 0; i < A.size(); i++) Ab[i] = __float2bfloat16(A[i]);
        for (size_t i = 0; i < B.size(); i++) Bb[i] = __float2bfloat16(B[i]);
        for (int i = 0; i < m; i++) biasb[i] = __float2bfloat16(bias[i]);
        __nv_bfloat16 *dA = to_device(Ab), *dB = to_device(Bb), *dbias = to_device(biasb);
        float* dD = device_zeros<float>((size_t)m * n);
        cublasLtMatmulDesc_t op;
        BL_OK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_GELU_BIAS;
        cudaDataType_t bt = CUDA_R_16BF;
        BL_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        BL_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &dbias, sizeof dbias));
        BL_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
        cublasLtMatrixLayout_t la, lb, ld;
        BL_OK(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, m, k, m));
        BL_OK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, k, n, k));
        BL_OK(cublasLtMatrixLayoutCreate(&ld, CUDA_R_32F, m, n, m));
        float alpha = 0.5f, beta = 0.0f;
        BL_OK(cublasLtMatmul(lt, op, &alpha, dA, la, dB, lb, &beta, nullptr, ld, dD, ld, nullptr, nullptr, 0, s));
        std::vector<float> R((size_t)m * n, 0.0f);
        ref_gemm(false, false, m, n, k, alpha, A, m, B, k, 0.0f, R, m);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                float x = R[(size_t)j * m + i] + bias[i];
                R[(size_t)j * m + i] = 0.5f * x * (1.0f + tanhf(0.7978845608f * (x + 0.044715f * x * x * x)));
            }
        std::vector<float> got = to_host(dD, R.size());
        CHECK(count_diff(got, R, 1e-4f) == 0, "GELU_BIAS bf16: %d wrong", count_diff(got, R, 1e-4f));

        /* BGRADB: bias gradient = column sums of B (length n) */
        float* dgrad = device_zeros<float>(n);
        epi = CUBLASLT_EPILOGUE_BGRADB;
        bt = CUDA_R_32F;
        BL_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        BL_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &dgrad, sizeof dgrad));
        BL_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
        BL_OK(cublasLtMatmul(lt, op, &alpha, dA, la, dB, lb, &beta, nullptr, ld, dD, ld, nullptr, nullptr, 0, s));
        std::vector<float> g = to_host(dgrad, n);
        int bad = 0;
        for (int j = 0; j < n; j++) {
            float e = 0;
            for (int p = 0; p < k; p++) e += B[(size_t)j * k + p];
            bad += g[j] != e;
        }
        CHECK(bad == 0, "BGRADB: %d wrong", bad);

        epi = CUBLASLT_EPILOGUE_DGELU;
        BL_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        CHECK(cublasLtMatmul(lt, op, &alpha, dA, la, dB, lb, &beta, nullptr, ld, dD, ld, nullptr, nullptr, 0, s) ==
                  CUBLAS_STATUS_NOT_SUPPORTED, "DGELU is reported as not supported");
        BL_OK(cublasLtMatrixLayoutDestroy(la)); BL_OK(cublasLtMatrixLayoutDestroy(lb));
        BL_OK(cublasLtMatrixLayoutDestroy(ld)); BL_OK(cublasLtMatmulDescDestroy(op));
        cudaFree(dA); cudaFree(dB); cudaFree(dbias); cudaFree(dD); cudaFree(dgrad);
    }

    BL_OK(cublasLtDestroy(lt));
    BL_OK(cublasDestroy(h));
    cudaStreamDestroy(s);
    return test_summary();
}
