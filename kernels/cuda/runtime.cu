/*
 * The CUDA backend's runtime, compiled once: the stream every op runs on, device memory, host<->device
 * copies and their synchronisation count, profiler ranges, the device's peak, and NCCL's collectives.
 * The op tables (backend_cuda.cu, compiled once per precision) share all of it.
 */
#include <string.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/runtime.cuh"
#include "kernels/cuda/comm_nccl.cuh"
#include "kernels/gpu_peaks.h"

cudaStream_t qstar_stream = 0;

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
    ready = 1;
}

void* cuda_alloc(size_t bytes) {
    ensure_device();
    void* p = NULL;
    cudaCheck(cudaMalloc(&p, bytes ? bytes : 1));
    cudaCheck(cudaMemsetAsync(p, 0, bytes ? bytes : 1, qstar_stream));
    return p;
}
void cuda_free(void* p) {
    if (p) cudaCheck(cudaFree(p));
}
// Host synchronisations (ops.h: sync_count): every wait of the host on the stream goes through here.
static uint64_t host_syncs;
static void host_sync(void) {
    __atomic_add_fetch(&host_syncs, 1, __ATOMIC_RELAXED);
    cudaCheck(cudaStreamSynchronize(qstar_stream));
}
uint64_t cuda_sync_count(void) { return __atomic_load_n(&host_syncs, __ATOMIC_RELAXED); }

// Uploads are asynchronous: the host bytes are copied into a pinned stage at once (so the caller may
// reuse its buffer) and the stage is copied to the device in stream order. The stage is a ring; when
// an upload does not fit in what is left of it the host waits for the stream (every earlier copy out of
// the stage is then done) and starts again at its front. An upload larger than the stage waits.
#define UPLOAD_STAGE_BYTES ((size_t)16 << 20)
static char* upload_stage;
static size_t upload_head;
void cuda_upload(void* dst, const void* src, size_t bytes) {
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
void cuda_download(void* dst, const void* src, size_t bytes) {
    if (bytes) cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, qstar_stream));
    host_sync();
}
void cuda_copy(void* dst, const void* src, size_t bytes) {
    if (bytes) cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, qstar_stream));
}
void cuda_zero(void* p, size_t bytes) {
    if (bytes) cudaCheck(cudaMemsetAsync(p, 0, bytes, qstar_stream));
}
void cuda_sync(void) { host_sync(); }

#if defined(__CUDACC__) && !defined(QSTAR_NO_NVTX)
void cuda_range_push(const char* name) { nvtxRangePushA(name); }
void cuda_range_pop(void) { nvtxRangePop(); }
void cuda_profiler(int on) { cudaCheck(on ? cudaProfilerStart() : cudaProfilerStop()); }
#else
void cuda_range_push(const char* name) { (void)name; }
void cuda_range_pop(void) {}
void cuda_profiler(int on) { (void)on; }
#endif

// Dense tensor-core peak of the GPU for the GEMMs' compute type (TF32 for fp32 storage, bf16 for bf16),
// from the one peak table (kernels/gpu_peaks.h); 0 for a GPU it does not know.
double cuda_peak_flops(int bf16) {
    ensure_device();
    cudaDeviceProp p;
    cudaCheck(cudaGetDeviceProperties(&p, 0));
    const GpuPeak* peak = gpu_peak_lookup(p.name);
    return peak ? (bf16 ? peak->bf16_tflops : peak->tf32_tflops) * 1e12 : 0.0;
}

