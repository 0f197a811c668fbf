/*
 * Optimizer kernels on the GPU: the AdamW update (fp32 math; with a master copy it updates the fp32
 * master and writes the floatX working copy in the same pass; in the Quiet-STaR reference's bf16 mode
 * it rounds the moments and the weights to bf16 values in that pass too), bfloat16 rounding of fp32 weights,
 * fp32 <-> floatX conversion, and the squared norm for global gradient clipping. AdamW, rounding and
 * conversion are elementwise grid-stride loops. The bias
 * corrections are scalars computed once on the host with the same fp32 expressions as the CPU
 * reference. round_bf16 works on the bit pattern (round to nearest, ties to even; inf and nan kept),
 * so it is bitwise the CPU's. sum_squares must be deterministic and precise: a fixed grid (its size
 * depends only on n) of blocks each accumulates a grid-strided share in double and reduces it in a
 * fixed shuffle/shared-memory order to one partial; then a single block adds the partials in a fixed
 * order and writes the float result to out[0] in device memory. The partials live in a static device
 * array; every op runs on qstar_stream, in order, so the array is never used by two launches at once.
 */
#pragma once

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/elementwise.cuh"

#define SUMSQ_BLOCK 256
#define SUMSQ_MAX_BLOCKS 1024

static __device__ double sumsq_partials[SUMSQ_MAX_BLOCKS];

// The bf16 value x rounds to, as an fp32: to nearest even, or stochastically when seed != 0 (u uniform
// in [0, 2^16) from Philox keyed by (seed, i) added below the bf16 mantissa, then truncated: E[result] = x).
// inf and nan are kept.
__device__ __forceinline__ float bf16_value(float x, uint64_t seed, size_t i) {
    uint32_t b = __float_as_uint(x);
    if ((b & 0x7F800000u) == 0x7F800000u) return x;
    if (seed) {
        const Philox4 r = philox4x32((uint32_t)i, (uint32_t)(i >> 32), 0x5EEDu, 0, (uint32_t)seed, (uint32_t)(seed >> 32));
        b += r.v[0] & 0xFFFFu;
    } else {
        b += 0x7FFFu + ((b >> 16) & 1u);  // ties to even
    }
    return __uint_as_float(b & 0xFFFF0000u);
}

// Stored as floatX: round to nearest even, or stochastically when seed != 0 (bf16_value).
__device__ __forceinline__ floatX store_rounded(float x, uint64_t seed, size_t i) {
    if (sizeof(floatX) == sizeof(float) || seed == 0) return to_x(x);
    return to_x(bf16_value(x, seed, i));  // exact: the low half is zero
}

// bf16_state: the reference's precision (weights and moments held in bf16): m and v are floatX, stored
// rounded to nearest even, and the update uses those stored values, as PyTorch's AdamW on bf16 state
// does; the new weight is rounded to a bf16 value (stochastically with seed) and written to the master
// (if any) and param, exactly representable in either type. Otherwise m and v are fp32.
__global__ void adamw_kernel(floatX* param,       // (n) the weights the ops read
                             float* master,       // (n) fp32 master weights, or NULL (param is fp32 and the master)
                             const floatX* grad,  // (n)
                             void* m,             // (n) first moment: fp32, or floatX with bf16_state
                             void* v,             // (n) second moment: the same
                             size_t n, float lr, float beta1, float beta2, float eps, float weight_decay,
                             float grad_scale, float step_size, float bc2_sqrt, uint64_t seed, size_t index0,
                             int bf16_state) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float g = to_float(grad[i]) * grad_scale;
        const float w = master ? master[i] : to_float(param[i]);
        const float p = w * (1.0f - lr * weight_decay);
        float mi, vi;
        if (bf16_state) {  // rounded to nearest: exact in floatX, whichever type that is
            mi = bf16_value(beta1 * to_float(((floatX*)m)[i]) + (1.0f - beta1) * g, 0, i);
            vi = bf16_value(beta2 * to_float(((floatX*)v)[i]) + (1.0f - beta2) * g * g, 0, i);
            ((floatX*)m)[i] = to_x(mi);
            ((floatX*)v)[i] = to_x(vi);
        } else {
            mi = beta1 * ((float*)m)[i] + (1.0f - beta1) * g;
            vi = beta2 * ((float*)v)[i] + (1.0f - beta2) * g * g;
            ((float*)m)[i] = mi;
            ((float*)v)[i] = vi;
        }
        const float out = p - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
        if (bf16_state) {
            const float r = bf16_value(out, seed, index0 + i);
            if (master) master[i] = r;
            param[i] = to_x(r);
        } else {
            if (master) master[i] = out;
            param[i] = store_rounded(out, seed, index0 + i);
        }
    }
}

__global__ void to_floatX_kernel(floatX* out, const float* x, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = to_x(x[i]);
}

__global__ void from_floatX_kernel(float* out, const floatX* x, size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = to_float(x[i]);
}

__global__ void round_bf16_kernel(float* x,  // (n) in place
                                  size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        uint32_t b = __float_as_uint(x[i]);
        if ((b & 0x7F800000u) != 0x7F800000u) b += 0x7FFFu + ((b >> 16) & 1u);  // ties to even; inf/nan kept
        x[i] = __uint_as_float(b & 0xFFFF0000u);
    }
}

// Block-wide double sum in a fixed order; the result is valid in warp 0 (all of its lanes).
__device__ __forceinline__ double block_sum_double_warp0(double v) {
    __shared__ double shared[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_sum_double(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    double t = 0.0;
    if (warp == 0) t = warp_sum_double(lane < nwarps ? shared[lane] : 0.0);
    return t;
}

__global__ void sum_squares_partial_kernel(const floatX* x,  // (n)
                                           size_t n) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    double acc = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const double xi = to_float(x[i]);
        acc += xi * xi;
    }
    acc = block_sum_double_warp0(acc);
    if (threadIdx.x == 0) sumsq_partials[blockIdx.x] = acc;
}

__global__ void sum_squares_final_kernel(float* out,  // (1)
                                         int nparts) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) acc += sumsq_partials[i];
    acc = block_sum_double_warp0(acc);
    if (threadIdx.x == 0) out[0] = (float)acc;
}

static void cuda_adamw_update(floatX* param, float* master, const floatX* grad, void* m, void* v, size_t n, float lr,
                              float beta1, float beta2, float eps, float weight_decay, float grad_scale, int t,
                              uint64_t seed, size_t index0, int bf16_state) {
    NVTX_RANGE_FN();
    if (n == 0) return;
    const float bc1 = 1.0f - powf(beta1, (float)t);
    const float bc2 = 1.0f - powf(beta2, (float)t);
    const float step_size = lr / bc1;
    const float bc2_sqrt = sqrtf(bc2);
    LAUNCH(adamw_kernel, elementwise_grid(n), ELEMENTWISE_BLOCK, 0, qstar_stream, param, master, grad, m, v, n, lr,
           beta1, beta2, eps, weight_decay, grad_scale, step_size, bc2_sqrt, seed, index0, bf16_state);
    cudaCheckLaunch();
}

static void cuda_to_floatX(floatX* out, const float* x, size_t n) {
    NVTX_RANGE_FN();
    if (n == 0) return;
    LAUNCH(to_floatX_kernel, elementwise_grid(n), ELEMENTWISE_BLOCK, 0, qstar_stream, out, x, n);
    cudaCheckLaunch();
}

static void cuda_from_floatX(float* out, const floatX* x, size_t n) {
    NVTX_RANGE_FN();
    if (n == 0) return;
    LAUNCH(from_floatX_kernel, elementwise_grid(n), ELEMENTWISE_BLOCK, 0, qstar_stream, out, x, n);
    cudaCheckLaunch();
}

static void cuda_round_bf16(float* x, size_t n) {
    NVTX_RANGE_FN();
    if (n == 0) return;
    LAUNCH(round_bf16_kernel, elementwise_grid(n), ELEMENTWISE_BLOCK, 0, qstar_stream, x, n);
    cudaCheckLaunch();
}

static void cuda_sum_squares(float* out, const floatX* x, size_t n) {
    NVTX_RANGE_FN();
    // Blocks depend only on n (about 8 elements per thread, capped): the same n always sums the same way.
    size_t blocks = (n + SUMSQ_BLOCK * 8 - 1) / (SUMSQ_BLOCK * 8);
    if (blocks > SUMSQ_MAX_BLOCKS) blocks = SUMSQ_MAX_BLOCKS;
    if (blocks == 0) blocks = 1;  // n == 0 still writes out[0] = 0
    LAUNCH(sum_squares_partial_kernel, (int)blocks, SUMSQ_BLOCK, 0, qstar_stream, x, n);
    cudaCheckLaunch();
    LAUNCH(sum_squares_final_kernel, 1, SUMSQ_BLOCK, 0, qstar_stream, out, (int)blocks);
    cudaCheckLaunch();
}
