/*
 * RMSNorm on the GPU: out = inp * rsqrt(mean(inp²) + eps) * weight, with rstd saved per row.
 * Forward runs one warp per row: a row of a few thousand floats is read by 32 lanes in coalesced
 * strides, the sum of squares is accumulated in double as in the CPU reference and combined by a fixed
 * shuffle tree, and no block-wide barrier is needed. The backward is one kernel (below) for both the
 * input gradient and the weight gradient, 128-bit accesses, templated on the activation type with fp32
 * math: it reads dout and inp once from HBM and reads and writes dinp once (16 B per element in fp32,
 * 8 in bf16, against 24 for the former pair of kernels, whose column kernel re-read dout and inp), and
 * reduces the weight gradient deterministically through a small scratch buffer.
 */
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vec.cuh"

#define RMSNORM_BLOCK 256  // 8 warps = 8 rows per block

__global__ void rmsnorm_forward_kernel(floatX* out,          // (N, H)
                                       float* rstd,          // (N)
                                       const floatX* inp,    // (N, H)
                                       const float* weight,  // (H)
                                       int N, int H, float eps) {
    const int lane = threadIdx.x % 32;
    const int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) return;  // whole warp leaves together
    const floatX* x = inp + (size_t)n * H;
    double ss = 0.0;
    for (int i = lane; i < H; i += 32) ss += (double)x[i] * x[i];
    ss = warp_sum_double(ss);
    const float r = 1.0f / sqrtf((float)(ss / H) + eps);
    if (lane == 0) rstd[n] = r;
    floatX* y = out + (size_t)n * H;
    for (int i = lane; i < H; i += 32) y[i] = weight[i] * (x[i] * r);
}

// Residual add + RMSNorm in one pass: each lane writes its elements of a + b and reads them back
// (its own writes, no barrier needed) for the norm.
__global__ void add_rmsnorm_forward_kernel(floatX* sum,          // (N, H)
                                           floatX* out,          // (N, H)
                                           float* rstd,          // (N)
                                           const floatX* a,      // (N, H)
                                           const floatX* b,      // (N, H)
                                           const float* weight,  // (H)
                                           int N, int H, float eps) {
    const int lane = threadIdx.x % 32;
    const int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) return;  // whole warp leaves together
    const size_t o = (size_t)n * H;
    double ss = 0.0;
    for (int i = lane; i < H; i += 32) {
        const float s = a[o + i] + b[o + i];
        sum[o + i] = s;
        ss += (double)s * s;
    }
    ss = warp_sum_double(ss);
    const float r = 1.0f / sqrtf((float)(ss / H) + eps);
    if (lane == 0) rstd[n] = r;
    for (int i = lane; i < H; i += 32) out[o + i] = weight[i] * (sum[o + i] * r);
}

// ---- backward: one kernel ------------------------------------------------------------------------
// With xhat = x*r and g = dout*w:  dx += r * (g - xhat * mean(g*xhat)),  dweight += Σ_n dout*xhat.
// Block b takes rows b, b + G, b + 2G, ... (G = gridDim.x, fixed by N and H alone), the whole block on
// one row at a time: each thread owns the same packs of columns in every row, so its share of the
// weight gradient accumulates in shared memory it alone touches (layout [W][H/W]: conflict-free).
// Per row: pass 1 reads dout and inp (kept in L1 for pass 2) and takes the block-wide dot product;
// pass 2 reads dinp and writes it. At the end every block writes its H partial sums to a scratch row;
// the last block to finish (an integer ticket, no float atomics) adds the G rows in block order, in
// double, into dweight and resets the ticket. Every sum has a fixed order: deterministic on any GPU.
template <class T, int W>
__global__ void rmsnorm_backward_kernel(T* dinp,               // (N, H) +=
                                        float* dweight,        // (H) +=
                                        float* scratch,        // (G, H) per-block partials
                                        unsigned* ticket,      // 0 on entry, left 0
                                        const T* dout,         // (N, H)
                                        const T* inp,          // (N, H)
                                        const float* weight,   // (H)
                                        const float* rstd,     // (N)
                                        int N, int H) {
    DYN_SMEM(float, dw);  // (W, H/W) this block's weight-gradient partials
    __shared__ float red[32];
    __shared__ int last;
    const int tid = threadIdx.x, nt = blockDim.x, packs = H / W;
    for (int p = tid; p < packs; p += nt)
        for (int j = 0; j < W; j++) dw[j * packs + p] = 0.0f;
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const size_t o = (size_t)n * H;
        const float r = rstd[n];
        float dot = 0.0f;
        for (int p = tid; p < packs; p += nt) {
            const Pack<T, W> x = load_pack<T, W>(inp + o + p * W), dy = load_pack<T, W>(dout + o + p * W);
            const Pack<float, W> w = load_pack<float, W>(weight + p * W);
#pragma unroll
            for (int j = 0; j < W; j++) {
                dot += dy[j] * w[j] * x[j];
                dw[j * packs + p] += dy[j] * (x[j] * r);
            }
        }
        const float mean = block_sum(dot, red) * r / (float)H;
        for (int p = tid; p < packs; p += nt) {
            const Pack<T, W> x = load_pack_cs<T, W>(inp + o + p * W), dy = load_pack_cs<T, W>(dout + o + p * W);
            const Pack<float, W> w = load_pack<float, W>(weight + p * W);
            Pack<T, W> dx = load_pack<T, W>(dinp + o + p * W);
#pragma unroll
            for (int j = 0; j < W; j++) dx.set(j, dx[j] + r * (dy[j] * w[j] - x[j] * r * mean));
            store_pack_cs<T, W>(dinp + o + p * W, dx);
        }
    }
    float* part = scratch + (size_t)blockIdx.x * H;
    for (int p = tid; p < packs; p += nt) {
        Pack<float, W> v;
#pragma unroll
        for (int j = 0; j < W; j++) v.e[j] = dw[j * packs + p];
        store_pack<float, W>(part + p * W, v);
    }
    __threadfence();  // the partials are visible device-wide before the ticket is taken
    __syncthreads();
    if (tid == 0) last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int c = tid; c < H; c += nt) {
        double acc = 0.0;
        for (int b = 0; b < (int)gridDim.x; b++) acc += __ldcg(scratch + (size_t)b * H + c);  // L2: other SMs wrote it
        dweight[c] += (float)acc;
    }
    if (tid == 0) *ticket = 0u;
}

// Scratch for the weight gradient's per-block partials and the ticket, grown on demand (the stream is
// in order, so one buffer serves every call).
static float* rmsnorm_scratch = nullptr;
static size_t rmsnorm_scratch_floats = 0;
static unsigned* rmsnorm_ticket = nullptr;

// Threads per block: one pack per thread up to 512; blocks: about 64K threads in all, at most N.
// Both depend on N and H only, so the order of every sum is the same on every GPU.
static inline void rmsnorm_backward_shape(int N, int packs, int* threads, int* blocks) {
    int t = CEIL_DIV(packs, 32) * 32;
    t = t < 32 ? 32 : t > 512 ? 512 : t;
    const int g = (64 * 1024) / t;
    *threads = t;
    *blocks = N < g ? N : g;
}

template <class T>
static void rmsnorm_backward_launch(T* dinp, float* dweight, const T* dout, const T* inp, const float* weight,
                                    const float* rstd, int N, int H) {
    if (N <= 0 || H <= 0) return;
    constexpr int W = VecWidth<T>::value;
    const bool vec = vec_aligned<T>(H, dinp, dout, inp) && vec_aligned<float>(W, weight);
    int threads, blocks;
    rmsnorm_backward_shape(N, vec ? H / W : H, &threads, &blocks);
    const size_t need = (size_t)blocks * H;
    if (need > rmsnorm_scratch_floats) {
        if (rmsnorm_scratch) cudaCheck(cudaFree(rmsnorm_scratch));
        cudaCheck(cudaMalloc((void**)&rmsnorm_scratch, need * sizeof(float)));
        rmsnorm_scratch_floats = need;
    }
    if (!rmsnorm_ticket) {
        cudaCheck(cudaMalloc((void**)&rmsnorm_ticket, sizeof(unsigned)));
        cudaCheck(cudaMemsetAsync(rmsnorm_ticket, 0, sizeof(unsigned), qstar_stream));
    }
    const size_t smem = (size_t)H * sizeof(float);
    if (vec) {
        if (smem > 48 * 1024)
            cudaCheck(cudaFuncSetAttribute(rmsnorm_backward_kernel<T, W>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)smem));
        LAUNCH((rmsnorm_backward_kernel<T, W>), blocks, threads, smem, qstar_stream, dinp, dweight, rmsnorm_scratch,
               rmsnorm_ticket, dout, inp, weight, rstd, N, H);
    } else {
        if (smem > 48 * 1024)
            cudaCheck(cudaFuncSetAttribute(rmsnorm_backward_kernel<T, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)smem));
        LAUNCH((rmsnorm_backward_kernel<T, 1>), blocks, threads, smem, qstar_stream, dinp, dweight, rmsnorm_scratch,
               rmsnorm_ticket, dout, inp, weight, rstd, N, H);
    }
    cudaCheckLaunch();
}

static void cuda_rmsnorm_forward(floatX* out, float* rstd, const floatX* inp, const float* weight, int N, int H,
                                 float eps) {
    NVTX_RANGE_FN();
    if (N <= 0) return;
    LAUNCH(rmsnorm_forward_kernel, CEIL_DIV(N, RMSNORM_BLOCK / 32), RMSNORM_BLOCK, 0, qstar_stream, out, rstd, inp,
           weight, N, H, eps);
    cudaCheckLaunch();
}

static void cuda_add_rmsnorm_forward(floatX* sum, floatX* out, float* rstd, const floatX* a, const floatX* b,
                                     const float* weight, int N, int H, float eps) {
    NVTX_RANGE_FN();
    if (N <= 0) return;
    LAUNCH(add_rmsnorm_forward_kernel, CEIL_DIV(N, RMSNORM_BLOCK / 32), RMSNORM_BLOCK, 0, qstar_stream, sum, out, rstd,
           a, b, weight, N, H, eps);
    cudaCheckLaunch();
}

static void cuda_rmsnorm_backward(floatX* dinp, float* dweight, const floatX* dout, const floatX* inp,
                                  const float* weight, const float* rstd, int N, int H) {
    NVTX_RANGE_FN();
    rmsnorm_backward_launch<floatX>(dinp, dweight, dout, inp, weight, rstd, N, H);
}
