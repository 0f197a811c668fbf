/*
 * libFuzzer harness: one .safetensors file (the 8-byte header length, the JSON header, the data
 * block) through st_open, then every tensor looked up by name and, when small, read raw and as
 * float with its own shape (F32/F16/BF16 converted), as model loading does.
 */
#include <stdint.h>
#include <stdlib.h>

#include "io/safetensors.h"
#include "tests/fuzz/common.h"

static const char* g_path;

static void parse(void* arg) {
    (void)arg;
    StIndex* st = st_open(g_path);
    (void)st_metadata(st, "format");
    for (int i = 0; i < st_count(st); i++) {
        const StTensor* t = st_tensor(st, i);
        if (st_find(st, t->name) != t) abort();
        if (t->nbytes > (1u << 20)) continue;
        void* raw = malloc(t->nbytes ? t->nbytes : 1);
        st_read_raw(st, t, raw);
        free(raw);
        if (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) {
            float* x = malloc(sizeof(float) * (size_t)(t->numel ? t->numel : 1));
            st_read_f32(st, t, x, t->shape, t->ndim);
            free(x);
        }
    }
    st_close(st);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fz_init();
    g_path = fz_write("model.safetensors", data, size);
    fz_run(parse, NULL);
    return 0;
}
