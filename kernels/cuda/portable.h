/*
 * portable.h — the two spellings that differ between the real CUDA build (nvcc) and the CPU
 * emulator build (g++ -include emu/cuemu.h). Kernel sources use these macros instead of the
 * raw syntax so that one source compiles both ways:
 *
 *   DYN_SMEM(T, name);   inside a kernel: `T* name` points at the block's dynamic shared memory
 *                        (the size given at launch). g++ cannot map `extern __shared__ T name[]`
 *                        generically, because the name differs per kernel. As in CUDA, every
 *                        DYN_SMEM in a kernel points at the same start (16-byte aligned).
 *   LAUNCH(kernel, grid, block, smem, stream, args...);
 *                        kernel<<<grid, block, smem, stream>>>(args...) — g++ cannot parse <<<>>>.
 *                        Launch errors are reported through cudaGetLastError(), as with <<<>>>.
 *                        A template kernel whose name contains a comma must be parenthesised:
 *                        LAUNCH((k<float, 4>), ...).
 *
 * Everything else (__shared__, __syncthreads, __shfl_*_sync, atomics, ...) is spelled as usual.
 */
#ifndef QSTAR_CUDA_PORTABLE_H
#define QSTAR_CUDA_PORTABLE_H

#if defined(__CUDACC__)

#define DYN_SMEM(T, name)                                           \
    extern __shared__ __align__(16) unsigned char name##_raw[];     \
    T* name = reinterpret_cast<T*>(name##_raw)
#define LAUNCH(kernel, grid, block, smem, stream, ...) \
    kernel<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)

#elif defined(CUEMU)

#define DYN_SMEM(T, name) T* name = reinterpret_cast<T*>(::cuemu::t_dynsmem)
#define LAUNCH(kernel, grid, block, smem, stream, ...) \
    ::cuemu::launch(#kernel, kernel, dim3(grid), dim3(block), (size_t)(smem), (stream), ##__VA_ARGS__)

#else
#error "kernels/cuda/portable.h: compile with nvcc, or with g++ -include emu/cuemu.h (the CPU emulator)"
#endif

#endif /* QSTAR_CUDA_PORTABLE_H */
