/*
 * SwiGLU gate of the Mistral MLP on the GPU: out = silu(gate) * up, each gate_up row laid out as
 * [gate (IM) | up (IM)] by the fused projection. Purely elementwise and memory-bound: one thread per
 * (row, i) in a grid-stride loop; the gate and up reads are each coalesced. expf is the accurate CUDA
 * function (not __expf), so results agree with the CPU's polynomial exp to a few ulp.
 */
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise.cuh"

__global__ void swiglu_forward_kernel(floatX* out,            // (N, IM)
                                      const floatX* gate_up,  // (N, 2*IM)
                                      int N, int IM) {
    const size_t total = (size_t)N * IM, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const size_t n = idx / IM, i = idx % IM;
        const float g = gate_up[n * 2 * IM + i], u = gate_up[n * 2 * IM + IM + i];
        out[idx] = g / (1.0f + expf(-g)) * u;
    }
}

// d silu(g)/dg = sig(g) * (1 + g * (1 - sig(g)));  dgate = dout * up * silu'(g),  dup = dout * silu(g)
__global__ void swiglu_backward_kernel(floatX* dgate_up,       // (N, 2*IM) overwritten
                                       const floatX* dout,     // (N, IM)
                                       const floatX* gate_up,  // (N, 2*IM)
                                       int N, int IM) {
    const size_t total = (size_t)N * IM, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const size_t n = idx / IM, i = idx % IM;
        const size_t gi = n * 2 * IM + i, ui = gi + IM;
        const float g = gate_up[gi], u = gate_up[ui], dy = dout[idx];
        const float sig = 1.0f / (1.0f + expf(-g));
        dgate_up[gi] = dy * u * sig * (1.0f + g * (1.0f - sig));
        dgate_up[ui] = dy * g * sig;
    }
}

static void cuda_swiglu_forward(floatX* out, const floatX* gate_up, int N, int IM) {
    NVTX_RANGE_FN();
    if (N <= 0 || IM <= 0) return;
    LAUNCH(swiglu_forward_kernel, elementwise_grid((size_t)N * IM), ELEMENTWISE_BLOCK, 0, qstar_stream, out, gate_up,
           N, IM);
    cudaCheckLaunch();
}

static void cuda_swiglu_backward(floatX* dgate_up, const floatX* dout, const floatX* gate_up, int N, int IM) {
    NVTX_RANGE_FN();
    if (N <= 0 || IM <= 0) return;
    LAUNCH(swiglu_backward_kernel, elementwise_grid((size_t)N * IM), ELEMENTWISE_BLOCK, 0, qstar_stream, dgate_up,
           dout, gate_up, N, IM);
    cudaCheckLaunch();
}
