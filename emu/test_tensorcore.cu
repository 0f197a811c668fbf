/*
 * test_tensorcore.cu — the tensor-core primitives of kernels/cuda/tensorcore.cuh against naive
 * products and copies. The fragments are built here from the PTX ISA's per-element formulas (row and
 * column of element a_i / b_i / c_i from groupID and threadID_in_group), independently of the
 * header's per-register form, and every input element is distinct, so a wrong lane, register, half or
 * transpose changes the result. Integer-valued inputs make the products exact: results must match
 * bit for bit.
 *   mma bf16 and f16: two warps of one block at once (per-warp state), C accumulated;
 *   ldmatrix x1/x2/x4, plain and .trans: each lane's registers against the documented mapping, with
 *     row addresses handed to lanes in a permuted order (and the unused lanes of x1/x2 ignored);
 *   ldmatrix + mma as a tiled kernel uses them: A by x4, B by x2 from an n-major tile and by
 *     x2.trans / x4.trans from a k-major tile;
 *   cp.async: the destination reads as poison (0xFF) until its group is waited for; wait_group<1>,
 *     <0>, an uncommitted copy, wait_all; a double-buffered loop with a planted missing wait fails;
 *   emulator counters: mma count and FLOPs, ldmatrix bytes and bank conflicts of 32-byte rows;
 *   exp2_approx (ex2.approx.ftz.f32) against exp2 in double: relative error <= EXP2_APPROX_REL_ERR
 *     over [-126, 128) (fine steps, and every integer and half), the .ftz rules (subnormal input ->
 *     1, results below 2^-126 -> +0) and the special values (+-0, +-inf, NaN);
 *   traps (in a forked child): misaligned ldmatrix row, misaligned cp.async source and destination,
 *     an mma with only half a warp.
 * Poison and traps are emulator semantics and are checked only there; on a GPU the rest runs as is.
 */
#include "test_helpers.h"

#include "../kernels/cuda/tensorcore.cuh"

#include <math.h>

#ifdef CUEMU
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#endif

__global__ void k_exp2(const float* x, float* y, int n) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = exp2_approx(x[i]);
}

/* ------------------------------------------------------------------ fragment builders (PTX ISA form) */
template <class T>
__device__ uint32_t pair_bits(T lo, T hi) {
    unsigned short l, h;
    memcpy(&l, &lo, 2);
    memcpy(&h, &hi, 2);
    return (uint32_t)l | ((uint32_t)h << 16);
}

/* A: 16x16 row-major; element a_i (i = 0..7) sits at row g + 8 for i in {2,3,6,7}, col 2t + (i&1) + 8 (i>=4) */
template <class T>
__device__ void load_a(uint32_t (&a)[4], const T* A, int lane) {
    const int g = lane >> 2, t = lane & 3;
    T e[8];
    for (int i = 0; i < 8; i++) {
        const int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
        const int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
        e[i] = A[row * 16 + col];
    }
    for (int r = 0; r < 4; r++) a[r] = pair_bits(e[2 * r], e[2 * r + 1]);
}
/* B: 16x8 stored [k][n]; b_i at row (k) 2t + (i&1) + 8 (i>=2), col (n) g */
template <class T>
__device__ void load_b(uint32_t (&b)[2], const T* B, int lane) {
    const int g = lane >> 2, t = lane & 3;
    T e[4];
    for (int i = 0; i < 4; i++) e[i] = B[(t * 2 + (i & 1) + (i >= 2 ? 8 : 0)) * 8 + g];
    b[0] = pair_bits(e[0], e[1]);
    b[1] = pair_bits(e[2], e[3]);
}
/* C/D: 16x8 f32; c_i at row g + 8 (i>=2), col 2t + (i&1) */
__device__ int c_index(int lane, int i) { return ((lane >> 2) + (i >= 2 ? 8 : 0)) * 8 + (lane & 3) * 2 + (i & 1); }

__device__ void mma_of(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], __nv_bfloat16) {
    mma_bf16_16816(acc, a, b);
}
__device__ void mma_of(float (&acc)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], __half) {
    mma_f16_16816(acc, a, b);
}

/* each warp w multiplies its own A_w (16x16), B_w (16x8), C_w */
template <class T>
__global__ void k_mma(const T* A, const T* B, const float* C, float* D) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    uint32_t a[4], b[2];
    load_a(a, A + warp * 256, lane);
    load_b(b, B + warp * 128, lane);
    float acc[4];
    for (int i = 0; i < 4; i++) acc[i] = C[warp * 128 + c_index(lane, i)];
    mma_of(acc, a, b, T());
    for (int i = 0; i < 4; i++) D[warp * 128 + c_index(lane, i)] = acc[i];
}

/* ------------------------------------------------------------------ ldmatrix against the mapping */
/* a 32x8 bf16 tile in shared memory; lane l hands over row perm(l) = (7l + 3) % 32; out[v][lane][reg] */
__device__ int ld_perm(int l) { return (7 * l + 3) % 32; }
__global__ void k_ldmatrix(const __nv_bfloat16* src, uint32_t* out) {
    __shared__ __align__(16) __nv_bfloat16 tile[32 * 8];
    const int lane = threadIdx.x;
    for (int i = 0; i < 8; i++) tile[lane * 8 + i] = src[lane * 8 + i];
    __syncwarp();
    const __nv_bfloat16* row = tile + ld_perm(lane) * 8;
    uint32_t r1[1], r2[2], r4[4];
    ldmatrix_x1(r1, row);
    out[(0 * 32 + lane) * 4] = r1[0];
    ldmatrix_x2(r2, row);
    for (int j = 0; j < 2; j++) out[(1 * 32 + lane) * 4 + j] = r2[j];
    ldmatrix_x4(r4, row);
    for (int j = 0; j < 4; j++) out[(2 * 32 + lane) * 4 + j] = r4[j];
    ldmatrix_x1_trans(r1, row);
    out[(3 * 32 + lane) * 4] = r1[0];
    ldmatrix_x2_trans(r2, row);
    for (int j = 0; j < 2; j++) out[(4 * 32 + lane) * 4 + j] = r2[j];
    ldmatrix_x4_trans(r4, row);
    for (int j = 0; j < 4; j++) out[(5 * 32 + lane) * 4 + j] = r4[j];
}

/* ------------------------------------------------------------------ ldmatrix feeding mma, as a tiled kernel does
 * A (16x16 row-major), B (16x16 stored [k][n]), Bt (16x16 stored [n][k]) in shared memory;
 * D1 = A*B[:, 0:8] with B from Bt by ldmatrix_x2; D2 = A*B (16x16) with B by ldmatrix_x4_trans;
 * D3 = A*B[:, 8:16] with B by ldmatrix_x2_trans. */
__global__ void k_ld_mma(const __nv_bfloat16* A, const __nv_bfloat16* B, float* D1, float* D2, float* D3) {
    __shared__ __align__(16) __nv_bfloat16 sA[256], sB[256], sBt[256];
    const int lane = threadIdx.x;
    for (int i = lane; i < 256; i += 32) {
        sA[i] = A[i];
        sB[i] = B[i];
        sBt[(i % 16) * 16 + i / 16] = B[i];
    }
    __syncwarp();
    uint32_t a[4], b[2], b4[4];
    ldmatrix_x4(a, sA + (lane % 16) * 16 + (lane / 16) * 8);
    float acc[4] = {0, 0, 0, 0};
    ldmatrix_x2(b, sBt + (lane % 8) * 16 + ((lane / 8) % 2) * 8);
    mma_bf16_16816(acc, a, b);
    for (int i = 0; i < 4; i++) D1[c_index(lane, i)] = acc[i];

    ldmatrix_x4_trans(b4, sB + (lane % 16) * 16 + (lane / 16) * 8);
    for (int nb = 0; nb < 2; nb++) {
        float acc2[4] = {0, 0, 0, 0};
        const uint32_t bb[2] = {b4[2 * nb], b4[2 * nb + 1]};
        mma_bf16_16816(acc2, a, bb);
        for (int i = 0; i < 4; i++) {
            const int c = c_index(lane, i);
            D2[(c / 8) * 16 + nb * 8 + c % 8] = acc2[i];
        }
    }
    float acc3[4] = {0, 0, 0, 0};
    ldmatrix_x2_trans(b, sB + (lane % 16) * 16 + 8);
    mma_bf16_16816(acc3, a, b);
    for (int i = 0; i < 4; i++) D3[c_index(lane, i)] = acc3[i];
}

/* ------------------------------------------------------------------ cp.async */
/* each of 64 threads copies chunks 0..2 of its own 3 x 16 bytes; snapshots s[stage][thread][chunk]:
 * stage 0 right after issue (groups: chunk 0 -> group 0, chunk 1 -> group 1, chunk 2 uncommitted),
 * 1 after wait_group<1>, 2 after wait_group<0>, 3 after wait_all */
__global__ void k_cp_async(const float4* src, float4* snap) {
    __shared__ __align__(16) float4 dst[64 * 3];
    const int t = threadIdx.x;
    for (int c = 0; c < 3; c++) dst[t * 3 + c] = make_float4(0, 0, 0, 0);
    cp_async_16(&dst[t * 3 + 0], &src[t * 3 + 0]);
    cp_async_commit();
    cp_async_16(&dst[t * 3 + 1], &src[t * 3 + 1]);
    cp_async_commit();
    cp_async_16(&dst[t * 3 + 2], &src[t * 3 + 2]);
    for (int c = 0; c < 3; c++) snap[(0 * 64 + t) * 3 + c] = dst[t * 3 + c];
    cp_async_wait_group<1>();
    for (int c = 0; c < 3; c++) snap[(1 * 64 + t) * 3 + c] = dst[t * 3 + c];
    cp_async_wait_group<0>();
    for (int c = 0; c < 3; c++) snap[(2 * 64 + t) * 3 + c] = dst[t * 3 + c];
    cp_async_wait_all();
    for (int c = 0; c < 3; c++) snap[(3 * 64 + t) * 3 + c] = dst[t * 3 + c];
}

/* A double-buffered pipeline as the attention kernel runs it: ntiles tiles of 32 float4, tile i+1 in
 * flight while tile i is summed; each thread sums the chunk another thread copied (so the barrier
 * matters too). skip_wait plants the bug: no cp.async.wait_group before reading the tile. */
__global__ void k_pipeline(const float4* src, int ntiles, int skip_wait, float* out) {
    __shared__ __align__(16) float4 buf[2][32];
    const int t = threadIdx.x;
    float sum = 0.0f;
    cp_async_16(&buf[0][t], &src[t]);
    cp_async_commit();
    for (int i = 0; i < ntiles; i++) {
        if (i + 1 < ntiles) cp_async_16(&buf[(i + 1) & 1][t], &src[(i + 1) * 32 + t]);
        cp_async_commit(); /* an empty group at the end keeps "all but the newest" meaning tile i */
        if (!skip_wait) cp_async_wait_group<1>();
        __syncthreads();
        const float4 v = buf[i & 1][(t + 5) % 32];
        sum += v.x + v.y + v.z + v.w;
        __syncthreads(); /* the buffer is refilled by the next iteration's copy */
    }
    out[t] = sum;
}

/* ------------------------------------------------------------------ kernels that must trap */
__global__ void k_ldmatrix_misaligned(uint32_t* out) {
    __shared__ __align__(16) __nv_bfloat16 tile[40 * 8];
    const int lane = threadIdx.x;
    for (int i = 0; i < 8; i++) tile[lane * 8 + i] = __float2bfloat16((float)i);
    __syncwarp();
    uint32_t r[4];
    ldmatrix_x4(r, tile + lane * 8 + (lane == 5 ? 1 : 0)); /* lane 5: 2 bytes off */
    out[lane] = r[0];
}
__global__ void k_cp_async_misaligned(const float* src, float* out, int dst_off, int src_off) {
    __shared__ __align__(16) float buf[64];
    cp_async_16(buf + 4 * threadIdx.x + dst_off, src + 4 * threadIdx.x + src_off);
    cp_async_wait_all();
    out[threadIdx.x] = buf[4 * threadIdx.x];
}
__global__ void k_mma_partial(float* out) {
    const uint32_t a[4] = {0, 0, 0, 0}, b[2] = {0, 0};
    float acc[4] = {0, 0, 0, 0};
    if (threadIdx.x >= 16) return; /* half the warp has left */
    mma_bf16_16816(acc, a, b);
    out[threadIdx.x] = acc[0];
}

/* ================================================================== host side */
static float bf16_round(float x) { return __bfloat162float(__float2bfloat16(x)); }

template <class T>
static void test_mma(const char* name) {
    /* warp 0: A[i][k] = i*16 + k, B[k][n] = (k*8 + n) - 60, C[i][n] = i*8 + n + 0.25;
     * warp 1: A transposed-pattern and negated B so that mixing up the warps' operands shows */
    std::vector<float> Af(512), Bf(256), Cf(256);
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 16; i++)
            for (int k = 0; k < 16; k++) Af[w * 256 + i * 16 + k] = w == 0 ? (float)(i * 16 + k) : (float)(k * 16 + i) - 128;
    for (int w = 0; w < 2; w++)
        for (int k = 0; k < 16; k++)
            for (int n = 0; n < 8; n++) Bf[w * 128 + k * 8 + n] = (w == 0 ? 1.0f : -0.5f) * (float)(k * 8 + n - 60);
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 16; i++)
            for (int n = 0; n < 8; n++) Cf[w * 128 + i * 8 + n] = (float)(i * 8 + n) + 0.25f + 1000.0f * w;
    std::vector<T> A(512), B(256);
    for (int i = 0; i < 512; i++) A[i] = T(Af[i]);
    for (int i = 0; i < 256; i++) B[i] = T(Bf[i]);
    T* dA = to_device(A);
    T* dB = to_device(B);
    float* dC = to_device(Cf);
    float* dD = device_zeros<float>(256);
    LAUNCH(k_mma<T>, 1, 64, 0, 0, dA, dB, dC, dD);
    CU_OK(cudaGetLastError());
    std::vector<float> D = to_host(dD, 256);
    int bad = 0;
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 16; i++)
            for (int n = 0; n < 8; n++) {
                double s = Cf[w * 128 + i * 8 + n];
                for (int k = 0; k < 16; k++) s += (double)Af[w * 256 + i * 16 + k] * Bf[w * 128 + k * 8 + n];
                if ((float)s != D[w * 128 + i * 8 + n]) {
                    if (bad++ < 4) printf("  %s warp %d D[%d][%d] = %g, want %g\n", name, w, i, n, D[w * 128 + i * 8 + n], s);
                }
            }
    CHECK(bad == 0, "%s: %d of 256 elements differ from the naive product", name, bad);
    printf("  %-40s %s\n", name, bad ? "WRONG" : "exact");
    cudaFree(dA), cudaFree(dB), cudaFree(dC), cudaFree(dD);
}

static void test_ldmatrix(void) {
    std::vector<__nv_bfloat16> src(256);
    for (int i = 0; i < 256; i++) src[i] = __float2bfloat16((float)i); /* row r, col c holds r*8 + c */
    __nv_bfloat16* d_src = to_device(src);
    uint32_t* d_out = device_zeros<uint32_t>(6 * 32 * 4);
    LAUNCH(k_ldmatrix, 1, 32, 0, 0, d_src, d_out);
    CU_OK(cudaGetLastError());
    std::vector<uint32_t> out = to_host(d_out, 6 * 32 * 4);
    const char* names[6] = {"ldmatrix.x1", "ldmatrix.x2", "ldmatrix.x4", "ldmatrix.x1.trans", "ldmatrix.x2.trans",
                            "ldmatrix.x4.trans"};
    const int nmat[6] = {1, 2, 4, 1, 2, 4};
    for (int v = 0; v < 6; v++) {
        const bool trans = v >= 3;
        int bad = 0;
        for (int l = 0; l < 32; l++)
            for (int j = 0; j < nmat[v]; j++) {
                /* matrix j's row r is the tile row that lane 8j + r pointed at */
                auto M = [&](int r, int c) { return (float)(((7 * (8 * j + r) + 3) % 32) * 8 + c); };
                const float lo = trans ? M(2 * (l % 4), l / 4) : M(l / 4, 2 * (l % 4));
                const float hi = trans ? M(2 * (l % 4) + 1, l / 4) : M(l / 4, 2 * (l % 4) + 1);
                const uint32_t got = out[(v * 32 + l) * 4 + j];
                __nv_bfloat16_raw rl, rh;
                rl.x = (unsigned short)(got & 0xffff);
                rh.x = (unsigned short)(got >> 16);
                const float glo = __bfloat162float(__nv_bfloat16(rl)), ghi = __bfloat162float(__nv_bfloat16(rh));
                if (glo != lo || ghi != hi) {
                    if (bad++ < 3) printf("  %s lane %d reg %d = (%g, %g), want (%g, %g)\n", names[v], l, j, glo, ghi, lo, hi);
                }
            }
        CHECK(bad == 0, "%s: %d registers hold the wrong elements", names[v], bad);
        printf("  %-40s %s\n", names[v], bad ? "WRONG" : "ok");
    }
    cudaFree(d_src), cudaFree(d_out);
}

static void test_ldmatrix_mma(void) {
    std::vector<float> Af(256), Bf(256);
    for (int i = 0; i < 256; i++) Af[i] = (float)i - 100;                    /* A[i][k] = 16i + k - 100 */
    for (int i = 0; i < 256; i++) Bf[i] = (float)((i * 37) % 256) * 0.5f - 60; /* distinct, scrambled */
    std::vector<__nv_bfloat16> A(256), B(256);
    for (int i = 0; i < 256; i++) A[i] = __float2bfloat16(Af[i]), B[i] = __float2bfloat16(Bf[i]);
    for (int i = 0; i < 256; i++) CHECK(bf16_round(Af[i]) == Af[i] && bf16_round(Bf[i]) == Bf[i], "inputs exact in bf16");
    __nv_bfloat16* dA = to_device(A);
    __nv_bfloat16* dB = to_device(B);
    float* d1 = device_zeros<float>(128);
    float* d2 = device_zeros<float>(256);
    float* d3 = device_zeros<float>(128);
    LAUNCH(k_ld_mma, 1, 32, 0, 0, dA, dB, d1, d2, d3);
    CU_OK(cudaGetLastError());
#ifdef CUEMU
    /* 4 mma; ldmatrix x4 + x2 + x4.trans + x2.trans deliver 512 + 256 + 512 + 256 bytes; every tile
     * has 32-byte rows, so the 8 rows of each matrix fall on 4 bank quads: 1 extra wavefront per
     * matrix, 12 matrices */
    const ::cuemu::Counters cnt = ::cuemu::last_launch_counters();
    CHECK(cnt[::cuemu::C_MMA] == 4 && cnt[::cuemu::C_FLOPS] == 4 * 4096, "mma counters: %llu mma, %llu flops",
          cnt[::cuemu::C_MMA], cnt[::cuemu::C_FLOPS]);
    CHECK(cnt[::cuemu::C_BYTES_READ] == 1536, "ldmatrix bytes counted: %llu, want 1536", cnt[::cuemu::C_BYTES_READ]);
    CHECK(cnt[::cuemu::C_BANK_CONFLICTS] == 12, "ldmatrix bank conflicts counted: %llu, want 12",
          cnt[::cuemu::C_BANK_CONFLICTS]);
    printf("  %-40s %llu mma, %llu B, %llu bank conflicts\n", "counters (emulator)", cnt[::cuemu::C_MMA],
           cnt[::cuemu::C_BYTES_READ], cnt[::cuemu::C_BANK_CONFLICTS]);
#endif
    std::vector<float> D1 = to_host(d1, 128), D2 = to_host(d2, 256), D3 = to_host(d3, 128);
    int bad1 = 0, bad2 = 0, bad3 = 0;
    for (int i = 0; i < 16; i++)
        for (int n = 0; n < 16; n++) {
            double s = 0;
            for (int k = 0; k < 16; k++) s += (double)Af[i * 16 + k] * Bf[k * 16 + n];
            if (n < 8) bad1 += D1[i * 8 + n] != (float)s;
            else bad3 += D3[i * 8 + n - 8] != (float)s;
            bad2 += D2[i * 16 + n] != (float)s;
        }
    CHECK(bad1 == 0, "ldmatrix.x4 A + ldmatrix.x2 B(n-major) -> mma: %d wrong", bad1);
    CHECK(bad2 == 0, "ldmatrix.x4 A + ldmatrix.x4.trans B(k-major) -> 2 mma: %d wrong", bad2);
    CHECK(bad3 == 0, "ldmatrix.x4 A + ldmatrix.x2.trans B(k-major) -> mma: %d wrong", bad3);
    printf("  %-40s %d/%d/%d wrong\n", "ldmatrix -> mma (x2, x4.trans, x2.trans)", bad1, bad2, bad3);
    cudaFree(dA), cudaFree(dB), cudaFree(d1), cudaFree(d2), cudaFree(d3);
}

[[maybe_unused]] static bool is_poison(const float4& v) {
    uint32_t u[4];
    memcpy(u, &v, 16);
    return u[0] == 0xffffffffu && u[1] == 0xffffffffu && u[2] == 0xffffffffu && u[3] == 0xffffffffu;
}
static bool same(const float4& a, const float4& b) { return memcmp(&a, &b, 16) == 0; }

static void test_cp_async(void) {
    std::vector<float4> src(64 * 3);
    for (int i = 0; i < 64 * 3; i++) src[i] = make_float4(4.0f * i, 4.0f * i + 1, 4.0f * i + 2, 4.0f * i + 3);
    float4* d_src = to_device(src);
    float4* d_snap = device_zeros<float4>(4 * 64 * 3);
    LAUNCH(k_cp_async, 1, 64, 0, 0, d_src, d_snap);
    CU_OK(cudaGetLastError());
    std::vector<float4> s = to_host(d_snap, 4 * 64 * 3);
    auto at = [&](int stage, int t, int c) { return s[(stage * 64 + t) * 3 + c]; };
    [[maybe_unused]] int landed_late = 0;
    int bad_data = 0;
    for (int t = 0; t < 64; t++) {
        /* data that must be there on any machine */
        bad_data += !same(at(1, t, 0), src[t * 3 + 0]);
        bad_data += !same(at(2, t, 0), src[t * 3 + 0]) + !same(at(2, t, 1), src[t * 3 + 1]);
        for (int c = 0; c < 3; c++) bad_data += !same(at(3, t, c), src[t * 3 + c]);
#ifdef CUEMU
        /* the emulator lands a copy exactly when its group is waited for */
        for (int c = 0; c < 3; c++) landed_late += !is_poison(at(0, t, c));
        landed_late += !is_poison(at(1, t, 1)) + !is_poison(at(1, t, 2)) + !is_poison(at(2, t, 2));
#endif
    }
    CHECK(bad_data == 0, "cp.async: %d chunks wrong after their wait", bad_data);
    printf("  %-40s %s\n", "cp.async data after wait_group<1>/<0>/all", bad_data ? "WRONG" : "ok");
#ifdef CUEMU
    CHECK(landed_late == 0, "cp.async: %d chunks readable before their group was waited for", landed_late);
    printf("  %-40s %s\n", "cp.async poison until waited (emulator)", landed_late ? "WRONG" : "ok");
#endif
    cudaFree(d_src), cudaFree(d_snap);
}

static void test_pipeline(void) {
    const int ntiles = 6;
    std::vector<float4> src(ntiles * 32);
    for (int i = 0; i < ntiles * 32; i++) src[i] = make_float4((float)i, 0.5f, -(float)(i % 7), 1.0f);
    float4* d_src = to_device(src);
    float* d_out = device_zeros<float>(32);
    int bad[2] = {0, 0}, nan_seen = 0;
    for (int skip = 0; skip < 2; skip++) {
        LAUNCH(k_pipeline, 1, 32, 0, 0, d_src, ntiles, skip, d_out);
        CU_OK(cudaGetLastError());
        std::vector<float> out = to_host(d_out, 32);
        for (int t = 0; t < 32; t++) {
            float want = 0.0f;
            for (int i = 0; i < ntiles; i++) {
                const float4 v = src[i * 32 + (t + 5) % 32];
                want += v.x + v.y + v.z + v.w;
            }
            bad[skip] += out[t] != want;
            if (skip) nan_seen += isnan(out[t]);
        }
    }
    CHECK(bad[0] == 0, "double-buffered cp.async pipeline: %d of 32 sums wrong", bad[0]);
    printf("  %-40s %s\n", "cp.async double-buffered pipeline", bad[0] ? "WRONG" : "ok");
#ifdef CUEMU
    CHECK(bad[1] == 32 && nan_seen == 32, "planted missing cp.async wait must give NaN sums (%d wrong, %d NaN)", bad[1],
          nan_seen);
    printf("  %-40s %d of 32 sums NaN (the bug shows)\n", "same with the wait left out", nan_seen);
#endif
    cudaFree(d_src), cudaFree(d_out);
}

static void test_exp2_approx(void) {
    std::vector<float> x;
    for (int i = -126 * 64; i < 128 * 64; i++) x.push_back(i / 64.0f + 0.00390625f * (float)(i % 7));  // fine steps
    for (int i = -126; i < 128; i++) x.push_back((float)i), x.push_back(i + 0.5f);
    const size_t nrange = x.size();
    const float special[] = {0.0f, -0.0f, 1e-40f, -1e-40f, -126.5f, -130.0f, -149.0f, -1000.0f, -INFINITY, INFINITY, NAN};
    for (float v : special) x.push_back(v);
    const int n = (int)x.size();
    float *dx = nullptr, *dy = nullptr;
    cudaMalloc((void**)&dx, n * sizeof(float));
    cudaMalloc((void**)&dy, n * sizeof(float));
    cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice);
    LAUNCH(k_exp2, (n + 127) / 128, 128, 0, 0, dx, dy, n);
    std::vector<float> y(n);
    cudaMemcpy(y.data(), dy, n * sizeof(float), cudaMemcpyDeviceToHost);
    double worst = 0;
    for (size_t i = 0; i < nrange; i++) {
        const double want = exp2((double)x[i]);
        if (want < 1.17549435e-38) continue;  // below the normal range: the .ftz checks below
        worst = fmax(worst, fabs(y[i] - want) / want);
    }
    CHECK(worst <= EXP2_APPROX_REL_ERR, "exp2_approx: worst relative error %.3g over [-126, 128) (bound %.3g)", worst,
          EXP2_APPROX_REL_ERR);
    const float* ys = y.data() + nrange;
    CHECK(ys[0] == 1.0f && ys[1] == 1.0f, "exp2_approx(+-0) = 1: %g %g", ys[0], ys[1]);
    CHECK(ys[2] == 1.0f && ys[3] == 1.0f, "exp2_approx(subnormal) = 1 (.ftz): %g %g", ys[2], ys[3]);
    CHECK(ys[4] == 0.0f && ys[5] == 0.0f && ys[6] == 0.0f && ys[7] == 0.0f && !signbit(ys[4]),
          "exp2_approx(x < -126) = +0 (.ftz): %g %g %g %g", ys[4], ys[5], ys[6], ys[7]);
    CHECK(ys[8] == 0.0f && !signbit(ys[8]) && isinf(ys[9]) && ys[9] > 0 && isnan(ys[10]),
          "exp2_approx(-inf, +inf, NaN) = +0, +inf, NaN: %g %g %g", ys[8], ys[9], ys[10]);
    printf("exp2_approx: worst relative error %.3g over %zu inputs in [-126, 128)\n", worst, nrange);
    cudaFree(dx);
    cudaFree(dy);
}

#ifdef CUEMU
static void* g_buf;
static void run_ld_misaligned(void) { LAUNCH(k_ldmatrix_misaligned, 1, 32, 0, 0, (uint32_t*)g_buf); }
static void run_cp_dst(void) { LAUNCH(k_cp_async_misaligned, 1, 8, 0, 0, (const float*)g_buf, (float*)g_buf + 256, 1, 0); }
static void run_cp_src(void) { LAUNCH(k_cp_async_misaligned, 1, 8, 0, 0, (const float*)g_buf, (float*)g_buf + 256, 0, 2); }
static void run_cp_ok(void) { LAUNCH(k_cp_async_misaligned, 1, 8, 0, 0, (const float*)g_buf, (float*)g_buf + 256, 0, 0); }
static void run_mma_partial(void) { LAUNCH(k_mma_partial, 1, 32, 0, 0, (float*)g_buf); }

static void test_traps(void) {
    g_buf = device_zeros<float>(1024);
    struct Case {
        const char* what;
        void (*fn)(void);
        const char* msg[2];
    } cases[] = {
        {"misaligned ldmatrix row", run_ld_misaligned, {"ldmatrix.x4: row address not 16-byte aligned", "lane 5]"}},
        {"misaligned cp.async destination", run_cp_dst, {"cp.async: destination not 16-byte aligned", "k_cp_async_misaligned"}},
        {"misaligned cp.async source", run_cp_src, {"cp.async: source not 16-byte aligned", "k_cp_async_misaligned"}},
        {"mma with half a warp", run_mma_partial, {"mma.sync.m16n8k16.bf16: only lanes 0x0000ffff", "test_tensorcore.cu:"}},
    };
    for (const Case& c : cases) {
        Outcome o = in_child(c.fn);
        const bool ok = o.signal == SIGABRT && o.err.find(c.msg[0]) != std::string::npos &&
                        o.err.find(c.msg[1]) != std::string::npos;
        CHECK(ok, "%s must trap naming the op (signal %d, stderr: %s)", c.what, o.signal, o.err.c_str());
        printf("  %-40s %s\n", c.what, ok ? "traps" : "NOT CAUGHT");
    }
    Outcome o = in_child(run_cp_ok);
    CHECK(o.signal == 0, "the aligned cp.async variant runs (signal %d: %s)", o.signal, o.err.c_str());
    cudaFree(g_buf);
}
#endif

int main(void) {
#ifndef CUEMU
    if (!have_device()) return 0;
#endif
    printf("mma.sync m16n8k16 (two warps, C accumulated):\n");
    test_mma<__nv_bfloat16>("mma bf16 x bf16 -> f32");
    test_mma<__half>("mma f16 x f16 -> f32");
    printf("ldmatrix (rows handed out in permuted lane order):\n");
    test_ldmatrix();
    test_ldmatrix_mma();
    printf("cp.async:\n");
    test_cp_async();
    test_pipeline();
#ifdef CUEMU
    printf("traps:\n");
    test_traps();
#endif
    test_exp2_approx();
    return test_summary();
}
