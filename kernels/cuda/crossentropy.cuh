/*
 * Softmax cross-entropy on the GPU, probabilities never stored; one kernel for the three ops
 * (forward, backward, fused), in the manner of llm.c's fused classifier. One 512-thread block per row
 * of a vocabulary-sized logits vector. Pass 1 is an online softmax: each thread keeps a running max m
 * and Σ exp(x - m) over its 128-bit packs (rescaled when the max grows), and the block merges the
 * (m, s) pairs by a fixed shuffle tree, so the log-sum-exp takes one read of the row instead of two.
 * Pass 2 (backward and fused) writes dlogits = dloss * (exp(x - lse) - onehot); it re-reads the row,
 * which the block has just read (L2, not HBM). The fused op does both in one launch, so a training
 * step's loss reads the logits from HBM once and writes them once: 8 bytes per logit in fp32, 4 in
 * bf16, against 24 for the old two-pass forward + recomputing backward.
 *
 * Rows are V elements; V (32002 for Mistral with thought tokens) need not keep rows 16-byte aligned, so
 * each row is a scalar head up to the first 16-byte boundary, whole packs, and a scalar tail; pass 2
 * takes the vector path only when dlogits and logits share that alignment (always when they alias),
 * else scalar accesses. Every thread reads and writes only its own elements in pass 2 and all pass-1
 * reads (the target logit included) finish before the block reduction's barriers, so dlogits may
 * alias logits. Fixed reduction order: deterministic. Rows whose target is negative
 * (QSTAR_IGNORE_INDEX) get loss 0 and a zero gradient row. Templated on the element type (fp32 math).
 */
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vec.cuh"

#define CROSSENTROPY_BLOCK 512
#define CROSSENTROPY_UNROLL 2  // packs in flight per thread per iteration

// Adds one logit to a running (max, Σ exp(x - max)).
__device__ __forceinline__ void online_softmax_add(float& m, float& s, float x) {
    if (x > m) {
        s = s * expf(m - x) + 1.0f;  // m = -inf: s is 0 and stays 0 before the + 1
        m = x;
    } else if (m != -INFINITY) {     // x = m = -inf adds nothing
        s += expf(x - m);
    }
}

// Merges (m2, s2) into (m, s). Commutative bitwise, so both lanes of a shuffle pair agree.
__device__ __forceinline__ void online_softmax_merge(float& m, float& s, float m2, float s2) {
    const float mx = fmaxf(m, m2);
    if (mx == -INFINITY) return;  // both empty
    s = (m == -INFINITY ? 0.0f : s * expf(m - mx)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - mx));
    m = mx;
}

// Block-wide merge of every thread's (m, s); every thread gets the result. shared: 64 floats.
__device__ __forceinline__ void block_online_softmax(float& m, float& s, float* shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    for (int o = 16; o > 0; o >>= 1)
        online_softmax_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
    __syncthreads();
    if (lane == 0) shared[warp] = m, shared[32 + warp] = s;
    __syncthreads();
    m = lane < nwarps ? shared[lane] : -INFINITY;
    s = lane < nwarps ? shared[32 + lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1)
        online_softmax_merge(m, s, __shfl_xor_sync(0xffffffffu, m, o), __shfl_xor_sync(0xffffffffu, s, o));
}

// losses (when not null) and, with GRAD, dlogits of row blockIdx.x.
template <class T, bool GRAD>
__global__ void __launch_bounds__(CROSSENTROPY_BLOCK)
    crossentropy_kernel(float* losses,           // (N) or null
                        T* dlogits,              // (N, V), may alias logits; used with GRAD
                        const T* logits,         // (N, V)
                        const int32_t* targets,  // (N)
                        const float* dlosses,    // (N); used with GRAD
                        int V) {
    constexpr int W = VecWidth<T>::value;
    __shared__ float shared[64];
    const int n = blockIdx.x, tid = threadIdx.x, nt = blockDim.x;
    const int t = targets[n];  // uniform over the block
    const T* x = logits + (size_t)n * V;
    T* dx = GRAD ? dlogits + (size_t)n * V : nullptr;
    if (t < 0) {
        if (losses && tid == 0) losses[n] = 0.0f;
        if (GRAD)
            for (int v = tid; v < V; v += nt) dx[v] = from_float<T>(0.0f);
        return;
    }
    const float xt = to_float(x[t]);  // read before the barriers below, after which dx is written
    const int head = vec_head(x, V), packs = (V - head) / W, tail = head + packs * W;
    const T* xb = x + head;

    // pass 1: online log-sum-exp
    float m = -INFINITY, s = 0.0f;
    for (int v = tid; v < head; v += nt) online_softmax_add(m, s, to_float(x[v]));
    for (int v = tail + tid; v < V; v += nt) online_softmax_add(m, s, to_float(x[v]));
    for (int p = tid; p < packs; p += nt * CROSSENTROPY_UNROLL) {
        Pack<T, W> r[CROSSENTROPY_UNROLL] = {};
#pragma unroll
        for (int u = 0; u < CROSSENTROPY_UNROLL; u++)
            if (p + u * nt < packs) r[u] = GRAD ? load_pack<T, W>(xb + (size_t)(p + u * nt) * W)  // re-read in pass 2
                                                : load_pack_cs<T, W>(xb + (size_t)(p + u * nt) * W);
#pragma unroll
        for (int u = 0; u < CROSSENTROPY_UNROLL; u++) {
            if (p + u * nt >= packs) break;
            float pm = r[u][0];
#pragma unroll
            for (int i = 1; i < W; i++) pm = fmaxf(pm, r[u][i]);
            if (pm > m) s *= expf(m - pm), m = pm;
            if (m != -INFINITY) {
#pragma unroll
                for (int i = 0; i < W; i++) s += expf(r[u][i] - m);
            }
        }
    }
    block_online_softmax(m, s, shared);
    const float lse = m + logf(s);
    if (losses && tid == 0) losses[n] = lse - xt;
    if (!GRAD) return;

    // pass 2: dlogits = d * softmax - d * onehot(t)
    const float d = dlosses[n];
    if ((((uintptr_t)x ^ (uintptr_t)dx) & 15) != 0) {  // different alignment: scalar accesses
        for (int v = tid; v < V; v += nt) {
            const float g = d * expf(to_float(x[v]) - lse);
            dx[v] = from_float<T>(v == t ? g - d : g);
        }
        return;
    }
    for (int v = tid; v < head; v += nt) {
        const float g = d * expf(to_float(x[v]) - lse);
        dx[v] = from_float<T>(v == t ? g - d : g);
    }
    for (int v = tail + tid; v < V; v += nt) {
        const float g = d * expf(to_float(x[v]) - lse);
        dx[v] = from_float<T>(v == t ? g - d : g);
    }
    T* dxb = dx + head;
    for (int p = tid; p < packs; p += nt * CROSSENTROPY_UNROLL) {
        Pack<T, W> r[CROSSENTROPY_UNROLL] = {};
#pragma unroll
        for (int u = 0; u < CROSSENTROPY_UNROLL; u++)
            if (p + u * nt < packs) r[u] = load_pack_cs<T, W>(xb + (size_t)(p + u * nt) * W);  // last use
#pragma unroll
        for (int u = 0; u < CROSSENTROPY_UNROLL; u++) {
            const int q = p + u * nt;
            if (q >= packs) break;
            Pack<T, W> g;
#pragma unroll
            for (int i = 0; i < W; i++) {
                const float gi = d * expf(r[u][i] - lse);
                g.set(i, head + q * W + i == t ? gi - d : gi);
            }
            store_pack_cs<T, W>(dxb + (size_t)q * W, g);
        }
    }
}

// losses null: backward only; dlogits null: forward only.
template <class T>
static void crossentropy_launch(float* losses, T* dlogits, const T* logits, const int32_t* targets,
                                const float* dlosses, int N, int V) {
    if (N <= 0) return;
    if (dlogits)
        LAUNCH((crossentropy_kernel<T, true>), N, CROSSENTROPY_BLOCK, 0, qstar_stream, losses, dlogits, logits, targets,
               dlosses, V);
    else
        LAUNCH((crossentropy_kernel<T, false>), N, CROSSENTROPY_BLOCK, 0, qstar_stream, losses, (T*)nullptr, logits,
               targets, (const float*)nullptr, V);
    cudaCheckLaunch();
}

static void cuda_crossentropy_forward(float* losses, const floatX* logits, const int32_t* targets, int N, int V) {
    NVTX_RANGE_FN();
    crossentropy_launch<floatX>(losses, nullptr, logits, targets, nullptr, N, V);
}

static void cuda_crossentropy_backward(floatX* dlogits, const floatX* logits, const int32_t* targets,
                                       const float* dlosses, int N, int V) {
    NVTX_RANGE_FN();
    crossentropy_launch<floatX>(nullptr, dlogits, logits, targets, dlosses, N, V);
}

static void cuda_crossentropy_fused(float* losses, floatX* dlogits, const floatX* logits, const int32_t* targets,
                                    const float* dlosses, int N, int V) {
    NVTX_RANGE_FN();
    crossentropy_launch<floatX>(losses, dlogits, logits, targets, dlosses, N, V);
}
