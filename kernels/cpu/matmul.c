/*
 * Linear layers through OpenBLAS sgemm, Hugging Face weight layout (OUT, IN): out = inp · Wᵀ.
 * Weight gradients accumulate (beta = 1) so that micro-batches and shared weights (tied
 * embeddings) add into one buffer.
 */
#include <cblas.h>

#include "kernels/cpu/cpu.h"

void cpu_matmul_forward(floatX* out, const floatX* inp, const float* weight, int N, int IN, int OUT) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OUT, IN, 1.0f, inp, IN, weight, IN, 0.0f, out, OUT);
}

void cpu_matmul_backward(floatX* dinp, float* dweight, const floatX* dout, const floatX* inp, const float* weight,
                         int N, int IN, int OUT, int accumulate_dinp) {
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IN, OUT, 1.0f, dout, OUT, weight, IN,
                    accumulate_dinp ? 1.0f : 0.0f, dinp, IN);
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, N, 1.0f, dout, OUT, inp, IN, 1.0f, dweight, IN);
}
