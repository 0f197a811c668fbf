/*
 * Helpers shared by the op tests that run on any backend (cpu, or the CUDA kernels on the emulator):
 * reproducible random inputs (SplitMix64, independent of libc; each test file may pick its stream with
 * TEST_RNG_SEED before including this) and backend buffers created from host arrays and read back.
 */
#ifndef QSTAR_TEST_BACKEND_TEST_H
#define QSTAR_TEST_BACKEND_TEST_H

#include <stdint.h>
#include <stdlib.h>

#include "kernels/ops.h"

#ifndef TEST_RNG_SEED
#define TEST_RNG_SEED 0x9E3779B97F4A7C15ull
#endif

static uint64_t rng_state = TEST_RNG_SEED;

static inline double urand(void) {  // [0, 1)
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

static inline void fill(float* x, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * (float)urand();
}

static inline float* hnew(size_t n, float lo, float hi) {  // host array of uniform random floats
    float* x = malloc(sizeof(float) * (n ? n : 1));
    fill(x, n, lo, hi);
    return x;
}

static inline void* dnew(const Backend* be, const void* host, size_t bytes) {  // backend buffer, optionally uploaded
    void* d = be->alloc(bytes);
    if (host) be->upload(d, host, bytes);
    return d;
}

static inline void dget(const Backend* be, void* host, const void* dev, size_t bytes) {
    be->sync();
    be->download(host, dev, bytes);
}

#endif
