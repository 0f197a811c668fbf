/*
 * Fused softmax cross-entropy on the GPU, probabilities never stored. One block per row (a row of a
 * vocabulary-sized logits vector, tens of thousands of floats): a two-pass log-sum-exp, first the
 * row max (block_max), then Σ exp(x - max) (block_sum), each thread striding over the row so loads
 * are coalesced and the second pass mostly hits L2. The block reductions add in a fixed order, so
 * losses and gradients are deterministic. The backward recomputes the log-sum-exp from the logits and
 * writes dlogits = dloss * (softmax - onehot) in one pass. Every thread reads and writes only its own
 * columns (v ≡ threadIdx.x mod blockDim.x), and all reads of the reductions finish before any write,
 * so dlogits may alias logits (the usual case: the logits buffer becomes its gradient). Rows whose
 * target is negative (QSTAR_IGNORE_INDEX) get loss 0 and a zero gradient row.
 */
#pragma once

#include "kernels/cuda/common.cuh"

#define CROSSENTROPY_BLOCK 512

// log Σ_v exp(x[v]) over one row, block-wide; every thread gets the result.
__device__ __forceinline__ float block_row_logsumexp(const floatX* x, int V, float* shared) {
    float mx = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, x[v]);
    mx = block_max(mx, shared);
    float sum = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) sum += expf(x[v] - mx);
    sum = block_sum(sum, shared);
    return mx + logf(sum);
}

__global__ void crossentropy_forward_kernel(float* losses,           // (N)
                                            const floatX* logits,    // (N, V)
                                            const int32_t* targets,  // (N)
                                            int V) {
    __shared__ float shared[32];
    const int n = blockIdx.x;
    const int t = targets[n];  // uniform over the block
    if (t < 0) {
        if (threadIdx.x == 0) losses[n] = 0.0f;
        return;
    }
    const floatX* x = logits + (size_t)n * V;
    const float lse = block_row_logsumexp(x, V, shared);
    if (threadIdx.x == 0) losses[n] = lse - x[t];
}

__global__ void crossentropy_backward_kernel(floatX* dlogits,         // (N, V), may alias logits
                                             const floatX* logits,    // (N, V)
                                             const int32_t* targets,  // (N)
                                             const float* dlosses,    // (N)
                                             int V) {
    __shared__ float shared[32];
    const int n = blockIdx.x;
    const int t = targets[n];
    floatX* dx = dlogits + (size_t)n * V;
    if (t < 0) {
        for (int v = threadIdx.x; v < V; v += blockDim.x) dx[v] = 0.0f;
        return;
    }
    const floatX* x = logits + (size_t)n * V;
    const float lse = block_row_logsumexp(x, V, shared);
    const float d = dlosses[n];
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        const float g = d * expf(x[v] - lse);
        dx[v] = v == t ? g - d : g;
    }
}

static void cuda_crossentropy_forward(float* losses, const floatX* logits, const int32_t* targets, int N, int V) {
    NVTX_RANGE_FN();
    if (N <= 0) return;
    LAUNCH(crossentropy_forward_kernel, N, CROSSENTROPY_BLOCK, 0, qstar_stream, losses, logits, targets, V);
    cudaCheckLaunch();
}

static void cuda_crossentropy_backward(floatX* dlogits, const floatX* logits, const int32_t* targets,
                                       const float* dlosses, int N, int V) {
    NVTX_RANGE_FN();
    if (N <= 0) return;
    LAUNCH(crossentropy_backward_kernel, N, CROSSENTROPY_BLOCK, 0, qstar_stream, dlogits, logits, targets, dlosses,
           V);
    cudaCheckLaunch();
}
