/*
 * Token embedding on the GPU. Forward is a row gather: one thread per output element, a warp reading
 * consecutive columns of one table row. Backward is a scatter-add into the table; repeated tokens must
 * add up in a fixed order without float atomics (deterministic training), and it must be parallel: the
 * former kernel (a thread per column walking all N tokens) filled 32 blocks and was latency-bound.
 * As llm.c's encoder backward does with buckets built on the host, the tokens are grouped by id, here
 * on the GPU so the op keeps its device-only contract: per chunk of up to 4096 tokens, one block sorts
 * the keys (token << 32 | position) with a bitonic sort in shared memory and cuts the sorted list into
 * segments of equal token (a block-wide scan); then one block per (segment, slice of columns) owns its
 * table row: it loads the row's slice once, adds the dout rows of the segment in ascending position,
 * and stores it once, with 128-bit accesses where the width allows. No two blocks touch one address,
 * and each element receives exactly the CPU reference's additions in the CPU's order (chunks run in
 * order, positions ascend within a segment), so the result equals the reference bitwise.
 */
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/vec.cuh"

__global__ void embedding_forward_kernel(floatX* out,            // (N, H)
                                         const int32_t* tokens,  // (N)
                                         const floatX* table,    // (V, H)
                                         int N, int H) {
    const size_t total = (size_t)N * H, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const size_t n = i / H, c = i % H;
        out[i] = table[(size_t)tokens[n] * H + c];
    }
}

#define EMB_CHUNK 4096         // tokens sorted per pass: 32 KB of keys in shared memory
#define EMB_SORT_THREADS 1024  // EMB_CHUNK / EMB_SORT_THREADS keys per thread in the scan
#define EMB_BLOCK 128          // threads per (segment, column slice) block

// Sorts the keys of tokens[0, len) and cuts them into segments of one token each:
// pos[i] = position (in the chunk) of the i-th smallest key, segment s = sorted [seg[s], seg[s+1]),
// *nseg segments. len2 = the power of two >= len that is sorted (padding keys sort last).
__global__ void __launch_bounds__(EMB_SORT_THREADS)
    embedding_sort_kernel(int32_t* pos,            // (EMB_CHUNK)
                          int32_t* seg,            // (EMB_CHUNK + 1)
                          int32_t* nseg,           // (1)
                          const int32_t* tokens,   // (len) this chunk's tokens
                          int len, int len2) {
    __shared__ unsigned long long keys[EMB_CHUNK];
    __shared__ int warp_total[32];
    const int tid = threadIdx.x, nt = blockDim.x, lane = tid % 32, warp = tid / 32;
    for (int i = tid; i < len2; i += nt)
        keys[i] = i < len ? (unsigned long long)(uint32_t)tokens[i] << 32 | (uint32_t)i : ~0ull;
    __syncthreads();
    for (int k = 2; k <= len2; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = tid; i < len2; i += nt) {
                const int ixj = i ^ j;
                if (ixj > i) {
                    const unsigned long long a = keys[i], b = keys[ixj];
                    if ((a > b) == ((i & k) == 0)) keys[i] = b, keys[ixj] = a;
                }
            }
            __syncthreads();
        }
    // segment starts: an exclusive scan of "first of its token" flags, each thread over consecutive keys
    constexpr int per = EMB_CHUNK / EMB_SORT_THREADS;
    int count = 0;
    for (int q = 0; q < per; q++) {
        const int i = tid * per + q;
        count += i < len && (i == 0 || keys[i] >> 32 != keys[i - 1] >> 32);
    }
    int incl = count;
    for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += y;
    }
    if (lane == 31) warp_total[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        int w = lane < nt / 32 ? warp_total[lane] : 0;
        for (int o = 1; o < 32; o <<= 1) {
            const int y = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += y;
        }
        warp_total[lane] = w;  // inclusive over warps
    }
    __syncthreads();
    int s = incl - count + (warp > 0 ? warp_total[warp - 1] : 0);
    for (int q = 0; q < per; q++) {
        const int i = tid * per + q;
        if (i >= len) break;
        pos[i] = (int32_t)(keys[i] & 0xffffffffu);
        if (i == 0 || keys[i] >> 32 != keys[i - 1] >> 32) seg[s++] = i;
    }
    if (tid == 0) {
        const int total = warp_total[nt / 32 - 1];
        *nseg = total;
        seg[total] = len;
    }
}

// Block (x, y): segment y, packs x*blockDim.x + threadIdx.x of its table row. The row slice is loaded,
// the segment's dout rows are added in ascending position, the slice is stored: one owner per address.
template <class T, int W>
__global__ void embedding_backward_kernel(T* dtable,              // (V, H) +=, the row summed in fp32 and stored once
                                          const T* dout,          // (N, H), rows of this chunk
                                          const int32_t* tokens,  // (len) this chunk's tokens
                                          const int32_t* pos,     // from embedding_sort_kernel
                                          const int32_t* seg,
                                          const int32_t* nseg,
                                          int H) {
    const int s = blockIdx.y, p = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= *nseg || p >= H / W) return;
    const int begin = seg[s], end = seg[s + 1];
    T* row = dtable + (size_t)tokens[pos[begin]] * H + (size_t)p * W;
    const Pack<T, W> old = load_pack<T, W>(row);
    Pack<float, W> acc;
#pragma unroll
    for (int j = 0; j < W; j++) acc.e[j] = old[j];
#pragma unroll 4
    for (int i = begin; i < end; i++) {
        const Pack<T, W> d = load_pack_cs<T, W>(dout + (size_t)pos[i] * H + (size_t)p * W);
#pragma unroll
        for (int j = 0; j < W; j++) acc.e[j] += d[j];
    }
    Pack<T, W> out;
#pragma unroll
    for (int j = 0; j < W; j++) out.set(j, acc.e[j]);
    store_pack<T, W>(row, out);
}

// Scratch of the sort (positions, segment starts, segment count), allocated on first use; the stream
// runs in order, so one buffer serves every chunk of every call.
static int32_t* embedding_scratch = nullptr;

template <class T>
static void embedding_backward_launch(T* dtable, const T* dout, const int32_t* tokens, int N, int H) {
    if (N <= 0 || H <= 0) return;
    if (!embedding_scratch) cudaCheck(cudaMalloc((void**)&embedding_scratch, sizeof(int32_t) * (2 * EMB_CHUNK + 2)));
    int32_t *pos = embedding_scratch, *seg = pos + EMB_CHUNK, *nseg = seg + EMB_CHUNK + 1;
    constexpr int W = VecWidth<T>::value;
    const bool vec = vec_aligned<T>(H, dout, dtable);
    for (int n0 = 0; n0 < N; n0 += EMB_CHUNK) {  // chunks in order: each row's additions stay in token order
        const int len = N - n0 < EMB_CHUNK ? N - n0 : EMB_CHUNK;
        int len2 = 1;
        while (len2 < len) len2 <<= 1;
        LAUNCH(embedding_sort_kernel, 1, EMB_SORT_THREADS, 0, qstar_stream, pos, seg, nseg, tokens + n0, len, len2);
        cudaCheckLaunch();
        const T* d = dout + (size_t)n0 * H;
        if (vec)
            LAUNCH((embedding_backward_kernel<T, W>), dim3(CEIL_DIV(H / W, EMB_BLOCK), len), EMB_BLOCK, 0, qstar_stream,
                   dtable, d, tokens + n0, pos, seg, nseg, H);
        else
            LAUNCH((embedding_backward_kernel<T, 1>), dim3(CEIL_DIV(H, EMB_BLOCK), len), EMB_BLOCK, 0, qstar_stream,
                   dtable, d, tokens + n0, pos, seg, nseg, H);
        cudaCheckLaunch();
    }
}

static void cuda_embedding_forward(floatX* out, const int32_t* tokens, const floatX* table, int N, int H) {
    NVTX_RANGE_FN();
    if (N <= 0 || H <= 0) return;
    LAUNCH(embedding_forward_kernel, elementwise_grid((size_t)N * H), ELEMENTWISE_BLOCK, 0, qstar_stream, out, tokens,
           table, N, H);
    cudaCheckLaunch();
}

static void cuda_embedding_backward(floatX* dtable, const floatX* dout, const int32_t* tokens, int N, int V, int H) {
    NVTX_RANGE_FN();
    (void)V;
    embedding_backward_launch<floatX>(dtable, dout, tokens, N, H);
}
