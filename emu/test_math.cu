/*
 * test_math.cu — the device-only functions the emulator supplies on the host (bit intrinsics,
 * reinterpretations, fast-math intrinsics, min/max overloads, fp16/bf16 math, cache-hinted loads),
 * a spin-wait that only terminates because __nanosleep yields to the other fibers, and a __device__
 * helper with its own __shared__ array. nvcc compiling the same file (test_emu_nvcc.sh) shows the
 * signatures match CUDA's. Fast intrinsics are approximate on the GPU, so those use tolerances.
 */
#include <math.h>

#include "test_helpers.h"

__global__ void k_bits(const unsigned* in, int* out) {
    unsigned x = in[0];
    out[0] = __popc(x);
    out[1] = __clz((int)x);
    out[2] = __ffs((int)x);
    out[3] = (int)__brev(x);
    out[4] = __popcll(0xf0f0f0f0f0f0f0f0ull);
    out[5] = __clzll(1ll << 40);
    out[6] = __float_as_int(1.0f);
    out[7] = (int)__float_as_uint(-2.0f);
    out[8] = (int)__int_as_float(0x40400000); /* 3.0f */
    out[9] = (int)__umulhi(0x80000000u, 6u);
    out[10] = min(3, -4) + max(7u, 2u) + (int)min(2.5f, 1.5f) + (int)max(-1.0, 4.0);
    out[11] = __ldg(&in[1]) + __ldcs(&in[1]);
    out[12] = __ffs(0);
    out[13] = __clz(0);
}

__global__ void k_float(const float* in, float* out) {
    float x = in[0];
    out[0] = __expf(x);
    out[1] = __logf(x);
    out[2] = __fdividef(x, 4.0f);
    out[3] = rsqrtf(x);
    out[4] = __saturatef(x);
    out[5] = __saturatef(-x);
    out[6] = __frcp_rn(x);
    out[7] = __fmaf_rn(x, 2.0f, 1.0f);
    out[8] = __powf(x, 2.0f);
    out[9] = __sinf(x) * __sinf(x) + __cosf(x) * __cosf(x);
    out[10] = __tanhf(x);
    out[11] = (float)__float2int_rn(2.5f) + (float)__float2int_rn(3.5f); /* 2 + 4: ties to even */
    float s, c;
    __sincosf(x, &s, &c);
    out[12] = s * s + c * c;
    out[13] = normcdff(0.0f);
    out[14] = __double2float_rn(0.1);
    out[15] = __fsqrt_rn(x);
}

__global__ void k_half(const float* in, float* out) {
    __nv_bfloat16 b = __float2bfloat16(in[0]);
    __half h = __float2half(in[0]);
    out[0] = __bfloat162float(hsqrt(b));
    out[1] = __half2float(hsqrt(h));
    out[2] = __bfloat162float(__hfma(b, b, b));
    out[3] = __half2float(hexp(__float2half(0.0f)));
    out[4] = __bfloat162float(__hadd(b, b));
    __nv_bfloat162 b2 = __floats2bfloat162_rn(1.0f, 2.0f);
    b2 = __hfma2(b2, b2, b2);
    out[5] = __low2float(b2) + __high2float(b2); /* 2 + 6 */
}

/* thread 0 polls a flag that thread 37 sets: without __nanosleep yielding, the fiber of thread 0
 * would spin forever in the emulator */
__global__ void k_spin(int* out) {
    __shared__ volatile int flag;
    if (threadIdx.x == 0) flag = 0;
    __syncthreads();
    if (threadIdx.x == 0) {
        int spins = 0;
        while (flag == 0) {
            __nanosleep(100);
            spins++;
        }
        out[0] = flag;
        out[1] = spins > 0;
    }
    if (threadIdx.x == 37) {
        __threadfence_block();
        flag = 42;
    }
}

__device__ float block_sum(float v) {
    __shared__ float part[32];
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(FULL_MASK, v, o);
    if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = v;
    __syncthreads();
    float s = 0.0f;
    for (int w = 0; w < (int)(blockDim.x / 32); w++) s += part[w];
    __syncthreads();
    return s;
}
__global__ void k_device_fn(float* out) {
    float a = block_sum((float)threadIdx.x);
    float b = block_sum(1.0f);
    if (threadIdx.x == 0) {
        out[0] = a;
        out[1] = b;
    }
}

static bool near(float a, float b, float tol) { return fabsf(a - b) <= tol * (1.0f + fabsf(b)); }

int main(void) {
    if (!have_device()) return 0;
    {
        std::vector<unsigned> in = {0x00f0f001u, 21u};
        unsigned* din = to_device(in);
        int* dout = device_zeros<int>(16);
        LAUNCH(k_bits, 1, 1, 0, 0, din, dout);
        std::vector<int> o = to_host(dout, 16);
        CHECK(o[0] == 9 && o[1] == 8 && o[2] == 1, "popc/clz/ffs %d %d %d", o[0], o[1], o[2]);
        CHECK((unsigned)o[3] == 0x800f0f00u, "brev 0x%08x", (unsigned)o[3]);
        CHECK(o[4] == 32 && o[5] == 23, "popcll/clzll %d %d", o[4], o[5]);
        CHECK(o[6] == 0x3f800000 && (unsigned)o[7] == 0xc0000000u && o[8] == 3, "float/int reinterpretation");
        CHECK(o[9] == 3, "umulhi %d", o[9]);
        CHECK(o[10] == -4 + 7 + 1 + 4, "min/max overloads %d", o[10]);
        CHECK(o[11] == 42, "__ldg/__ldcs %d", o[11]);
        CHECK(o[12] == 0 && o[13] == 32, "ffs(0)/clz(0) %d %d", o[12], o[13]);
        cudaFree(din);
        cudaFree(dout);
    }
    {
        std::vector<float> in = {0.75f};
        float* din = to_device(in);
        float* dout = device_zeros<float>(16);
        LAUNCH(k_float, 1, 1, 0, 0, din, dout);
        std::vector<float> o = to_host(dout, 16);
        float x = 0.75f;
        CHECK(near(o[0], expf(x), 1e-5f) && near(o[1], logf(x), 1e-5f) && near(o[2], x / 4, 1e-6f), "exp/log/div");
        CHECK(near(o[3], 1.0f / sqrtf(x), 1e-5f) && o[4] == x && o[5] == 0.0f, "rsqrtf/__saturatef");
        CHECK(near(o[6], 1.0f / x, 1e-6f) && o[7] == 2.5f && near(o[8], x * x, 1e-5f), "rcp/fma/pow");
        CHECK(near(o[9], 1.0f, 1e-5f) && near(o[10], tanhf(x), 1e-5f) && near(o[12], 1.0f, 1e-5f),
              "sin/cos/tanh/sincos");
        CHECK(o[11] == 6.0f && o[13] == 0.5f && o[14] == 0.1f && near(o[15], sqrtf(x), 1e-6f),
              "float2int_rn/normcdff/double2float/fsqrt %g %g", o[11], o[13]);
        cudaFree(din);
        cudaFree(dout);
    }
    {
        std::vector<float> in = {4.0f};
        float* din = to_device(in);
        float* dout = device_zeros<float>(8);
        LAUNCH(k_half, 1, 1, 0, 0, din, dout);
        std::vector<float> o = to_host(dout, 8);
        CHECK(o[0] == 2.0f && o[1] == 2.0f && o[2] == 20.0f && o[3] == 1.0f && o[4] == 8.0f && o[5] == 8.0f,
              "fp16/bf16 math %g %g %g %g %g %g", o[0], o[1], o[2], o[3], o[4], o[5]);
        cudaFree(din);
        cudaFree(dout);
    }
    {
        int* d = device_zeros<int>(2);
        LAUNCH(k_spin, 1, 64, 0, 0, d);
        std::vector<int> o = to_host(d, 2);
        CHECK(o[0] == 42, "spin-wait on a flag set by another thread: %d", o[0]);
        float* f = device_zeros<float>(2);
        LAUNCH(k_device_fn, 2, 128, 0, 0, f);
        std::vector<float> r = to_host(f, 2);
        CHECK(r[0] == 127.0f * 128.0f / 2.0f && r[1] == 128.0f, "__shared__ inside a __device__ function: %g %g", r[0],
              r[1]);
        cudaFree(d);
        cudaFree(f);
    }
    return test_summary();
}
