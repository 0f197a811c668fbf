/*
 * The backend registry: maps the --device name to a Backend table. The CUDA table is linked in only
 * by CUDA builds and the emulator table only by the test build, so each registers through a weak
 * symbol and the plain CPU build carries neither.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"

extern const Backend backend_cuda __attribute__((weak));
extern const Backend backend_emu __attribute__((weak));

// Every entry after `name` is a function pointer; a backend that leaves one NULL is a bug, caught
// here rather than as a crash in the middle of a training step.
static const Backend* complete(const Backend* be) {
    const size_t first = offsetof(Backend, alloc), n = (sizeof(Backend) - first) / sizeof(void (*)(void));
    for (size_t i = 0; i < n; i++) {
        void (*fn)(void);
        memcpy(&fn, (const char*)be + first + i * sizeof fn, sizeof fn);
        if (!fn) {
            fprintf(stderr, "qstar: internal error: backend %s lacks op #%zu of kernels/ops.h\n", be->name, i);
            abort();
        }
    }
    return be;
}

const Backend* backend_get(const char* name) {
    if (!strcmp(name, "cpu")) return complete(&backend_cpu);
    if (!strcmp(name, "cuda") && &backend_cuda != NULL) return complete(&backend_cuda);
    if (!strcmp(name, "emu") && &backend_emu != NULL) return complete(&backend_emu);
    return NULL;
}

const char* backend_names(void) {
    if (&backend_cuda != NULL && &backend_emu != NULL) return "cpu, cuda, emu";
    if (&backend_cuda != NULL) return "cpu, cuda";
    if (&backend_emu != NULL) return "cpu, emu";
    return "cpu";
}
