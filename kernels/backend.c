/*
 * The backend registry: maps the --device name to a Backend table. The CUDA table is linked in only
 * by CUDA builds and the emulator table only by the test build, so each registers through a weak
 * symbol and the plain CPU build carries neither.
 */
#include <stddef.h>
#include <string.h>

#include "kernels/ops.h"

extern const Backend backend_cuda __attribute__((weak));
extern const Backend backend_emu __attribute__((weak));

const Backend* backend_get(const char* name) {
    if (!strcmp(name, "cpu")) return &backend_cpu;
    if (!strcmp(name, "cuda") && &backend_cuda != NULL) return &backend_cuda;
    if (!strcmp(name, "emu") && &backend_emu != NULL) return &backend_emu;
    return NULL;
}

const char* backend_names(void) {
    if (&backend_cuda != NULL && &backend_emu != NULL) return "cpu, cuda, emu";
    if (&backend_cuda != NULL) return "cpu, cuda";
    if (&backend_emu != NULL) return "cpu, emu";
    return "cpu";
}
