/*
 * SwiGLU gate of the Mistral MLP on the GPU: out = silu(gate) * up, each gate_up row laid out as
 * [gate (IM) | up (IM)] by the fused projection. Purely elementwise and memory-bound, so the kernel is
 * about bytes in flight: 2-D grid, y over rows (grid-stride), x over 128-bit packs of a row, so no
 * index division at all (the old flat loop paid a 64-bit idx / IM per element), each thread moving a
 * 16-byte pack of gate, of up and of the output (and of dout in backward) per trip. The vector path
 * needs IM a multiple of the pack and 16-byte aligned buffers (vec_aligned); otherwise the same code
 * runs with one-element packs. Math in fp32 whatever the storage type: sigmoid as 1/(1 + exp(-g))
 * with the accurate expf and a correctly rounded reciprocal (__frcp_rn) instead of an IEEE division;
 * for g → -inf exp overflows to inf and the reciprocal gives 0, as the division would.
 */
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vec.cuh"

#define SWIGLU_BLOCK 256
#define SWIGLU_MAX_ROW_BLOCKS 65535  // gridDim.y limit; more rows are grid-strided

__device__ __forceinline__ float sigmoidf_fast(float g) { return __frcp_rn(1.0f + expf(-g)); }

template <class T, int W>
__global__ void swiglu_forward_kernel(T* out,            // (N, IM)
                                      const T* gate_up,  // (N, 2*IM)
                                      int N, int IM) {
    const int packs = IM / W;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const T* g_row = gate_up + (size_t)n * 2 * IM;
        const T* u_row = g_row + IM;
        T* y_row = out + (size_t)n * IM;
        for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < packs; p += gridDim.x * blockDim.x) {
            const Pack<T, W> g = load_pack_cs<T, W>(g_row + p * W), u = load_pack_cs<T, W>(u_row + p * W);
            Pack<T, W> y;
#pragma unroll
            for (int i = 0; i < W; i++) y.set(i, g[i] * sigmoidf_fast(g[i]) * u[i]);
            store_pack<T, W>(y_row + p * W, y);  // read next by the down projection
        }
    }
}

// d silu(g)/dg = sig(g) * (1 + g * (1 - sig(g)));  dgate = dout * up * silu'(g),  dup = dout * silu(g)
template <class T, int W>
__global__ void swiglu_backward_kernel(T* dgate_up,       // (N, 2*IM) overwritten
                                       const T* dout,     // (N, IM)
                                       const T* gate_up,  // (N, 2*IM)
                                       int N, int IM) {
    const int packs = IM / W;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const size_t o2 = (size_t)n * 2 * IM, o1 = (size_t)n * IM;
        for (int p = blockIdx.x * blockDim.x + threadIdx.x; p < packs; p += gridDim.x * blockDim.x) {
            const Pack<T, W> g = load_pack_cs<T, W>(gate_up + o2 + p * W);
            const Pack<T, W> u = load_pack_cs<T, W>(gate_up + o2 + IM + p * W);
            const Pack<T, W> dy = load_pack_cs<T, W>(dout + o1 + p * W);
            Pack<T, W> dg, du;
#pragma unroll
            for (int i = 0; i < W; i++) {
                const float sig = sigmoidf_fast(g[i]);
                dg.set(i, dy[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig)));
                du.set(i, dy[i] * g[i] * sig);
            }
            store_pack<T, W>(dgate_up + o2 + p * W, dg);
            store_pack<T, W>(dgate_up + o2 + IM + p * W, du);
        }
    }
}

// Grid for N rows of `packs` packs: x covers a row (capped: a long row is grid-strided by x too).
static inline dim3 swiglu_grid(int N, int packs) {
    const int x = CEIL_DIV(packs, SWIGLU_BLOCK);
    return dim3(x < 64 ? x : 64, N < SWIGLU_MAX_ROW_BLOCKS ? N : SWIGLU_MAX_ROW_BLOCKS);
}

template <class T>
static void swiglu_forward_launch(T* out, const T* gate_up, int N, int IM) {
    if (N <= 0 || IM <= 0) return;
    constexpr int W = VecWidth<T>::value;
    if (vec_aligned<T>(IM, out, gate_up))
        LAUNCH((swiglu_forward_kernel<T, W>), swiglu_grid(N, IM / W), SWIGLU_BLOCK, 0, qstar_stream, out, gate_up, N, IM);
    else
        LAUNCH((swiglu_forward_kernel<T, 1>), swiglu_grid(N, IM), SWIGLU_BLOCK, 0, qstar_stream, out, gate_up, N, IM);
    cudaCheckLaunch();
}

template <class T>
static void swiglu_backward_launch(T* dgate_up, const T* dout, const T* gate_up, int N, int IM) {
    if (N <= 0 || IM <= 0) return;
    constexpr int W = VecWidth<T>::value;
    if (vec_aligned<T>(IM, dgate_up, dout, gate_up))
        LAUNCH((swiglu_backward_kernel<T, W>), swiglu_grid(N, IM / W), SWIGLU_BLOCK, 0, qstar_stream, dgate_up, dout,
               gate_up, N, IM);
    else
        LAUNCH((swiglu_backward_kernel<T, 1>), swiglu_grid(N, IM), SWIGLU_BLOCK, 0, qstar_stream, dgate_up, dout,
               gate_up, N, IM);
    cudaCheckLaunch();
}

static void cuda_swiglu_forward(floatX* out, const floatX* gate_up, int N, int IM) {
    NVTX_RANGE_FN();
    swiglu_forward_launch<floatX>(out, gate_up, N, IM);
}

static void cuda_swiglu_backward(floatX* dgate_up, const floatX* dout, const floatX* gate_up, int N, int IM) {
    NVTX_RANGE_FN();
    swiglu_backward_launch<floatX>(dgate_up, dout, gate_up, N, IM);
}
