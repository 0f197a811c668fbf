/*
 * RMSNorm on the GPU: out = inp * rsqrt(mean(inp²) + eps) * weight, with rstd saved per row.
 * Forward and the input gradient run one warp per row: a row of a few thousand floats is read by 32
 * lanes in coalesced strides, the sum of squares (and the backward's dot product) is accumulated in
 * double as in the CPU reference and combined by a fixed shuffle tree, and no block-wide barrier is
 * needed. The weight gradient is a column reduction over rows; it must be deterministic, so it is a
 * separate column kernel: each block owns 32 columns, its 8 warps take interleaved rows (warp y sums
 * rows y, y+8, ... in order, in double), and the 8 partials are added in warp order through shared
 * memory. Every sum has a fixed order whatever the GPU, with 8x the parallelism of a thread per column.
 */
#pragma once

#include "kernels/cuda/common.cuh"

#define RMSNORM_BLOCK 256  // 8 warps = 8 rows per block
#define COLSUM_WARPS 8     // row phases of the column-reduction kernels (blocks of 32 x COLSUM_WARPS)

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

// With xhat = x*r and g = dout*w:  dx += r * (g - xhat * mean(g*xhat)).
__global__ void rmsnorm_backward_dinp_kernel(floatX* dinp,         // (N, H) +=
                                             const floatX* dout,   // (N, H)
                                             const floatX* inp,    // (N, H)
                                             const float* weight,  // (H)
                                             const float* rstd,    // (N)
                                             int N, int H) {
    const int lane = threadIdx.x % 32;
    const int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) return;
    const floatX* x = inp + (size_t)n * H;
    const floatX* dy = dout + (size_t)n * H;
    const float r = rstd[n];
    double dot = 0.0;
    for (int i = lane; i < H; i += 32) dot += (double)dy[i] * weight[i] * x[i] * r;
    dot = warp_sum_double(dot);
    const float mean = (float)(dot / H);
    floatX* dx = dinp + (size_t)n * H;
    for (int i = lane; i < H; i += 32) dx[i] += r * (dy[i] * weight[i] - x[i] * r * mean);
}

// dweight[c] += Σ_n dout[n][c] * inp[n][c] * rstd[n]; blocks of 32 columns x COLSUM_WARPS row phases.
__global__ void rmsnorm_backward_dweight_kernel(float* dweight,       // (H) +=
                                                const floatX* dout,   // (N, H)
                                                const floatX* inp,    // (N, H)
                                                const float* rstd,    // (N)
                                                int N, int H) {
    __shared__ double partial[COLSUM_WARPS][32];
    const int lane = threadIdx.x % 32, phase = threadIdx.x / 32;
    const int c = blockIdx.x * 32 + lane;
    double acc = 0.0;
    if (c < H)
        for (int n = phase; n < N; n += COLSUM_WARPS)
            acc += (double)dout[(size_t)n * H + c] * inp[(size_t)n * H + c] * rstd[n];
    partial[phase][lane] = acc;
    __syncthreads();
    if (phase == 0 && c < H) {
        double total = 0.0;
        for (int p = 0; p < COLSUM_WARPS; p++) total += partial[p][lane];
        dweight[c] += (float)total;
    }
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
    if (N <= 0 || H <= 0) return;
    LAUNCH(rmsnorm_backward_dinp_kernel, CEIL_DIV(N, RMSNORM_BLOCK / 32), RMSNORM_BLOCK, 0, qstar_stream, dinp, dout,
           inp, weight, rstd, N, H);
    cudaCheckLaunch();
    LAUNCH(rmsnorm_backward_dweight_kernel, CEIL_DIV(H, 32), 32 * COLSUM_WARPS, 0, qstar_stream, dweight, dout, inp,
           rstd, N, H);
    cudaCheckLaunch();
}
