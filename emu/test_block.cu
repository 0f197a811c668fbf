/*
 * test_block.cu — block-level semantics of the CPU emulator: __syncthreads in loops,
 * __syncthreads_count/and/or, static and dynamic shared memory (DYN_SMEM), 2-D/3-D grids and
 * blocks, barriers after some threads exited, a template kernel launched through LAUNCH, and a
 * tiled SGEMM that must match a CPU loop bit for bit on small-integer data (every partial sum is
 * an exactly representable integer, so the summation order cannot matter).
 */
#include <chrono>

#include "test_helpers.h"

/* warp shuffles -> static shared memory -> warp 0 again -> one float atomic per block */
__global__ void k_block_sum(const float* in, float* out, int n) {
    __shared__ float warp_sums[32];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? in[i] : 0.0f;
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(FULL_MASK, v, o);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        int nw = blockDim.x / 32;
        v = lane < nw ? warp_sums[lane] : 0.0f;
        for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(FULL_MASK, v, o);
        if (lane == 0) atomicAdd(out, v);
    }
}

/* tree reduction in dynamic shared memory: a barrier inside a loop */
__global__ void k_tree_sum(const int* in, int* out) {
    DYN_SMEM(int, sm);
    DYN_SMEM(unsigned char, bytes); /* same start address, as extern __shared__ arrays in CUDA */
    unsigned t = threadIdx.x;
    sm[t] = in[blockIdx.x * blockDim.x + t];
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) sm[t] += sm[t + s];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = sm[0] + (bytes == (unsigned char*)sm ? 0 : 1000000);
}

__global__ void k_sync_votes(const int* in, int* counts, int* ands, int* ors) {
    int t = threadIdx.x;
    for (int round = 0; round < 4; round++) {
        int v = in[t] + round;
        int c = __syncthreads_count(v % 3 == 0);
        int a = __syncthreads_and(v >= round);
        int o = __syncthreads_or(v == 5);
        if (t == 0) {
            counts[round] = c;
            ands[round] = a;
            ors[round] = o;
        }
    }
}

/* threads >= 100 leave at once; the others still meet at barriers (exited threads count as
 * arrived, the Volta+ rule) */
__global__ void k_barrier_after_exit(int* out) {
    __shared__ int acc[128];
    int t = threadIdx.x;
    if (t >= 100) return;
    acc[t] = t;
    __syncthreads();
    for (int s = 64; s > 0; s >>= 1) {
        if (t < s && t + s < 100) acc[t] += acc[t + s];
        __syncthreads();
    }
    if (t == 0) out[0] = acc[0];
}

__global__ void k_dims(unsigned* out) {
    unsigned tx = threadIdx.x, ty = threadIdx.y, tz = threadIdx.z;
    unsigned bx = blockIdx.x, by = blockIdx.y, bz = blockIdx.z;
    unsigned block_lin = bx + by * gridDim.x + bz * gridDim.x * gridDim.y;
    unsigned thread_lin = tx + ty * blockDim.x + tz * blockDim.x * blockDim.y;
    unsigned g = block_lin * (blockDim.x * blockDim.y * blockDim.z) + thread_lin;
    out[g] = (tx << 0) | (ty << 4) | (tz << 8) | (bx << 12) | (by << 16) | (bz << 20) | (gridDim.x << 24) |
             (blockDim.z << 28);
}

template <class T, int SCALE>
__global__ void k_scale(const T* in, T* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i] * (T)SCALE;
}

#define TILE 16
__global__ void k_sgemm(const float* A, const float* B, float* C, int M, int N, int K) {
    /* row-major A (M x K), B (K x N), C (M x N) */
    __shared__ float As[TILE][TILE];
    __shared__ float Bs[TILE][TILE + 1];
    int row = blockIdx.y * TILE + threadIdx.y, col = blockIdx.x * TILE + threadIdx.x;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        int ak = k0 + threadIdx.x, bk = k0 + threadIdx.y;
        As[threadIdx.y][threadIdx.x] = (row < M && ak < K) ? A[row * K + ak] : 0.0f;
        Bs[threadIdx.y][threadIdx.x] = (bk < K && col < N) ? B[bk * N + col] : 0.0f;
        __syncthreads();
#pragma unroll
        for (int k = 0; k < TILE; k++) acc += As[threadIdx.y][k] * Bs[k][threadIdx.x];
        __syncthreads();
    }
    if (row < M && col < N) C[row * N + col] = acc;
}

static double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int main(void) {
    if (!have_device()) return 0;

    /* 64 x 256 block sum */
    {
        const int n = 64 * 256;
        std::vector<float> x(n);
        double ref = 0;
        for (int i = 0; i < n; i++) {
            x[i] = (float)((i * 7919) % 23) - 11.0f;
            ref += x[i];
        }
        float* dx = to_device(x);
        float* dsum = device_zeros<float>(1);
        auto t0 = std::chrono::steady_clock::now();
        LAUNCH(k_block_sum, n / 256, 256, 0, 0, dx, dsum, n);
        double ms = ms_since(t0);
        CU_OK(cudaGetLastError());
        float got = to_host(dsum, 1)[0];
        CHECK(got == (float)ref, "64x256 block sum %g vs %g", got, ref);
        printf("64x256 shuffle+smem+atomic reduction: %.1f ms\n", ms);
        cudaFree(dx);
        cudaFree(dsum);
    }

    /* dynamic shared memory tree reduction, 3 block sizes */
    {
        const int blocks = 5;
        const int sizes[] = {64, 256, 1024};
        for (int bs : sizes) {
            std::vector<int> x(blocks * bs);
            for (size_t i = 0; i < x.size(); i++) x[i] = (int)(i % 17) - 3;
            int* dx = to_device(x);
            int* dout = device_zeros<int>(blocks);
            LAUNCH(k_tree_sum, blocks, bs, bs * sizeof(int), 0, dx, dout);
            CU_OK(cudaGetLastError());
            std::vector<int> out = to_host(dout, blocks);
            int bad = 0;
            for (int b = 0; b < blocks; b++) {
                int s = 0;
                for (int t = 0; t < bs; t++) s += x[b * bs + t];
                bad += out[b] != s;
            }
            CHECK(bad == 0, "dynamic-smem tree sum, block %d: %d wrong (out[0]=%d)", bs, bad, out[0]);
            cudaFree(dx);
            cudaFree(dout);
        }
    }

    /* __syncthreads_count/and/or */
    {
        const int bs = 96;
        std::vector<int> x(bs);
        for (int i = 0; i < bs; i++) x[i] = i % 7;
        int* dx = to_device(x);
        int *c = device_zeros<int>(4), *a = device_zeros<int>(4), *o = device_zeros<int>(4);
        LAUNCH(k_sync_votes, 1, bs, 0, 0, dx, c, a, o);
        std::vector<int> rc = to_host(c, 4), ra = to_host(a, 4), ro = to_host(o, 4);
        int bad = 0;
        for (int r = 0; r < 4; r++) {
            int ec = 0, ea = 1, eo = 0;
            for (int t = 0; t < bs; t++) {
                int v = x[t] + r;
                ec += v % 3 == 0;
                ea &= v >= r;
                eo |= v == 5;
            }
            bad += rc[r] != ec || ra[r] != ea || ro[r] != eo;
        }
        CHECK(bad == 0, "__syncthreads_count/and/or: %d rounds wrong", bad);
        cudaFree(dx); cudaFree(c); cudaFree(a); cudaFree(o);
    }

    /* barrier with exited threads */
    {
        int* d = device_zeros<int>(1);
        LAUNCH(k_barrier_after_exit, 1, 128, 0, 0, d);
        CHECK(to_host(d, 1)[0] == 99 * 100 / 2, "barrier after 28 threads exited: %d", to_host(d, 1)[0]);
        cudaFree(d);
    }

    /* 2-D and 3-D grids and blocks */
    {
        dim3 grid(3, 2, 2), block(4, 3, 2);
        const int total = 3 * 2 * 2 * 4 * 3 * 2;
        unsigned* d = device_zeros<unsigned>(total);
        LAUNCH(k_dims, grid, block, 0, 0, d);
        std::vector<unsigned> out = to_host(d, total);
        int bad = 0, g = 0;
        for (unsigned bz = 0; bz < 2; bz++)
            for (unsigned by = 0; by < 2; by++)
                for (unsigned bx = 0; bx < 3; bx++)
                    for (unsigned tz = 0; tz < 2; tz++)
                        for (unsigned ty = 0; ty < 3; ty++)
                            for (unsigned tx = 0; tx < 4; tx++, g++)
                                bad += out[g] != ((tx) | (ty << 4) | (tz << 8) | (bx << 12) | (by << 16) | (bz << 20) |
                                                  (3u << 24) | (2u << 28));
        CHECK(bad == 0, "3-D grid/block indices: %d wrong", bad);
        cudaFree(d);
    }

    /* a template kernel through LAUNCH (parenthesised because of the comma) */
    {
        std::vector<int> x(100);
        for (int i = 0; i < 100; i++) x[i] = i;
        int* dx = to_device(x);
        int* dy = device_zeros<int>(100);
        LAUNCH((k_scale<int, 3>), 4, 32, 0, 0, dx, dy, 100);
        std::vector<int> y = to_host(dy, 100);
        CHECK(y[0] == 0 && y[99] == 297, "template kernel: %d", y[99]);
        cudaFree(dx);
        cudaFree(dy);
    }

    /* tiled SGEMM, sizes that are not multiples of the tile */
    {
        const int M = 50, N = 37, K = 45;
        std::vector<float> A(M * K), B(K * N), C(M * N, 0.0f);
        for (int i = 0; i < M * K; i++) A[i] = (float)((i * 13) % 9 - 4);
        for (int i = 0; i < K * N; i++) B[i] = (float)((i * 7) % 11 - 5);
        float *dA = to_device(A), *dB = to_device(B), *dC = device_zeros<float>(M * N);
        dim3 block(TILE, TILE), grid((N + TILE - 1) / TILE, (M + TILE - 1) / TILE);
        LAUNCH(k_sgemm, grid, block, 0, 0, dA, dB, dC, M, N, K);
        CU_OK(cudaGetLastError());
        std::vector<float> got = to_host(dC, M * N);
        int bad = 0;
        for (int r = 0; r < M; r++)
            for (int c = 0; c < N; c++) {
                float s = 0.0f;
                for (int k = 0; k < K; k++) s += A[r * K + k] * B[k * N + c];
                bad += got[r * N + c] != s;
            }
        CHECK(bad == 0, "tiled SGEMM %dx%dx%d: %d entries differ", M, N, K, bad);

        /* 128^3 for a timing line */
        const int S = 128;
        std::vector<float> X(S * S);
        for (int i = 0; i < S * S; i++) X[i] = (float)(i % 5 - 2);
        float *dX = to_device(X), *dY = device_zeros<float>(S * S);
        auto t0 = std::chrono::steady_clock::now();
        LAUNCH(k_sgemm, dim3(S / TILE, S / TILE), block, 0, 0, dX, dX, dY, S, S, S);
        printf("tiled SGEMM 128^3 (16384 threads x 16 barriers): %.1f ms\n", ms_since(t0));
        std::vector<float> Y = to_host(dY, S * S);
        float s = 0.0f;
        for (int k = 0; k < S; k++) s += X[5 * S + k] * X[k * S + 77];
        CHECK(Y[5 * S + 77] == s, "SGEMM 128^3 spot check");
        cudaFree(dA); cudaFree(dB); cudaFree(dC); cudaFree(dX); cudaFree(dY);
    }
    return test_summary();
}
