/*
 * Elementwise ops of the CUDA backend: the residual add, in-place scaling, and the strided 2-D copy
 * that moves keys/values between qkv rows and the generation cache. All memory-bound: one element per
 * thread in a grid-stride loop, consecutive threads on consecutive addresses (coalesced), indices in
 * size_t so tensors past 2^31 elements are safe. The grid is capped (elementwise_grid) because a
 * grid-stride loop needs no more threads than the GPU holds at once; the cap depends only on n, so
 * results never depend on the device. Also home of that helper, which the other op headers share.
 */
#pragma once

#include "kernels/cuda/common.cuh"

#define ELEMENTWISE_BLOCK 256

// Blocks for a grid-stride loop over n elements: enough to fill any current GPU, at least 1.
static inline int elementwise_grid(size_t n) {
    size_t blocks = (n + ELEMENTWISE_BLOCK - 1) / ELEMENTWISE_BLOCK;
    const size_t cap = 8192;  // 2M threads: many waves on the largest GPUs
    if (blocks > cap) blocks = cap;
    return blocks > 0 ? (int)blocks : 1;
}

__global__ void add_kernel(floatX* out,      // (n), may alias a or b
                           const floatX* a,  // (n)
                           const floatX* b,  // (n)
                           size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = to_x(to_float(a[i]) + to_float(b[i]));
}

__global__ void scale_kernel(floatX* x,  // (n) in place
                             float s, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) x[i] = to_x(to_float(x[i]) * s);
}

// One thread per (row, column); a warp reads consecutive columns of one row.
__global__ void copy_strided_kernel(floatX* dst,        // (rows, dst_stride), columns [0, cols) written
                                    size_t dst_stride,
                                    const floatX* src,  // (rows, src_stride), columns [0, cols) read
                                    size_t src_stride, int rows, int cols) {
    const size_t total = (size_t)rows * cols, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t r = i / cols, c = i % cols;
        dst[r * dst_stride + c] = src[r * src_stride + c];
    }
}

static void cuda_add(floatX* out, const floatX* a, const floatX* b, size_t n) {
    NVTX_RANGE_FN();
    if (n == 0) return;
    LAUNCH(add_kernel, elementwise_grid(n), ELEMENTWISE_BLOCK, 0, qstar_stream, out, a, b, n);
    cudaCheckLaunch();
}

static void cuda_scale(floatX* x, float s, size_t n) {
    NVTX_RANGE_FN();
    if (n == 0) return;
    LAUNCH(scale_kernel, elementwise_grid(n), ELEMENTWISE_BLOCK, 0, qstar_stream, x, s, n);
    cudaCheckLaunch();
}

static void cuda_copy_strided(floatX* dst, size_t dst_stride, const floatX* src, size_t src_stride, int rows,
                              int cols) {
    NVTX_RANGE_FN();
    if (rows <= 0 || cols <= 0) return;
    const size_t total = (size_t)rows * cols;
    LAUNCH(copy_strided_kernel, elementwise_grid(total), ELEMENTWISE_BLOCK, 0, qstar_stream, dst, dst_stride, src,
           src_stride, rows, cols);
    cudaCheckLaunch();
}
