/*
 * libFuzzer harness: a sharded checkpoint directory through st_open. The input up to its first NUL
 * byte is model.safetensors.index.json; the bytes after it, if any, become the shard
 * "fz.safetensors". Two valid shards (a.safetensors: tensors "a", "b"; b.safetensors: "c") are there
 * for the index to name.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "tests/fuzz/common.h"

static void parse(void* arg) {
    (void)arg;
    StIndex* st = st_open(fz_dir());
    for (int i = 0; i < st_count(st); i++) {
        const StTensor* t = st_tensor(st, i);
        if (st_find(st, t->name) != t) abort();
    }
    st_close(st);
}

static void write_shards(void) {
    static const float v[4] = {1, 2, 3, 4};
    StWriteTensor a[2] = {{.name = "a", .ndim = 1, .shape = {2}, .data = v},
                          {.name = "b", .ndim = 2, .shape = {1, 2}, .data = v + 2}};
    StWriteTensor c[1] = {{.name = "c", .ndim = 1, .shape = {3}, .data = v}};
    st_write_f32(fz_path("a.safetensors"), a, 2, NULL);
    st_write_f32(fz_path("b.safetensors"), c, 1, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static int ready;
    if (!ready) {
        fz_init();
        write_shards();
        ready = 1;
    }
    const uint8_t* nul = memchr(data, 0, size);
    size_t index_len = nul ? (size_t)(nul - data) : size;
    if (nul) fz_write("fz.safetensors", nul + 1, size - index_len - 1);
    else unlink(fz_path("fz.safetensors"));
    fz_write("model.safetensors.index.json", data, index_len);
    fz_run(parse, NULL);
    return 0;
}
