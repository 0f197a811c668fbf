/*
 * RMSNorm on the GPU: out = inp * rsqrt(mean(inp²) + eps) * weight, with rstd saved per row.
 * Forward runs one warp per row: a row of a few thousand floats is read by 32 lanes in coalesced
 * strides, the sum of squares is accumulated in double as in the CPU reference and combined by a fixed
 * shuffle tree, and no block-wide barrier is needed. The backward is one kernel (below) for both the
 * input gradient and the weight gradient, 128-bit accesses, templated on the activation type with fp32
 * math: it reads dout and inp once from HBM and reads and writes dinp once (16 B per element in fp32,
 * 8 in bf16, against 24 for the former pair of kernels, whose column kernel re-read dout and inp), and
 * reduces the weight gradient deterministically through a small scratch buffer (a two-level tree).
 */
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vec.cuh"

#define RMSNORM_BLOCK 256  // 8 warps = 8 rows per block

__global__ void rmsnorm_forward_kernel(floatX* out,          // (N, H)
                                       float* rstd,          // (N)
                                       const floatX* inp,    // (N, H)
                                       const floatX* weight, // (H)
                                       int N, int H, float eps) {
    const int lane = threadIdx.x % 32;
    const int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) return;  // whole warp leaves together
    const floatX* x = inp + (size_t)n * H;
    double ss = 0.0;
    for (int i = lane; i < H; i += 32) ss += (double)to_float(x[i]) * to_float(x[i]);
    ss = warp_sum_double(ss);
    const float r = 1.0f / sqrtf((float)(ss / H) + eps);
    if (lane == 0) rstd[n] = r;
    floatX* y = out + (size_t)n * H;
    for (int i = lane; i < H; i += 32) y[i] = to_x(to_float(weight[i]) * (to_float(x[i]) * r));
}

// Residual add + RMSNorm in one pass: each lane writes its elements of a + b and reads them back
// (its own writes, no barrier needed) for the norm.
__global__ void add_rmsnorm_forward_kernel(floatX* sum,          // (N, H)
                                           floatX* out,          // (N, H)
                                           float* rstd,          // (N)
                                           const floatX* a,      // (N, H)
                                           const floatX* b,      // (N, H)
                                           const floatX* weight, // (H)
                                           int N, int H, float eps) {
    const int lane = threadIdx.x % 32;
    const int n = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (n >= N) return;  // whole warp leaves together
    const size_t o = (size_t)n * H;
    double ss = 0.0;
    for (int i = lane; i < H; i += 32) {
        const floatX s = to_x(to_float(a[o + i]) + to_float(b[o + i]));  // the stored residual is what the norm sees
        sum[o + i] = s;
        ss += (double)to_float(s) * to_float(s);
    }
    ss = warp_sum_double(ss);
    const float r = 1.0f / sqrtf((float)(ss / H) + eps);
    if (lane == 0) rstd[n] = r;
    for (int i = lane; i < H; i += 32) out[o + i] = to_x(to_float(weight[i]) * (to_float(sum[o + i]) * r));
}

// ---- backward: one kernel ------------------------------------------------------------------------
// With xhat = x*r and g = dout*w:  dx += r * (g - xhat * mean(g*xhat)),  dweight += Σ_n dout*xhat.
// Block b takes rows b, b + G, b + 2G, ... (G = gridDim.x, fixed by N and H alone), the whole block on
// one row at a time: each thread owns the same packs of columns in every row, so its share of the
// weight gradient accumulates in shared memory it alone touches (layout [W][H/W]: conflict-free).
// Per row: pass 1 reads dout and inp (kept in L1 for pass 2) and takes the block-wide dot product;
// pass 2 reads dinp and writes it. The weight gradient's G partial rows are then added as a two-level
// tree inside the same kernel, with integer tickets instead of float atomics: each block writes its
// partial row; the last block of each group of RMSNORM_BWD_GROUP blocks to finish adds the group's rows
// in block order (in double) into a group row; the last group to finish adds the group rows in group
// order into dweight. The last-arriving block is only ever the one that does the adding, never the
// order, so every sum has a fixed order: deterministic on any GPU. Tickets are left at 0.
#define RMSNORM_BWD_GROUP 16
#define RMSNORM_BWD_MAX_TICKETS 256  // groups + 1; blocks are at most 64K / 32 = 2048, so 129 at most

// v = the W floats at p, read through L2 (written by other blocks of this kernel: never a stale L1 line).
template <int W>
__device__ __forceinline__ void load_floats_cg(float (&v)[W], const float* p) {
    if constexpr (W % 4 == 0) {
#pragma unroll
        for (int k = 0; k < W / 4; k++) {
            const float4 q = __ldcg(reinterpret_cast<const float4*>(p) + k);
            v[4 * k] = q.x, v[4 * k + 1] = q.y, v[4 * k + 2] = q.z, v[4 * k + 3] = q.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < W; i++) v[i] = __ldcg(p + i);
    }
}

template <class T, int W>
__global__ void rmsnorm_backward_kernel(T* dinp,               // (N, H) +=
                                        T* dweight,            // (H) +=
                                        float* partial,        // (G, H) per-block partials
                                        double* group_sum,     // (ceil(G / GROUP), H) per-group sums
                                        unsigned* tickets,     // (groups + 1) 0 on entry, left 0
                                        const T* dout,         // (N, H)
                                        const T* inp,          // (N, H)
                                        const T* weight,       // (H)
                                        const float* rstd,     // (N)
                                        int N, int H) {
    DYN_SMEM(float, dw);  // (W, H/W) this block's weight-gradient partials
    __shared__ float red[32];
    __shared__ int last;
    const int tid = threadIdx.x, nt = blockDim.x, packs = H / W;
    const float inv_h = 1.0f / (float)H;
    for (int p = tid; p < packs; p += nt)
        for (int j = 0; j < W; j++) dw[j * packs + p] = 0.0f;
    for (int n = blockIdx.x; n < N; n += gridDim.x) {
        const size_t o = (size_t)n * H;
        const float r = rstd[n];
        float dot = 0.0f;
        for (int p = tid; p < packs; p += nt) {
            const Pack<T, W> x = load_pack<T, W>(inp + o + p * W), dy = load_pack<T, W>(dout + o + p * W);
            const Pack<T, W> w = load_pack<T, W>(weight + p * W);
#pragma unroll
            for (int j = 0; j < W; j++) {
                dot += dy[j] * w[j] * x[j];
                dw[j * packs + p] += dy[j] * (x[j] * r);
            }
        }
        const float mean = block_sum(dot, red) * r * inv_h;
        for (int p = tid; p < packs; p += nt) {
            const Pack<T, W> x = load_pack_cs<T, W>(inp + o + p * W), dy = load_pack_cs<T, W>(dout + o + p * W);
            const Pack<T, W> w = load_pack<T, W>(weight + p * W);
            Pack<T, W> dx = load_pack<T, W>(dinp + o + p * W);
#pragma unroll
            for (int j = 0; j < W; j++) dx.set(j, dx[j] + r * (dy[j] * w[j] - x[j] * r * mean));
            store_pack_cs<T, W>(dinp + o + p * W, dx);
        }
    }
    for (int p = tid; p < packs; p += nt) {
        Pack<float, W> v;
#pragma unroll
        for (int j = 0; j < W; j++) v.e[j] = dw[j * packs + p];
        store_pack<float, W>(partial + (size_t)blockIdx.x * H + p * W, v);
    }
    // level 1: the last block of this group adds the group's partial rows in block order
    const int G = gridDim.x, groups = CEIL_DIV(G, RMSNORM_BWD_GROUP), g = blockIdx.x / RMSNORM_BWD_GROUP;
    const int b0 = g * RMSNORM_BWD_GROUP, nb = G - b0 < RMSNORM_BWD_GROUP ? G - b0 : RMSNORM_BWD_GROUP;
    __threadfence();  // this block's partials are visible device-wide before its ticket
    __syncthreads();
    if (tid == 0) last = atomicAdd(&tickets[g], 1u) == (unsigned)nb - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int p = tid; p < packs; p += nt) {
        double acc[W] = {};
#pragma unroll 4
        for (int b = 0; b < nb; b++) {
            float v[W];
            load_floats_cg<W>(v, partial + (size_t)(b0 + b) * H + p * W);
#pragma unroll
            for (int j = 0; j < W; j++) acc[j] += v[j];
        }
#pragma unroll
        for (int j = 0; j < W; j++) group_sum[(size_t)g * H + p * W + j] = acc[j];
    }
    if (tid == 0) tickets[g] = 0u;
    // level 2: the last group adds the group rows in group order into dweight
    __threadfence();
    __syncthreads();
    if (tid == 0) last = atomicAdd(&tickets[groups], 1u) == (unsigned)groups - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int c = tid; c < H; c += nt) {
        double acc = 0.0;
        for (int q = 0; q < groups; q++) acc += __ldcg(group_sum + (size_t)q * H + c);
        dweight[c] = from_float<T>(to_float(dweight[c]) + (float)acc);
    }
    if (tid == 0) tickets[groups] = 0u;
}

// Scratch for the weight gradient (per-block partial rows, per-group sums) and the tickets, grown on
// demand; the stream runs in order, so one buffer serves every call.
static void* rmsnorm_scratch = nullptr;
static size_t rmsnorm_scratch_bytes = 0;
static unsigned* rmsnorm_tickets = nullptr;

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
static void rmsnorm_backward_launch(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                                    const float* rstd, int N, int H) {
    if (N <= 0 || H <= 0) return;
    constexpr int W = VecWidth<T>::value;
    const bool vec = vec_aligned<T>(H, dinp, dout, inp, weight);
    int threads, blocks;
    rmsnorm_backward_shape(N, vec ? H / W : H, &threads, &blocks);
    const int groups = CEIL_DIV(blocks, RMSNORM_BWD_GROUP);
    const size_t partial_bytes = (size_t)blocks * H * sizeof(float);  // a multiple of 16 in the vector path
    const size_t need = partial_bytes + (size_t)groups * H * sizeof(double);
    if (need > rmsnorm_scratch_bytes) {
        if (rmsnorm_scratch) cudaCheck(cudaFree(rmsnorm_scratch));
        cudaCheck(cudaMalloc(&rmsnorm_scratch, need));
        rmsnorm_scratch_bytes = need;
    }
    if (!rmsnorm_tickets) {
        cudaCheck(cudaMalloc((void**)&rmsnorm_tickets, RMSNORM_BWD_MAX_TICKETS * sizeof(unsigned)));
        cudaCheck(cudaMemsetAsync(rmsnorm_tickets, 0, RMSNORM_BWD_MAX_TICKETS * sizeof(unsigned), qstar_stream));
    }
    float* partial = (float*)rmsnorm_scratch;
    double* group_sum = (double*)((char*)rmsnorm_scratch + (partial_bytes + 15) / 16 * 16);
    const size_t smem = (size_t)H * sizeof(float);
    if (vec) {
        if (smem > 48 * 1024)
            cudaCheck(cudaFuncSetAttribute(rmsnorm_backward_kernel<T, W>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)smem));
        LAUNCH((rmsnorm_backward_kernel<T, W>), blocks, threads, smem, qstar_stream, dinp, dweight, partial, group_sum,
               rmsnorm_tickets, dout, inp, weight, rstd, N, H);
    } else {
        if (smem > 48 * 1024)
            cudaCheck(cudaFuncSetAttribute(rmsnorm_backward_kernel<T, 1>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)smem));
        LAUNCH((rmsnorm_backward_kernel<T, 1>), blocks, threads, smem, qstar_stream, dinp, dweight, partial, group_sum,
               rmsnorm_tickets, dout, inp, weight, rstd, N, H);
    }
    cudaCheckLaunch();
}

static void cuda_rmsnorm_forward(floatX* out, float* rstd, const floatX* inp, const floatX* weight, int N, int H,
                                 float eps) {
    NVTX_RANGE_FN();
    if (N <= 0) return;
    LAUNCH(rmsnorm_forward_kernel, CEIL_DIV(N, RMSNORM_BLOCK / 32), RMSNORM_BLOCK, 0, qstar_stream, out, rstd, inp,
           weight, N, H, eps);
    cudaCheckLaunch();
}

static void cuda_add_rmsnorm_forward(floatX* sum, floatX* out, float* rstd, const floatX* a, const floatX* b,
                                     const floatX* weight, int N, int H, float eps) {
    NVTX_RANGE_FN();
    if (N <= 0) return;
    LAUNCH(add_rmsnorm_forward_kernel, CEIL_DIV(N, RMSNORM_BLOCK / 32), RMSNORM_BLOCK, 0, qstar_stream, sum, out, rstd,
           a, b, weight, N, H, eps);
    cudaCheckLaunch();
}

static void cuda_rmsnorm_backward(floatX* dinp, floatX* dweight, const floatX* dout, const floatX* inp,
                                  const floatX* weight, const float* rstd, int N, int H) {
    NVTX_RANGE_FN();
    rmsnorm_backward_launch<floatX>(dinp, dweight, dout, inp, weight, rstd, N, H);
}
