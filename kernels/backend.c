/*
 * The backend registry: maps the --device name to a Backend table. The CUDA table is linked in only
 * by CUDA builds and the emulator table only by the test build, so each registers through a weak
 * symbol and the plain CPU build carries neither.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bf16.h"
#include "common/util.h"
#include "kernels/ops.h"

extern const Backend backend_cuda __attribute__((weak));
extern const Backend backend_cuda_bf16 __attribute__((weak));
extern const Backend backend_emu __attribute__((weak));
extern const Backend backend_emu_bf16 __attribute__((weak));

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
    const Backend* tables[] = {&backend_cpu, &backend_cuda, &backend_cuda_bf16, &backend_emu, &backend_emu_bf16};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++)
        if (tables[i] && !strcmp(name, tables[i]->name)) return complete(tables[i]);
    return NULL;
}

const Backend* backend_select(const char* device, const char* precision) {
    if (!precision || !*precision) precision = strcmp(device, "cuda") ? "fp32" : "bf16";
    if (strcmp(precision, "fp32") && strcmp(precision, "bf16"))
        fatal("--precision %s: expected fp32 or bf16", precision);
    if (!strcmp(device, "cpu") && !strcmp(precision, "bf16"))
        fatal("--precision bf16 needs --device cuda (or emu): the cpu backend is the fp32 reference");
    char name[64];
    snprintf(name, sizeof name, "%s%s", device, strcmp(precision, "bf16") ? "" : "-bf16");
    const Backend* be = strchr(device, '-') ? NULL : backend_get(name);
    if (!be) fatal("--device %s: unknown or not built into this binary (available: %s)", device, backend_names());
    return be;
}

void x_upload(const Backend* be, floatX* dst, const float* src, size_t n) {
    if (be->x_bytes == sizeof(float)) return be->upload(dst, src, n * sizeof(float));
    uint16_t* h = xmalloc(2 * (n ? n : 1));
    for (size_t i = 0; i < n; i++) h[i] = bf16_from_float(src[i]);
    be->upload(dst, h, 2 * n);  // the upload stages the bytes: h may go at once
    free(h);
}

void x_download(const Backend* be, float* dst, const floatX* src, size_t n) {
    if (be->x_bytes == sizeof(float)) return be->download(dst, src, n * sizeof(float));
    uint16_t* h = xmalloc(2 * (n ? n : 1));
    be->download(h, src, 2 * n);
    for (size_t i = 0; i < n; i++) dst[i] = bf16_to_float(h[i]);
    free(h);
}

const char* backend_names(void) {
    if (&backend_cuda != NULL && &backend_emu != NULL) return "cpu, cuda, emu";
    if (&backend_cuda != NULL) return "cpu, cuda";
    if (&backend_emu != NULL) return "cpu, emu";
    return "cpu";
}
