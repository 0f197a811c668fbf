/*
 * Token embedding on the GPU. Forward is a row gather: one thread per output element, a warp reading
 * consecutive columns of one table row. Backward is a scatter-add into the table, and repeated tokens
 * must add up in a fixed order without float atomics (deterministic training). As in the CPU
 * reference, it runs parallel over hidden columns: thread c owns column c of the whole table and walks
 * the tokens in order, dtable[tokens[n]][c] += dout[n][c]. No two threads touch the same address, the
 * order of additions is exactly the CPU's (results match bitwise), and a warp still reads 32
 * consecutive floats of each dout row and writes 32 consecutive floats of a table row.
 */
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise.cuh"

__global__ void embedding_forward_kernel(floatX* out,            // (N, H)
                                         const int32_t* tokens,  // (N)
                                         const float* table,     // (V, H)
                                         int N, int H) {
    const size_t total = (size_t)N * H, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t n = i / H, c = i % H;
        out[i] = table[(size_t)tokens[n] * H + c];
    }
}

// Thread per column; tokens visited in order 0..N-1, so repeated tokens accumulate deterministically.
__global__ void embedding_backward_kernel(float* dtable,          // (V, H) +=
                                          const floatX* dout,     // (N, H)
                                          const int32_t* tokens,  // (N)
                                          int N, int H) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= H) return;
    for (int n = 0; n < N; n++) dtable[(size_t)tokens[n] * H + c] += dout[(size_t)n * H + c];
}

static void cuda_embedding_forward(floatX* out, const int32_t* tokens, const float* table, int N, int H) {
    NVTX_RANGE_FN();
    if (N <= 0 || H <= 0) return;
    LAUNCH(embedding_forward_kernel, elementwise_grid((size_t)N * H), ELEMENTWISE_BLOCK, 0, qstar_stream, out, tokens,
           table, N, H);
    cudaCheckLaunch();
}

static void cuda_embedding_backward(float* dtable, const floatX* dout, const int32_t* tokens, int N, int V, int H) {
    NVTX_RANGE_FN();
    (void)V;
    if (N <= 0 || H <= 0) return;
    const int block = 128;  // H is a few thousand columns: more, smaller blocks spread over more SMs
    LAUNCH(embedding_backward_kernel, CEIL_DIV(H, block), block, 0, qstar_stream, dtable, dout, tokens, N, H);
    cudaCheckLaunch();
}
