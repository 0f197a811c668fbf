/*
 * The CUDA backend table (kernels/ops.h) and its memory functions. The op families live one per
 * header beside their launchers; this file includes them all and fills the table. Compiled by nvcc
 * it is `backend_cuda`; compiled by g++ against the CPU emulator (tests/emu) it is `backend_emu`,
 * which the tests compare op by op with the C reference.
 */
#include <string.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/matmul.cuh"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/swiglu.cuh"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/crossentropy.cuh"
#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/quietstar.cuh"
#include "kernels/cuda/comm_nccl.cuh"
#include "kernels/cuda/flash_attention.cuh"
#include "kernels/gpu_peaks.h"

// Not in the table yet (bf16 tensor-core products; see flash_attention.cuh): instantiated here so that
// `make cuda` compiles it for sm_80/sm_90 and its ptxas report is checked for spills.
template void flash_attention_forward<float>(floatX*, float*, const float*, int, int, int, int, int, cudaStream_t);
template void flash_attention_forward<__nv_bfloat16>(floatX*, float*, const __nv_bfloat16*, int, int, int, int, int,
                                                     cudaStream_t);
template void flash_attention_backward<float>(floatX*, const float*, const floatX*, const float*, const float*, int, int,
                                              int, int, int, cudaStream_t);
template void flash_attention_backward<__nv_bfloat16>(floatX*, const __nv_bfloat16*, const floatX*, const float*,
                                                      const __nv_bfloat16*, int, int, int, int, int, cudaStream_t);
template void flash_thought_attention_forward<float>(floatX*, float*, const float*, size_t, int, int, int, int, int, int,
                                                     cudaStream_t);
template void flash_thought_attention_forward<__nv_bfloat16>(floatX*, float*, const __nv_bfloat16*, size_t, int, int,
                                                             int, int, int, int, cudaStream_t);
template void flash_thought_attention_backward<float>(floatX*, const float*, const floatX*, const float*, const float*,
                                                      size_t, int, int, int, int, int, int, cudaStream_t);
template void flash_thought_attention_backward<__nv_bfloat16>(floatX*, const __nv_bfloat16*, const floatX*,
                                                              const float*, const __nv_bfloat16*, size_t, int, int,
                                                              int, int, int, int, cudaStream_t);

cudaStream_t qstar_stream = 0;

// The memory-bound kernels are templates on the activation type. Their bf16 variants are instantiated
// here, unused until the contract's floatX moves to bf16, so that every build compiles them (ptxas
// reports their registers and any spill, make cuda fails on one) and the emulator tests can run them.
typedef __nv_bfloat16 bf16;
struct Bf16MemoryBoundOps {
    void (*crossentropy)(float*, bf16*, const bf16*, const int32_t*, const float*, int, int);
    void (*rmsnorm_backward)(bf16*, float*, const bf16*, const bf16*, const float*, const float*, int, int);
    void (*embedding_backward)(float*, const bf16*, const int32_t*, int, int);
    void (*swiglu_forward)(bf16*, const bf16*, int, int);
    void (*swiglu_backward)(bf16*, const bf16*, const bf16*, int, int);
};
extern const Bf16MemoryBoundOps qstar_bf16_memory_bound_ops;
const Bf16MemoryBoundOps qstar_bf16_memory_bound_ops = {
    crossentropy_launch<bf16>,  rmsnorm_backward_launch<bf16>, embedding_backward_launch<bf16>,
    swiglu_forward_launch<bf16>, swiglu_backward_launch<bf16>,
};

// The first call checks for a device: a GPU binary on a machine without one stops with a clear
// message instead of failing inside the first kernel.
static void ensure_device(void) {
    static int ready = 0;
    if (ready) return;
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0)
        fatal("no CUDA device (%s)", err != cudaSuccess ? cudaGetErrorString(err) : "none found");
    cudaCheck(cudaStreamCreate(&qstar_stream));
    matmul_init();
    ready = 1;
}

static void* cuda_alloc(size_t bytes) {
    ensure_device();
    void* p = NULL;
    cudaCheck(cudaMalloc(&p, bytes ? bytes : 1));
    cudaCheck(cudaMemsetAsync(p, 0, bytes ? bytes : 1, qstar_stream));
    return p;
}
static void cuda_free(void* p) {
    if (p) cudaCheck(cudaFree(p));
}
// Host synchronisations (ops.h: sync_count): every wait of the host on the stream goes through here.
static uint64_t host_syncs;
static void host_sync(void) {
    __atomic_add_fetch(&host_syncs, 1, __ATOMIC_RELAXED);
    cudaCheck(cudaStreamSynchronize(qstar_stream));
}
static uint64_t cuda_sync_count(void) { return __atomic_load_n(&host_syncs, __ATOMIC_RELAXED); }

// Uploads are asynchronous: the host bytes are copied into a pinned stage at once (so the caller may
// reuse its buffer) and the stage is copied to the device in stream order. The stage is a ring; when
// an upload does not fit in what is left of it the host waits for the stream (every earlier copy out of
// the stage is then done) and starts again at its front. An upload larger than the stage waits.
#define UPLOAD_STAGE_BYTES ((size_t)16 << 20)
static char* upload_stage;
static size_t upload_head;
static void cuda_upload(void* dst, const void* src, size_t bytes) {
    if (!bytes) return;
    if (bytes > UPLOAD_STAGE_BYTES) {
        cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, qstar_stream));
        host_sync();  // the host buffer may be reused at once
        return;
    }
    if (!upload_stage) cudaCheck(cudaMallocHost((void**)&upload_stage, UPLOAD_STAGE_BYTES));
    const size_t at = (upload_head + 15) & ~(size_t)15;
    if (at + bytes > UPLOAD_STAGE_BYTES) {
        host_sync();
        upload_head = 0;
        return cuda_upload(dst, src, bytes);
    }
    memcpy(upload_stage + at, src, bytes);
    cudaCheck(cudaMemcpyAsync(dst, upload_stage + at, bytes, cudaMemcpyHostToDevice, qstar_stream));
    upload_head = at + bytes;
}
static void cuda_download(void* dst, const void* src, size_t bytes) {
    if (bytes) cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, qstar_stream));
    host_sync();
}
static void cuda_copy(void* dst, const void* src, size_t bytes) {
    if (bytes) cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, qstar_stream));
}
static void cuda_zero(void* p, size_t bytes) {
    if (bytes) cudaCheck(cudaMemsetAsync(p, 0, bytes, qstar_stream));
}
static void cuda_sync(void) { host_sync(); }

#if defined(__CUDACC__) && !defined(QSTAR_NO_NVTX)
static void cuda_range_push(const char* name) { nvtxRangePushA(name); }
static void cuda_range_pop(void) { nvtxRangePop(); }
static void cuda_profiler(int on) { cudaCheck(on ? cudaProfilerStart() : cudaProfilerStop()); }
#else
static void cuda_range_push(const char* name) { (void)name; }
static void cuda_range_pop(void) {}
static void cuda_profiler(int on) { (void)on; }
#endif

// Dense TF32 tensor-core peak of the GPU (the compute type of our fp32 GEMMs), from the one peak
// table (kernels/gpu_peaks.h); 0 for a GPU it does not know.
static double cuda_peak_flops(void) {
    ensure_device();
    cudaDeviceProp p;
    cudaCheck(cudaGetDeviceProperties(&p, 0));
    const GpuPeak* peak = gpu_peak_lookup(p.name);
    return peak ? peak->tf32_tflops * 1e12 : 0.0;
}

#ifdef CUEMU
#define QSTAR_BACKEND_SYMBOL backend_emu
#define QSTAR_BACKEND_NAME "emu"
#else
#define QSTAR_BACKEND_SYMBOL backend_cuda
#define QSTAR_BACKEND_NAME "cuda"
#endif

// Designated initializers (C++20), in the declaration order of ops.h; backend_get() refuses a table
// with any op left NULL.
extern "C" const Backend QSTAR_BACKEND_SYMBOL = {
    .name = QSTAR_BACKEND_NAME,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .zero = cuda_zero,
    .sync = cuda_sync,
    .sync_count = cuda_sync_count,
    .range_push = cuda_range_push,
    .range_pop = cuda_range_pop,
    .profiler = cuda_profiler,
    .peak_flops = cuda_peak_flops,
    .embedding_forward = cuda_embedding_forward,
    .embedding_backward = cuda_embedding_backward,
    .rmsnorm_forward = cuda_rmsnorm_forward,
    .rmsnorm_backward = cuda_rmsnorm_backward,
    .add_rmsnorm_forward = cuda_add_rmsnorm_forward,
    .matmul_forward = cuda_matmul_forward,
    .matmul_backward = cuda_matmul_backward,
    .rope_forward = cuda_rope_forward,
    .rope_backward = cuda_rope_backward,
    .attention_forward = cuda_attention_forward,
    .attention_backward = cuda_attention_backward,
    .swiglu_forward = cuda_swiglu_forward,
    .swiglu_backward = cuda_swiglu_backward,
    .add = cuda_add,
    .scale = cuda_scale,
    .crossentropy_forward = cuda_crossentropy_forward,
    .crossentropy_backward = cuda_crossentropy_backward,
    .crossentropy_fused = cuda_crossentropy_fused,
    .thought_attention_forward = cuda_thought_attention_forward,
    .thought_attention_backward = cuda_thought_attention_backward,
    .mask_columns = cuda_mask_columns,
    .gumbel_sample = cuda_gumbel_sample,
    .row_broadcast = cuda_row_broadcast,
    .column_sum = cuda_column_sum,
    .add_bias = cuda_add_bias,
    .relu_forward = cuda_relu_forward,
    .relu_backward = cuda_relu_backward,
    .concat_columns = cuda_concat_columns,
    .split_columns_backward = cuda_split_columns_backward,
    .roll_rows = cuda_roll_rows,
    .roll_rows_backward = cuda_roll_rows_backward,
    .mix_forward = cuda_mix_forward,
    .mix_backward = cuda_mix_backward,
    .quietstar_advantage = cuda_quietstar_advantage,
    .shift_tokens = cuda_shift_tokens,
    .row_weights = cuda_row_weights,
    .quietstar_stats = cuda_quietstar_stats,
    .copy_strided = cuda_copy_strided,
    .cached_attention_forward = cuda_cached_attention_forward,
    .cached_attention_batched = cuda_cached_attention_batched,
    .adamw_update = cuda_adamw_update,
    .round_bf16 = cuda_round_bf16,
    .sum_squares = cuda_sum_squares,
};
