/*
 * Shared pieces of the CUDA backend: error checks that name the call and file:line, NVTX ranges,
 * warp and block reductions, and the stream every op runs on. The same sources compile with nvcc for
 * the GPU and with g++ against the project's CPU emulator (emu/): kernels launch through
 * LAUNCH(...) and take dynamic shared memory through DYN_SMEM(...) (kernels/cuda/portable.h), and
 * use only *_sync warp intrinsics with explicit masks.
 */
#pragma once

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_bf16.h>

#include "kernels/cuda/portable.h"

// floatX (kernels/ops.h) is a concrete type in CUDA sources: float unless the file compiling the op
// headers chose bf16 (backend_cuda.cu's second compile).
#ifndef QSTAR_FLOATX
#define QSTAR_FLOATX float
#endif
extern "C" {
#include "common/util.h"
#include "kernels/ops.h"
#include "kernels/philox.h"
}

#if defined(__CUDACC__) && !defined(QSTAR_NO_NVTX)
#include <cuda_profiler_api.h>
#include <nvtx3/nvToolsExt.h>
struct NvtxRange {
    explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
    ~NvtxRange() { nvtxRangePop(); }
};
#define NVTX_RANGE_FN() NvtxRange nvtx_range_(__func__)
#else
#define NVTX_RANGE_FN() \
    do {                \
    } while (0)
#endif

static inline void cuda_check_(cudaError_t err, const char* what, const char* file, int line) {
    if (err != cudaSuccess) fatal("CUDA error %s at %s:%d: %s", cudaGetErrorString(err), file, line, what);
}
#define cudaCheck(call) cuda_check_((call), #call, __FILE__, __LINE__)
// After a launch: reports a bad configuration at the launcher, not at the next synchronizing call.
#define cudaCheckLaunch() cuda_check_(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

#define CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

// Storage <-> fp32: kernels load any storage type as float, compute and accumulate in fp32, and store
// through from_float (round to nearest even for bf16).
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
// x stored as floatX
__device__ __forceinline__ floatX to_x(float x) { return from_float<floatX>(x); }

// Every op runs on this stream, in order; host<->device copies synchronize with it.
extern cudaStream_t qstar_stream;

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

__device__ __forceinline__ double warp_sum_double(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Block-wide sum of one float per thread (blockDim.x a multiple of 32, at most 1024); every thread
// gets the result. `shared` needs 32 floats. The order of additions is fixed: deterministic.
__device__ __forceinline__ float block_sum(float v, float* shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_sum(v);
    __syncthreads();  // `shared` may still be read by a previous call
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float t = lane < nwarps ? shared[lane] : 0.0f;
    return warp_sum(t);
}

__device__ __forceinline__ float block_max(float v, float* shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float t = lane < nwarps ? shared[lane] : -INFINITY;
    return warp_max(t);
}
