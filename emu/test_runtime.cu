/*
 * test_runtime.cu — the emulator's CUDA runtime API: device queries, cudaMalloc alignment and
 * fill, every memcpy kind (sync, async, 2-D), memset, __constant__/__device__ symbols, pinned host
 * memory, streams and events, the last-error protocol, and launch validation (too many threads,
 * dimensions too large, too much dynamic shared memory unless cudaFuncSetAttribute allowed it).
 * Checks that only hold for the emulator (its name, its NaN fill) are under #ifdef CUEMU.
 */
#include <math.h>
#include <stdint.h>

#include "test_helpers.h"

__constant__ float c_coef[8];
__device__ int g_counter;

__global__ void k_use_symbols(const float* in, float* out) {
    int i = threadIdx.x;
    out[i] = in[i] * c_coef[i % 8];
    if (i == 0) g_counter += 5;
}

__global__ void k_fill(float* out, float v, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = v;
}

/* touches the last byte of a large dynamic shared memory area */
__global__ void k_big_smem(int* out, int bytes) {
    DYN_SMEM(unsigned char, sm);
    for (int i = threadIdx.x; i < bytes; i += blockDim.x) sm[i] = (unsigned char)(i & 0x7f);
    __syncthreads();
    if (threadIdx.x == 0) out[0] = sm[bytes - 1] + sm[0];
}

__global__ void k_noop(void) {}

int main(void) {
    if (!have_device()) return 0;

    /* device queries */
    int count = 0, dev = -1;
    CU_OK(cudaGetDeviceCount(&count));
    CHECK(count >= 1, "device count %d", count);
    CU_OK(cudaSetDevice(0));
    CU_OK(cudaGetDevice(&dev));
    CHECK(dev == 0, "current device %d", dev);
    cudaDeviceProp prop;
    CU_OK(cudaGetDeviceProperties(&prop, 0));
    CHECK(prop.warpSize == 32 && prop.maxThreadsPerBlock == 1024 && prop.major >= 8, "device properties");
#ifdef CUEMU
    CHECK(strcmp(prop.name, "qstar emulator") == 0 && prop.major == 9, "emulator device name '%s'", prop.name);
    CHECK(cudaSetDevice(1) == cudaErrorInvalidDevice, "cudaSetDevice(1) on one device");
    CHECK(cudaGetLastError() == cudaErrorInvalidDevice, "API errors become the last error");
#endif
    CHECK(cudaGetLastError() == cudaSuccess, "cudaGetLastError resets");
    int smem_optin = 0;
    CU_OK(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
    CHECK(smem_optin > 48 * 1024, "opt-in shared memory %d", smem_optin);
    size_t free_b = 0, total_b = 0;
    CU_OK(cudaMemGetInfo(&free_b, &total_b));
    CHECK(total_b > 0 && free_b <= total_b, "cudaMemGetInfo");
    CHECK(cudaGetErrorString(cudaErrorInvalidConfiguration) != NULL &&
              strlen(cudaGetErrorString(cudaErrorInvalidConfiguration)) > 0, "cudaGetErrorString");

    /* allocation, alignment, fill, every copy kind */
    {
        const int n = 1000;
        float *a = NULL, *b = NULL, *pinned = NULL;
        CU_OK(cudaMalloc((void**)&a, n * sizeof(float)));
        CU_OK(cudaMalloc((void**)&b, 3 * sizeof(float)));
        CHECK(((uintptr_t)a % 256) == 0 && ((uintptr_t)b % 256) == 0, "cudaMalloc aligns to 256");
#ifdef CUEMU
        std::vector<float> fresh = to_host(a, n);
        CHECK(isnan(fresh[0]) && isnan(fresh[n - 1]), "fresh cudaMalloc memory reads as NaN in the emulator");
#endif
        CU_OK(cudaMallocHost((void**)&pinned, n * sizeof(float)));
        for (int i = 0; i < n; i++) pinned[i] = (float)i;
        CU_OK(cudaMemcpy(a, pinned, n * sizeof(float), cudaMemcpyHostToDevice));
        float* c = NULL;
        CU_OK(cudaMalloc((void**)&c, n * sizeof(float)));
        CU_OK(cudaMemcpy(c, a, n * sizeof(float), cudaMemcpyDeviceToDevice));
        std::vector<float> h(n, -1.0f), h2(n, -2.0f);
        CU_OK(cudaMemcpy(h.data(), c, n * sizeof(float), cudaMemcpyDeviceToHost));
        CHECK(h[0] == 0.0f && h[999] == 999.0f, "H2D + D2D + D2H round trip");
        CU_OK(cudaMemcpy(h2.data(), h.data(), n * sizeof(float), cudaMemcpyHostToHost));
        CU_OK(cudaMemcpy(h2.data(), c, 10 * sizeof(float), cudaMemcpyDefault));
        CHECK(h2[500] == 500.0f && h2[9] == 9.0f, "H2H and Default copies");
        CU_OK(cudaMemset(c, 0, n * sizeof(float)));
        CU_OK(cudaMemcpy(h.data(), c, n * sizeof(float), cudaMemcpyDeviceToHost));
        CHECK(h[0] == 0.0f && h[999] == 0.0f && h[500] == 0.0f, "cudaMemset");

        cudaStream_t s;
        CU_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
        CU_OK(cudaMemsetAsync(c, 0xff, 4 * sizeof(float), s));
        CU_OK(cudaMemcpyAsync(pinned, c, 8 * sizeof(float), cudaMemcpyDeviceToHost, s));
        CU_OK(cudaStreamSynchronize(s));
        CHECK(isnan(pinned[0]) && pinned[4] == 0.0f, "async memset + copy on a stream");
        /* 2-D copy: 4 rows of 3 floats out of a pitch of 10 floats */
        std::vector<float> src(40), dst(12, 0.0f);
        for (int i = 0; i < 40; i++) src[i] = (float)i;
        CU_OK(cudaMemcpy2D(dst.data(), 3 * sizeof(float), src.data(), 10 * sizeof(float), 3 * sizeof(float), 4,
                           cudaMemcpyHostToHost));
        CHECK(dst[0] == 0.0f && dst[3] == 10.0f && dst[11] == 32.0f, "cudaMemcpy2D");
        CHECK(cudaMemcpy(h.data(), c, 4, (cudaMemcpyKind)42) != cudaSuccess, "bad memcpy kind is an error");
        cudaGetLastError();
        CU_OK(cudaStreamDestroy(s));
        CU_OK(cudaFree(a));
        CU_OK(cudaFree(b));
        CU_OK(cudaFree(c));
        CU_OK(cudaFree(NULL));
        CU_OK(cudaFreeHost(pinned));
#ifdef CUEMU
        int not_allocated = 0;
        CHECK(cudaFree(&not_allocated) == cudaErrorInvalidValue, "cudaFree of a pointer it never returned");
        cudaGetLastError();
#endif
    }

    /* symbols */
    {
        float coef[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        CU_OK(cudaMemcpyToSymbol(c_coef, coef, sizeof coef));
        float two[2] = {-1, -2};
        CU_OK(cudaMemcpyToSymbol(c_coef, two, sizeof two, 6 * sizeof(float)));
        int zero = 0;
        CU_OK(cudaMemcpyToSymbol(g_counter, &zero, sizeof zero));
        std::vector<float> x(16, 2.0f);
        float* dx = to_device(x);
        float* dy = device_zeros<float>(16);
        LAUNCH(k_use_symbols, 1, 16, 0, 0, dx, dy);
        LAUNCH(k_use_symbols, 1, 16, 0, 0, dx, dy);
        std::vector<float> y = to_host(dy, 16);
        CHECK(y[0] == 2.0f && y[5] == 12.0f && y[6] == -2.0f && y[15] == -4.0f, "__constant__ via cudaMemcpyToSymbol");
        int counter = 0;
        CU_OK(cudaMemcpyFromSymbol(&counter, g_counter, sizeof counter));
        CHECK(counter == 10, "__device__ variable via cudaMemcpyFromSymbol: %d", counter);
        float back[8];
        CU_OK(cudaMemcpyFromSymbol(back, c_coef, sizeof back));
        CHECK(back[0] == 1.0f && back[7] == -2.0f, "cudaMemcpyFromSymbol");
        void* addr = NULL;
        CU_OK(cudaGetSymbolAddress(&addr, g_counter));
        CHECK(addr != NULL, "cudaGetSymbolAddress");
        cudaFree(dx);
        cudaFree(dy);
    }

    /* streams and events */
    {
        cudaStream_t s1, s2;
        CU_OK(cudaStreamCreate(&s1));
        CU_OK(cudaStreamCreate(&s2));
        cudaEvent_t e0, e1, nt;
        CU_OK(cudaEventCreate(&e0));
        CU_OK(cudaEventCreate(&e1));
        CU_OK(cudaEventCreateWithFlags(&nt, cudaEventDisableTiming));
        const int n = 4096;
        float* d = device_zeros<float>(n);
        CU_OK(cudaEventRecord(e0, s1));
        LAUNCH(k_fill, n / 256, 256, 0, s1, d, 3.0f, n);
        CU_OK(cudaEventRecord(e1, s1));
        CU_OK(cudaEventRecord(nt, s1));
        CU_OK(cudaStreamWaitEvent(s2, e1, 0));
        LAUNCH(k_fill, 1, 32, 0, s2, d, 4.0f, 16);
        CU_OK(cudaEventSynchronize(e1));
        CU_OK(cudaStreamSynchronize(s2));
        float ms = -1.0f;
        CU_OK(cudaEventElapsedTime(&ms, e0, e1));
        CHECK(ms >= 0.0f, "cudaEventElapsedTime %g", ms);
        CHECK(cudaEventElapsedTime(&ms, e0, nt) != cudaSuccess, "no elapsed time with cudaEventDisableTiming");
        cudaGetLastError();
        CU_OK(cudaEventQuery(e1));
        std::vector<float> h = to_host(d, n);
        CHECK(h[0] == 4.0f && h[15] == 4.0f && h[16] == 3.0f && h[n - 1] == 3.0f, "kernels on two streams");
        CU_OK(cudaDeviceSynchronize());
        CU_OK(cudaEventDestroy(e0));
        CU_OK(cudaEventDestroy(e1));
        CU_OK(cudaEventDestroy(nt));
        CU_OK(cudaStreamDestroy(s1));
        CU_OK(cudaStreamDestroy(s2));
        cudaFree(d);
    }

    /* launch validation */
    {
        LAUNCH(k_noop, 1, 2048, 0, 0);
        CHECK(cudaPeekAtLastError() != cudaSuccess, "peek sees the bad launch");
        cudaError_t e = cudaGetLastError();
        CHECK(e == cudaErrorInvalidConfiguration, "block of 2048 threads: %s", cudaGetErrorName(e));
        CHECK(cudaGetLastError() == cudaSuccess, "the launch error was cleared");
        LAUNCH(k_noop, 1, dim3(1, 1, 65), 0, 0);
        CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "blockDim.z 65");
        LAUNCH(k_noop, 1, dim3(32, 33), 0, 0);
        CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "32x33 = 1056 threads");
        LAUNCH(k_noop, dim3(1, 70000), 32, 0, 0);
        CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "gridDim.y 70000");
        LAUNCH(k_noop, 0, 32, 0, 0);
        CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "empty grid");
        LAUNCH(k_noop, dim3(70000), 1, 0, 0);
        CHECK(cudaGetLastError() == cudaSuccess, "gridDim.x 70000 is fine");

        int* d = device_zeros<int>(1);
        const int big = 100 * 1024;
        LAUNCH(k_big_smem, 1, 256, big, 0, d, big);
        e = cudaGetLastError();
        CHECK(e != cudaSuccess, "100 KiB dynamic shared memory without the attribute must fail");
#ifdef CUEMU
        CHECK(e == cudaErrorInvalidConfiguration, "too much shared memory: %s", cudaGetErrorName(e));
#endif
        CU_OK(cudaFuncSetAttribute(k_big_smem, cudaFuncAttributeMaxDynamicSharedMemorySize, big));
        LAUNCH(k_big_smem, 1, 256, big, 0, d, big);
        CU_OK(cudaGetLastError());
        CHECK(to_host(d, 1)[0] == ((big - 1) & 0x7f), "100 KiB dynamic shared memory after opting in");
        cudaFuncAttributes fa;
        CU_OK(cudaFuncGetAttributes(&fa, k_big_smem));
        CHECK(fa.maxThreadsPerBlock > 0, "cudaFuncGetAttributes");
        int blocks = 0;
        CU_OK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, k_fill, 256, 0));
        CHECK(blocks >= 1, "occupancy %d", blocks);
        cudaFree(d);
    }
    return test_summary();
}
