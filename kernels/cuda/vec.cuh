/*
 * 128-bit packed loads and stores for the memory-bound kernels, templated on the element type:
 * Pack<float> holds 4 values and Pack<__nv_bfloat16> 8, one LDG.E.128 / STG.E.128 each. A memory-bound
 * kernel reaches HBM bandwidth only with enough bytes in flight per SM; 16-byte accesses quadruple
 * what one load instruction fetches against the scalar 4-byte loads. Values convert to fp32 on load
 * and back on store (round to nearest even for bf16), so the kernels do fp32 math and accumulation
 * whatever the storage type. A 16-byte access must be 16-byte aligned: kernels take the vector path
 * only where vec_aligned() says the row length and every pointer allow it, and use Pack<T, 1> (plain
 * scalar accesses, the same code) otherwise, or vec_head() to split a misaligned row into a scalar
 * head, an aligned body and a scalar tail. Streaming variants (ld_cs/st_cs, evict-first) are for data
 * read or written once, so it does not push reusable lines out of L2.
 */
#pragma once

#include <cuda_bf16.h>
#include <string.h>

#include "kernels/cuda/common.cuh"

// On the CPU emulator only: each helper reports the bytes it moved (cuemu::count, C_BYTES_READ /
// C_BYTES_WRITTEN; read per launch by bench/cuda and CUEMU_COUNTERS=1). Only accesses through these
// helpers are counted: a kernel's plain scalar loads and stores outside them are not. Compiles to
// nothing for nvcc.
#ifdef CUEMU
#define QSTAR_VEC_COUNT(counter, n) ::cuemu::count(::cuemu::counter, (unsigned long long)(n))
#else
#define QSTAR_VEC_COUNT(counter, n) ((void)0)
#endif


// Elements of T in one 16-byte access.
template <class T>
struct VecWidth {
    static constexpr int value = 16 / (int)sizeof(T);
};

// W consecutive elements of T moved as one access: 16 bytes when W = VecWidth<T>, one element when W = 1.
template <class T, int W = VecWidth<T>::value>
struct alignas(W * sizeof(T) % 16 == 0 ? 16 : sizeof(T)) Pack {
    static constexpr int size = W;
    T e[W];
    __device__ __forceinline__ float operator[](int i) const { return to_float(e[i]); }
    __device__ __forceinline__ void set(int i, float v) { e[i] = from_float<T>(v); }
};

// Whole 16-byte chunks when the pack is a multiple of 16 bytes (Pack<float, 8> for fp32 weights beside
// bf16 activations is two), element by element otherwise. memcpy between the chunk and the pack is a
// register move; a cast of the pack's address would break strict aliasing.
#define QSTAR_PACK_CHUNKS(T, W) ((int)((W) * sizeof(T) % 16 == 0 ? (W) * sizeof(T) / 16 : 0))

template <class T, int W>
__device__ __forceinline__ Pack<T, W> load_pack(const T* p) {
    Pack<T, W> r;
    QSTAR_VEC_COUNT(C_BYTES_READ, W * sizeof(T));
    if constexpr (QSTAR_PACK_CHUNKS(T, W) > 0) {
#pragma unroll
        for (int k = 0; k < QSTAR_PACK_CHUNKS(T, W); k++) {
            const int4 bits = reinterpret_cast<const int4*>(p)[k];
            memcpy(reinterpret_cast<char*>(&r) + 16 * k, &bits, 16);
        }
    } else {
#pragma unroll
        for (int i = 0; i < W; i++) r.e[i] = p[i];
    }
    return r;
}
// Streaming load (evict-first): data read for the last time.
template <class T, int W>
__device__ __forceinline__ Pack<T, W> load_pack_cs(const T* p) {
    Pack<T, W> r;
    QSTAR_VEC_COUNT(C_BYTES_READ, W * sizeof(T));
    if constexpr (QSTAR_PACK_CHUNKS(T, W) > 0) {
#pragma unroll
        for (int k = 0; k < QSTAR_PACK_CHUNKS(T, W); k++) {
            const int4 bits = __ldcs(reinterpret_cast<const int4*>(p) + k);
            memcpy(reinterpret_cast<char*>(&r) + 16 * k, &bits, 16);
        }
    } else {
#pragma unroll
        for (int i = 0; i < W; i++) r.e[i] = p[i];
    }
    return r;
}
template <class T, int W>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, W>& v) {
    QSTAR_VEC_COUNT(C_BYTES_WRITTEN, W * sizeof(T));
    if constexpr (QSTAR_PACK_CHUNKS(T, W) > 0) {
#pragma unroll
        for (int k = 0; k < QSTAR_PACK_CHUNKS(T, W); k++) {
            int4 bits;
            memcpy(&bits, reinterpret_cast<const char*>(&v) + 16 * k, 16);
            reinterpret_cast<int4*>(p)[k] = bits;
        }
    } else {
#pragma unroll
        for (int i = 0; i < W; i++) p[i] = v.e[i];
    }
}
// Streaming store (evict-first): data this kernel does not read again.
template <class T, int W>
__device__ __forceinline__ void store_pack_cs(T* p, const Pack<T, W>& v) {
    QSTAR_VEC_COUNT(C_BYTES_WRITTEN, W * sizeof(T));
    if constexpr (QSTAR_PACK_CHUNKS(T, W) > 0) {
#pragma unroll
        for (int k = 0; k < QSTAR_PACK_CHUNKS(T, W); k++) {
            int4 bits;
            memcpy(&bits, reinterpret_cast<const char*>(&v) + 16 * k, 16);
            __stcs(reinterpret_cast<int4*>(p) + k, bits);
        }
    } else {
#pragma unroll
        for (int i = 0; i < W; i++) p[i] = v.e[i];
    }
}

// Host and device: true when rows of `len` elements of T starting at every pointer given are all
// 16-byte aligned, so the vector path may run over whole rows (null pointers are ignored).
template <class T>
__host__ __device__ inline bool vec_aligned(int len, const void* p0, const void* p1 = nullptr,
                                            const void* p2 = nullptr, const void* p3 = nullptr) {
    if (len % VecWidth<T>::value != 0) return false;
    const void* ps[4] = {p0, p1, p2, p3};
    for (int i = 0; i < 4; i++)
        if ((uintptr_t)ps[i] % 16 != 0) return false;
    return true;
}

// Elements before the first 16-byte boundary at or after p, at most n: a row is processed as a
// scalar head [0, head), whole packs from head on, and a scalar tail after the last whole pack.
template <class T>
__device__ __forceinline__ int vec_head(const T* p, int n) {
    const int head = (int)(((16 - ((uintptr_t)p & 15)) & 15) / sizeof(T));
    return head < n ? head : n;
}
