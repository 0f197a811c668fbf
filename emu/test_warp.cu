/*
 * test_warp.cu — warp-level semantics of the CPU emulator: shuffles (xor/down/up/idx) with widths
 * 32/16/8/4 and several value types, ballot/any/all, __reduce_*_sync, __match_any/all_sync,
 * __syncwarp ordering shared-memory traffic, partial warps and lanes that exited, __activemask.
 * Every expected value is computed on the host from CUDA's documented rules (segment of `width`
 * lanes; up/down past the segment edge and xor into a later segment return the caller's own value).
 */
#include "test_helpers.h"

__global__ void k_xor_sum(const int* in, int* out, int width) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int v = in[i];
    for (int o = width / 2; o > 0; o /= 2) v += __shfl_xor_sync(FULL_MASK, v, o, width);
    out[i] = v;
}

__global__ void k_down_sum(const int* in, int* out, int width) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int v = in[i];
    for (int o = width / 2; o > 0; o /= 2) v += __shfl_down_sync(FULL_MASK, v, o, width);
    out[i] = v;
}

__global__ void k_up_scan(const int* in, int* out, int width) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int seg_lane = (threadIdx.x % 32) % width;
    int v = in[i];
    for (int o = 1; o < width; o *= 2) {
        int t = __shfl_up_sync(FULL_MASK, v, o, width);
        if (seg_lane >= o) v += t;
    }
    out[i] = v;
}

__global__ void k_idx(const int* in, int* out, int src, int width) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    out[i] = __shfl_sync(FULL_MASK, in[i], src, width);
}

/* one warp: float/double/long long/unsigned sums, __half and bf16 broadcasts */
__global__ void k_types(const float* f, float* fo, double* dout, long long* llo, unsigned* uo, float* ho, float* bo) {
    int lane = threadIdx.x;
    float x = f[lane];
    double d = (double)f[lane] * 0.5;
    long long ll = (long long)lane << 33;
    unsigned u = 1u << lane;
    for (int o = 16; o > 0; o /= 2) {
        x += __shfl_xor_sync(FULL_MASK, x, o);
        d += __shfl_down_sync(FULL_MASK, d, o);
        ll += __shfl_xor_sync(FULL_MASK, ll, o);
        u |= __shfl_xor_sync(FULL_MASK, u, o);
    }
    __half h = __float2half(f[lane]);
    __nv_bfloat16 b = __float2bfloat16(f[lane]);
    h = __shfl_sync(FULL_MASK, h, 7);
    b = __shfl_up_sync(FULL_MASK, b, 1);
    fo[lane] = x;
    dout[lane] = d;
    llo[lane] = ll;
    uo[lane] = u;
    ho[lane] = __half2float(h);
    bo[lane] = __bfloat162float(b);
}

__global__ void k_votes(const int* in, unsigned* ballot, int* any, int* all, unsigned* half_ballot) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int lane = threadIdx.x % 32;
    int p = in[i];
    ballot[i] = __ballot_sync(FULL_MASK, p & 1);
    any[i] = __any_sync(FULL_MASK, p > 40);
    all[i] = __all_sync(FULL_MASK, p >= 0);
    half_ballot[i] = 0;
    if (lane < 16) half_ballot[i] = __ballot_sync(0x0000ffffu, p & 2);
}

__global__ void k_reduce(const int* in, int* add, int* mn, int* mx, unsigned* umn, unsigned* bits) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int v = in[i];
    add[i] = __reduce_add_sync(FULL_MASK, v);
    mn[i] = __reduce_min_sync(FULL_MASK, v);
    mx[i] = __reduce_max_sync(FULL_MASK, v);
    umn[i] = __reduce_min_sync(FULL_MASK, (unsigned)v);
    unsigned u = 1u << (threadIdx.x % 32);
    bits[i] = __reduce_or_sync(FULL_MASK, u) ^ __reduce_and_sync(FULL_MASK, u) ^ __reduce_xor_sync(FULL_MASK, u & 0xff);
}

__global__ void k_match(unsigned* any_mask, unsigned* all_mask, int* all_pred) {
    int lane = threadIdx.x % 32;
    any_mask[threadIdx.x] = __match_any_sync(FULL_MASK, lane % 4);
    int pred = -1;
    all_mask[threadIdx.x] = __match_all_sync(FULL_MASK, threadIdx.x < 32 ? 5 : lane, &pred);
    all_pred[threadIdx.x] = pred;
}

/* lanes publish through shared memory; __syncwarp orders the writes before the reads */
__global__ void k_syncwarp_reverse(const int* in, int* out) {
    __shared__ int buf[4][32];
    int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    for (int round = 0; round < 3; round++) {
        buf[w][lane] = in[i] + round;
        __syncwarp();
        int v = buf[w][31 - lane];
        __syncwarp();
        if (round == 2) out[i] = v;
    }
}

/* lanes 20..31 leave; the rest reduce with the mask a ballot gave them */
__global__ void k_exited(const int* in, int* out, unsigned* active) {
    int lane = threadIdx.x % 32;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned m = __ballot_sync(FULL_MASK, lane < 20);
    if (lane >= 20) return;
    int v = in[i];
    for (int o = 16; o > 0; o /= 2) {
        int t = __shfl_down_sync(m, v, o);
        if (lane + o < 20) v += t;
    }
    out[i] = v;
    active[i] = __activemask();
}

/* blockDim 48: the second warp has 16 lanes; lanes that do not exist count as exited, so the full
 * mask still works (each 16-lane segment reduces among lanes that exist) */
__global__ void k_partial(const int* in, int* out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int v = in[i];
    for (int o = 8; o > 0; o /= 2) v += __shfl_xor_sync(FULL_MASK, v, o, 16);
    out[i] = v;
}

__global__ void k_xor_one(const int* in, int* out, int lane_mask, int width) {
    out[threadIdx.x] = __shfl_xor_sync(FULL_MASK, in[threadIdx.x], lane_mask, width);
}

/* CPU model of the documented shuffle rules */
static int src_lane(int kind, int lane, int arg, int width) {
    int base = lane & ~(width - 1);
    int s;
    switch (kind) {
    case 0: return base + (arg & (width - 1));
    case 1: s = lane - arg; return s < base ? lane : s;
    case 2: s = lane + arg; return s >= base + width ? lane : s;
    default: s = lane ^ arg; return s >= base + width ? lane : s;
    }
}

int main(void) {
    if (!have_device()) return 0;
    const int N = 256; /* 2 blocks x 128 threads */
    std::vector<int> in(N);
    for (int i = 0; i < N; i++) in[i] = (i * 37 + 11) % 97 - 20;
    int* d_in = to_device(in);
    int* d_out = device_zeros<int>(N);

    const int widths[] = {32, 16, 8, 4};
    for (int width : widths) {
        LAUNCH(k_xor_sum, 2, 128, 0, 0, d_in, d_out, width);
        std::vector<int> out = to_host(d_out, N);
        int bad = 0;
        for (int i = 0; i < N; i++) {
            int base = i & ~(width - 1), s = 0;
            for (int j = 0; j < width; j++) s += in[base + j];
            bad += out[i] != s;
        }
        CHECK(bad == 0, "xor reduction width %d: %d wrong", width, bad);

        /* down: simulate the whole chain lane by lane */
        LAUNCH(k_down_sum, 2, 128, 0, 0, d_in, d_out, width);
        out = to_host(d_out, N);
        std::vector<int> v(in);
        for (int o = width / 2; o > 0; o /= 2) {
            std::vector<int> nv(v);
            for (int i = 0; i < N; i++) {
                int w0 = i & ~31;
                nv[i] = v[i] + v[w0 + src_lane(2, i - w0, o, width)];
            }
            v = nv;
        }
        bad = 0;
        for (int i = 0; i < N; i++) bad += out[i] != v[i];
        CHECK(bad == 0, "down reduction width %d: %d wrong", width, bad);
        CHECK(out[width - 1] == width * in[width - 1], "down: last lane of a segment only adds itself (width %d)",
              width);

        LAUNCH(k_up_scan, 2, 128, 0, 0, d_in, d_out, width);
        out = to_host(d_out, N);
        bad = 0;
        for (int i = 0; i < N; i++) {
            int base = i & ~(width - 1), s = 0;
            for (int j = base; j <= i; j++) s += in[j];
            bad += out[i] != s;
        }
        CHECK(bad == 0, "up scan width %d: %d wrong", width, bad);

        const int srcs[] = {0, 3, width - 1, width + 1, 31};
        for (int src : srcs) {
            LAUNCH(k_idx, 2, 128, 0, 0, d_in, d_out, src, width);
            out = to_host(d_out, N);
            bad = 0;
            for (int i = 0; i < N; i++) {
                int w0 = i & ~31;
                bad += out[i] != in[w0 + src_lane(0, i - w0, src, width)];
            }
            CHECK(bad == 0, "__shfl_sync src %d width %d: %d wrong", src, width, bad);
        }
    }

    /* a negative source lane wraps inside the segment; xor may reach an earlier segment but one
     * into a later segment returns the caller's own value */
    {
        std::vector<int> one(32);
        for (int i = 0; i < 32; i++) one[i] = i;
        int* d1 = to_device(one);
        int* o1 = device_zeros<int>(32);
        LAUNCH(k_idx, 1, 32, 0, 0, d1, o1, -1, 8); /* -1 & 7 = 7: lane 7 of each 8-segment */
        std::vector<int> r = to_host(o1, 32);
        CHECK(r[0] == 7 && r[8] == 15 && r[31] == 31, "__shfl_sync with a negative source wraps in the segment");
        LAUNCH(k_xor_one, 1, 32, 0, 0, d1, o1, 8, 4);
        r = to_host(o1, 32);
        CHECK(r[1] == 1 && r[9] == 1 && r[13] == 5 && r[4] == 4, "xor across segments: %d %d %d %d", r[1], r[9],
              r[13], r[4]);
        cudaFree(d1);
        cudaFree(o1);
    }

    /* value types */
    {
        std::vector<float> f(32);
        for (int i = 0; i < 32; i++) f[i] = (float)(i - 9) * 0.25f;
        float* df = to_device(f);
        float *fo = device_zeros<float>(32), *ho = device_zeros<float>(32), *bo = device_zeros<float>(32);
        double* dd = device_zeros<double>(32);
        long long* dl = device_zeros<long long>(32);
        unsigned* du = device_zeros<unsigned>(32);
        LAUNCH(k_types, 1, 32, 0, 0, df, fo, dd, dl, du, ho, bo);
        std::vector<float> rf = to_host(fo, 32), rh = to_host(ho, 32), rb = to_host(bo, 32);
        std::vector<double> rd = to_host(dd, 32);
        std::vector<long long> rl = to_host(dl, 32);
        std::vector<unsigned> ru = to_host(du, 32);
        float fs = 0;
        for (int i = 0; i < 32; i++) fs += f[i];
        CHECK(rf[0] == fs && rf[31] == fs, "float xor sum %g vs %g", rf[0], fs);
        CHECK(rd[0] == 0.5 * fs, "double down sum lane 0: %g vs %g", rd[0], 0.5 * fs);
        CHECK(rl[5] == ((long long)496 << 33), "long long xor sum (needs 64-bit shuffles)");
        CHECK(ru[17] == 0xffffffffu, "unsigned or-reduction 0x%08x", ru[17]);
        CHECK(rh[3] == f[7], "__half broadcast %g vs %g", rh[3], f[7]);
        CHECK(rb[0] == f[0] && rb[12] == f[11], "bf16 shfl_up: %g %g", rb[0], rb[12]);
        cudaFree(df); cudaFree(fo); cudaFree(ho); cudaFree(bo); cudaFree(dd); cudaFree(dl); cudaFree(du);
    }

    /* votes */
    {
        unsigned *bal = device_zeros<unsigned>(N), *hb = device_zeros<unsigned>(N);
        int *any = device_zeros<int>(N), *all = device_zeros<int>(N);
        LAUNCH(k_votes, 2, 128, 0, 0, d_in, bal, any, all, hb);
        std::vector<unsigned> rb = to_host(bal, N), rhb = to_host(hb, N);
        std::vector<int> ra = to_host(any, N), rl = to_host(all, N);
        int bad = 0;
        for (int w = 0; w < N / 32; w++) {
            unsigned eb = 0, ehb = 0;
            int ea = 0, el = 1;
            for (int l = 0; l < 32; l++) {
                int p = in[w * 32 + l];
                if (p & 1) eb |= 1u << l;
                if (l < 16 && (p & 2)) ehb |= 1u << l;
                ea |= p > 40;
                el &= p >= 0;
            }
            for (int l = 0; l < 32; l++) {
                int i = w * 32 + l;
                bad += rb[i] != eb || ra[i] != ea || rl[i] != el || rhb[i] != (l < 16 ? ehb : 0u);
            }
        }
        CHECK(bad == 0, "ballot/any/all: %d wrong", bad);
        cudaFree(bal); cudaFree(hb); cudaFree(any); cudaFree(all);
    }

    /* __reduce_*_sync */
    {
        int *add = device_zeros<int>(N), *mn = device_zeros<int>(N), *mx = device_zeros<int>(N);
        unsigned *umn = device_zeros<unsigned>(N), *bits = device_zeros<unsigned>(N);
        LAUNCH(k_reduce, 2, 128, 0, 0, d_in, add, mn, mx, umn, bits);
        std::vector<int> ra = to_host(add, N), rmn = to_host(mn, N), rmx = to_host(mx, N);
        std::vector<unsigned> ru = to_host(umn, N), rbits = to_host(bits, N);
        int bad = 0;
        for (int w = 0; w < N / 32; w++) {
            int s = 0, lo = in[w * 32], hi = lo;
            unsigned ulo = (unsigned)lo;
            for (int l = 0; l < 32; l++) {
                int v = in[w * 32 + l];
                s += v;
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
                ulo = (unsigned)v < ulo ? (unsigned)v : ulo;
            }
            for (int l = 0; l < 32; l++) {
                int i = w * 32 + l;
                bad += ra[i] != s || rmn[i] != lo || rmx[i] != hi || ru[i] != ulo || rbits[i] != (0xffffffffu ^ 0xffu);
            }
        }
        CHECK(bad == 0, "__reduce_*_sync: %d wrong", bad);
        cudaFree(add); cudaFree(mn); cudaFree(mx); cudaFree(umn); cudaFree(bits);
    }

    /* __match_any_sync / __match_all_sync: warp 0 all equal, warp 1 all different */
    {
        unsigned *am = device_zeros<unsigned>(64), *lm = device_zeros<unsigned>(64);
        int* lp = device_zeros<int>(64);
        LAUNCH(k_match, 1, 64, 0, 0, am, lm, lp);
        std::vector<unsigned> ram = to_host(am, 64), rlm = to_host(lm, 64);
        std::vector<int> rlp = to_host(lp, 64);
        CHECK(ram[0] == 0x11111111u && ram[6] == 0x44444444u && ram[33] == 0x22222222u, "match_any 0x%08x 0x%08x",
              ram[0], ram[6]);
        CHECK(rlm[0] == 0xffffffffu && rlp[0] == 1 && rlm[40] == 0 && rlp[40] == 0, "match_all");
        cudaFree(am); cudaFree(lm); cudaFree(lp);
    }

    /* __syncwarp + shared memory */
    {
        LAUNCH(k_syncwarp_reverse, 2, 128, 0, 0, d_in, d_out);
        std::vector<int> out = to_host(d_out, N);
        int bad = 0;
        for (int i = 0; i < N; i++) bad += out[i] != in[(i & ~31) + 31 - (i & 31)] + 2;
        CHECK(bad == 0, "__syncwarp reverse: %d wrong", bad);
    }

    /* exited lanes and partial warps */
    {
        unsigned* act = device_zeros<unsigned>(N);
        cudaMemset(d_out, 0, N * sizeof(int));
        LAUNCH(k_exited, 2, 128, 0, 0, d_in, d_out, act);
        std::vector<int> out = to_host(d_out, N);
        std::vector<unsigned> ra = to_host(act, N);
        int bad = 0;
        for (int w = 0; w < N / 32; w++) {
            int s = 0;
            for (int l = 0; l < 20; l++) s += in[w * 32 + l];
            bad += out[w * 32] != s || out[w * 32 + 25] != 0;
        }
        CHECK(bad == 0, "reduction after lanes exited: %d wrong", bad);
        CHECK(ra[3] == 0x000fffffu, "__activemask after lanes 20..31 exited: 0x%08x", ra[3]);

        LAUNCH(k_partial, 1, 48, 0, 0, d_in, d_out);
        out = to_host(d_out, 48);
        int s[3] = {0, 0, 0};
        for (int i = 0; i < 48; i++) s[i / 16] += in[i];
        CHECK(out[0] == s[0] && out[31] == s[1] && out[32] == s[2] && out[47] == s[2],
              "partial warp (block of 48): %d %d %d vs %d %d %d", out[0], out[31], out[40], s[0], s[1], s[2]);
        cudaFree(act);
    }
    CU_OK(cudaGetLastError());
    cudaFree(d_in);
    cudaFree(d_out);
    return test_summary();
}
