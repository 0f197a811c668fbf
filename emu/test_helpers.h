/*
 * test_helpers.h — shared by the emulator's own tests (emu/test_*.cu): the CHECK harness
 * from tests/check.h plus small host-side helpers to move arrays to and from device memory.
 * Everything here is ordinary CUDA host code, so the same test sources also compile with nvcc
 * (tests/test_emu_nvcc.sh proves that the kernels are real CUDA).
 */
#ifndef QSTAR_EMU_TEST_HELPERS_H
#define QSTAR_EMU_TEST_HELPERS_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "../tests/check.h"
#include "../kernels/cuda/portable.h"

#define FULL_MASK 0xffffffffu
#define CU_OK(call) CHECK((call) == cudaSuccess, "%s failed", #call)

template <class T>
static T* to_device(const std::vector<T>& h) {
    T* d = nullptr;
    cudaMalloc((void**)&d, h.size() * sizeof(T));
    cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
    return d;
}
template <class T>
static T* device_zeros(size_t n) {
    T* d = nullptr;
    cudaMalloc((void**)&d, n * sizeof(T));
    cudaMemset(d, 0, n * sizeof(T));
    return d;
}
template <class T>
static std::vector<T> to_host(const T* d, size_t n) {
    std::vector<T> h(n);
    cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
}

/* a test program built with nvcc and run where there is no GPU says so and passes nothing */
static inline bool have_device(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("skipped: no CUDA device\n0 passed, 0 failed\n");
        return false;
    }
    return true;
}

#ifdef CUEMU
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

/* What a child process running an emulator test case did: the signal that ended it (0 if it exited),
 * its exit code, and everything it wrote to stderr (the emulator's reports). */
struct Outcome {
    int signal;
    int code;
    std::string err;
};

/* Runs fn in a forked child with stderr captured and 20 s to finish: the death tests of the emulator's
 * checks (traps, deadlock and guard-zone reports abort the child). exit, not _exit, so atexit handlers
 * such as CUEMU_MEMREPORT's still print. */
static inline Outcome in_child(void (*fn)(void)) {
    int p[2];
    Outcome o{0, 0, ""};
    if (pipe(p) != 0) return o;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        alarm(20);
        fn();
        cudaDeviceSynchronize();
        exit(0);
    }
    close(p[1]);
    char buf[4096];
    ssize_t r;
    while ((r = read(p[0], buf, sizeof buf)) > 0) o.err.append(buf, (size_t)r);
    close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) o.signal = WTERMSIG(status);
    else o.code = WEXITSTATUS(status);
    return o;
}
#endif

#endif
