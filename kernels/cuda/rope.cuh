/*
 * Rotary position embedding on the GPU, transformers' rotate-half convention, in place on the query
 * and key heads at the front of each qkv row (values untouched). The frequencies 1/theta^(2j/HD) are
 * computed on the host with the same fp32 expression as the CPU reference and passed to the kernel by
 * value (at most 256 floats of kernel parameters), so they are bitwise the CPU's whatever the GPU's
 * powf does; the kernel forms angle = (float)pos * inv_freq[j] in fp32 exactly as the CPU does, so large
 * positions round the same way. One thread per rotated pair (row, head, j): it reads x[j] and
 * x[j + HD/2] and writes both, so the in-place update has no cross-thread hazard, and consecutive
 * threads touch consecutive j (coalesced). The backward is the inverse (transposed) rotation: the
 * same kernel with sin negated.
 */
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise.cuh"

#define ROPE_MAX_HALF 256

struct RopeFreqs {
    float inv_freq[ROPE_MAX_HALF];  // (HD/2) used
};

// sign = +1 rotates forward; -1 applies the inverse rotation (backward).
__global__ void rope_kernel(floatX* qkv,            // (N, row_width) in place, rotated heads first
                            const int32_t* pos,     // (N) position of each row
                            const RopeFreqs freqs,  // (HD/2) inverse frequencies
                            int N, int rot_heads,   // rot_heads = NH + NKV
                            int row_width,          // (NH + 2*NKV) * HD
                            int HD, float sign) {
    const int half = HD / 2;
    const size_t total = (size_t)N * rot_heads * half, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        const int j = (int)(i % half);
        const size_t nh = i / half;
        const int h = (int)(nh % rot_heads);
        const size_t n = nh / rot_heads;
        const float angle = (float)pos[n] * freqs.inv_freq[j];
        float s, c;
        sincosf(angle, &s, &c);
        s *= sign;
        floatX* x = qkv + n * row_width + (size_t)h * HD;
        const float x1 = x[j], x2 = x[j + half];
        x[j] = x1 * c - x2 * s;
        x[j + half] = x2 * c + x1 * s;
    }
}

static void rope_launch(floatX* qkv, const int32_t* pos, int N, int NH, int NKV, int HD, float theta, float sign) {
    const int half = HD / 2;
    QSTAR_ASSERT(half <= ROPE_MAX_HALF);
    if (N <= 0 || half <= 0) return;
    RopeFreqs freqs;
    for (int j = 0; j < half; j++) freqs.inv_freq[j] = 1.0f / powf(theta, (float)(2 * j) / (float)HD);
    for (int j = half; j < ROPE_MAX_HALF; j++) freqs.inv_freq[j] = 0.0f;
    const size_t total = (size_t)N * (NH + NKV) * half;
    LAUNCH(rope_kernel, elementwise_grid(total), ELEMENTWISE_BLOCK, 0, qstar_stream, qkv, pos, freqs, N, NH + NKV,
           (NH + 2 * NKV) * HD, HD, sign);
    cudaCheckLaunch();
}

static void cuda_rope_forward(floatX* qkv, const int32_t* pos, int N, int NH, int NKV, int HD, float theta) {
    NVTX_RANGE_FN();
    rope_launch(qkv, pos, N, NH, NKV, HD, theta, 1.0f);
}

static void cuda_rope_backward(floatX* dqkv, const int32_t* pos, int N, int NH, int NKV, int HD, float theta) {
    NVTX_RANGE_FN();
    rope_launch(dqkv, pos, N, NH, NKV, HD, theta, -1.0f);
}
