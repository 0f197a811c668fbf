/*
 * The CPU backend's one vector type, sized to the target it is compiled for: 16 floats with AVX-512,
 * 8 with AVX (AVX2/FMA), 4 with SSE or NEON, and 4 in plain C elsewhere (GCC and clang then lower the
 * vector to scalar code). A kernel written with `vfloat` and the helpers here builds for every target
 * without an #if of its own; its results differ between targets only in the order its sums are added.
 * A vector wider than the target's registers would change the calling convention (GCC's -Wpsabi) and
 * could not be pinned to one register, so the width always follows the compiler's -march.
 * VREGS is how many vector registers the target has, for kernels that size their register blocks.
 */
#ifndef QSTAR_CPU_SIMD_H
#define QSTAR_CPU_SIMD_H

#include <string.h>

#if defined(__AVX512F__)
#define VLANES 16
#define VREGS 32
#elif defined(__AVX__)
#define VLANES 8
#define VREGS 16
#elif defined(__SSE__) && defined(__x86_64__)
#define VLANES 4
#define VREGS 16
#elif defined(__ARM_NEON) && defined(__aarch64__)
#define VLANES 4
#define VREGS 32
#else
#define VLANES 4
#define VREGS 16  // a guess: the compiler lowers the vector to scalars and allocates them itself
#endif

// VPIN(v) pins a loaded vector to a register: without it the compiler folds the load into every FMA
// that uses the vector, and a loop meant to reuse each load becomes bound by loads. An empty asm that
// "changes" v in a vector register ("v" on x86, "w" on aarch64); nothing where there is no such register.
#if defined(__x86_64__) && defined(__SSE__)
#define VPIN(v) __asm__("" : "+v"(v))
#elif defined(__aarch64__) && defined(__ARM_NEON)
#define VPIN(v) __asm__("" : "+w"(v))
#else
#define VPIN(v) (void)0
#endif

typedef float vfloat __attribute__((vector_size(VLANES * sizeof(float))));

static inline vfloat vload(const float* p) {
    vfloat v;
    memcpy(&v, p, sizeof v);
    return v;
}

// VSHUFFLE(a, b, i0, i1, …): lanes of a (0 … VLANES−1) and b (VLANES …) picked by constant indices; the
// spelling differs between GCC (before 12) and clang, the instruction does not.
typedef int vint __attribute__((vector_size(VLANES * sizeof(int))));
#if defined(__clang__)
#define VSHUFFLE(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define VSHUFFLE(a, b, ...) __builtin_shuffle(a, b, (vint){__VA_ARGS__})
#endif
// One level of a lane tree for two vectors at once: lanes l and l+w of each group of 2w lanes of a, then
// of b, added (LO lists the l, HI the l+w); the result holds a's VLANES/2 sums, then b's.
#define VFOLD(a, b, LO, HI) (VSHUFFLE(a, b, LO) + VSHUFFLE(a, b, HI))

// Lanes 0..3 of vsum4(v): the lane sums of v[0..3], each added in the tree that halves VLANES lanes
// (lane l with l+VLANES/2, then l+VLANES/4, … l+1), as vsum_lanes does for one array.
#if VLANES == 16
#define LO8 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define HI8 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define LO4 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27
#define HI4 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31
#define LO2 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29
#define HI2 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31
#define LO1 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define HI1 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
static inline vfloat vsum4(const vfloat* v) {
    const vfloat c = VFOLD(VFOLD(v[0], v[1], LO8, HI8), VFOLD(v[2], v[3], LO8, HI8), LO4, HI4);
    const vfloat d = VFOLD(c, c, LO2, HI2);
    return VFOLD(d, d, LO1, HI1);
}
#elif VLANES == 8
#define LO4 0, 1, 2, 3, 8, 9, 10, 11
#define HI4 4, 5, 6, 7, 12, 13, 14, 15
#define LO2 0, 1, 4, 5, 8, 9, 12, 13
#define HI2 2, 3, 6, 7, 10, 11, 14, 15
#define LO1 0, 2, 4, 6, 8, 10, 12, 14
#define HI1 1, 3, 5, 7, 9, 11, 13, 15
static inline vfloat vsum4(const vfloat* v) {
    const vfloat c = VFOLD(VFOLD(v[0], v[1], LO4, HI4), VFOLD(v[2], v[3], LO4, HI4), LO2, HI2);
    return VFOLD(c, c, LO1, HI1);
}
#else
#define LO2 0, 1, 4, 5
#define HI2 2, 3, 6, 7
#define LO1 0, 2, 4, 6
#define HI1 1, 3, 5, 7
static inline vfloat vsum4(const vfloat* v) {
    return VFOLD(VFOLD(v[0], v[1], LO2, HI2), VFOLD(v[2], v[3], LO2, HI2), LO1, HI1);
}
#endif
#undef LO8
#undef HI8
#undef LO4
#undef HI4
#undef LO2
#undef HI2
#undef LO1
#undef HI1

// The sum of VLANES floats in vsum4's tree.
static inline float vsum_lanes(float* v) {
    for (int w = VLANES / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) v[l] += v[l + w];
    return v[0];
}

// The largest of m and x[0..n); NaNs never win. VLANES running maxima, an elementwise select that GCC
// and clang both turn into vector max instructions: the plain loop `m = x[i] > m ? x[i] : m` under
// `omp simd reduction(max)` is one GCC vectorizes and clang 14 refuses (it vectorizes a float max
// reduction only when NaNs are ruled out), reporting the failed pragma as a warning.
static inline float vmax_of(const float* x, int n, float m) {
    float lane[VLANES];
    for (int l = 0; l < VLANES; l++) lane[l] = m;
    int i = 0;
    for (; i + VLANES <= n; i += VLANES)
        for (int l = 0; l < VLANES; l++) lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    for (int l = 0; l < VLANES; l++) m = lane[l] > m ? lane[l] : m;
    return m;
}

#endif
