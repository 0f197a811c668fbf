/*
 * Philox4x32-10, the counter-based random generator of Salmon et al. (2011), written so that the
 * same function compiles for the host (C) and for CUDA device code. Every random number qstar
 * draws is philox(counter, key) for a counter built from what it is for (element index, step, row,
 * slot, thought index): no generator state to carry, identical numbers on every backend and thread
 * count, and resuming a run needs only the step.
 */
#ifndef QSTAR_PHILOX_H
#define QSTAR_PHILOX_H

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define QSTAR_HD __host__ __device__ __forceinline__
#else
#define QSTAR_HD static inline
#endif

typedef struct {
    uint32_t v[4];
} Philox4;

QSTAR_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

// counter: 4 words chosen by the caller; key: 2 words (usually the seed).
QSTAR_HD Philox4 philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = philox_mulhilo(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = philox_mulhilo(0xCD9E8D57u, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    Philox4 r = {{c0, c1, c2, c3}};
    return r;
}

// Uniform in the open interval (0, 1): 2^23 equally spaced midpoints (i + 0.5) / 2^23. Neither end is
// reachable, so both log(u) and log(-log(u)) are finite: with u = 1 the Gumbel noise -log(-log u) is
// +inf and that column wins even when masked. 23 bits, not 24, because (i + 0.5) must stay exact in a
// float's 24-bit significand (with 24 bits, (2^24 - 1 + 0.5) / 2^24 rounds to 1.0f).
QSTAR_HD float philox_uniform(uint32_t x) { return ((float)(x >> 9) + 0.5f) * (1.0f / 8388608.0f); }

// Standard normal from two uniform words (Box-Muller, first output).
QSTAR_HD float philox_normal(uint32_t a, uint32_t b) {
    float u1 = philox_uniform(a), u2 = philox_uniform(b);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.283185307179586f * u2);
}

#endif
