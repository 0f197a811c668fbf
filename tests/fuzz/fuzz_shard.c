/* libFuzzer harness: a token shard through shard_count_tokens and shard_open, every token read. */
#include <stdint.h>
#include <stdlib.h>

#include "io/shard.h"
#include "tests/fuzz/common.h"

static const char* g_path;
volatile uint64_t fz_shard_sum;  // keeps the token reads

static void parse(void* arg) {
    (void)arg;
    int width = 0;
    uint64_t n = shard_count_tokens(g_path, &width);
    Shard s;
    shard_open(&s, g_path);
    if (s.n_tokens != n || s.token_bytes != width) abort();
    for (uint64_t i = 0; i < s.n_tokens; i++) fz_shard_sum += shard_token(&s, i);
    shard_close(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fz_init();
    g_path = fz_write("shard.bin", data, size);
    fz_run(parse, NULL);
    return 0;
}
