/*
 * libFuzzer harness: tokenizer.json through tok_load (the input up to its first NUL byte; the bytes
 * after it, if any, are the tokenizer_config.json beside it, read for BOS/EOS); a file that loads then encodes and decodes a
 * fixed text (ASCII, digits, whitespace runs, multi-byte UTF-8, a special token), adds a special
 * token, and is saved; the saved file must load again.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text/tokenizer.h"
#include "tests/fuzz/common.h"

static const char* g_path;
static char g_out[600];

static void parse(void* arg) {
    (void)arg;
    Tokenizer* t = tok_load(g_path);
    static const char text[] = "Hello world!  12345 caf\xC3\xA9 \xE2\x96\x81x \xF0\x9F\x98\x80\n\n\ttab</s><s> end";
    TokIds ids = {0};
    tok_encode(t, text, sizeof text - 1, 1, &ids);
    size_t len;
    free(tok_decode(t, ids.ids, ids.n, 0, &len));
    free(tok_decode(t, ids.ids, ids.n, 1, &len));
    free(ids.ids);
    uint32_t v = tok_vocab_size(t);
    for (uint32_t id = 0; id < v && id < 64; id++) (void)tok_id_to_token(t, id);
    (void)tok_bos_id(t), (void)tok_eos_id(t), (void)tok_token_to_id(t, "</s>");
    tok_add_special_token(t, "<|startthought|>");
    tok_save(t, g_out);
    tok_free(t);
}

// what qstar saves (a checkpoint's tokenizer.json) must load again
static void reload(void* arg) {
    (void)arg;
    tok_free(tok_load(g_out));
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fz_init();
    if (!g_out[0]) snprintf(g_out, sizeof g_out, "%s", fz_path("tokenizer.out.json"));
    const uint8_t* nul = memchr(data, 0, size);
    if (nul) fz_write("tokenizer_config.json", nul + 1, size - (size_t)(nul - data) - 1);
    else unlink(fz_path("tokenizer_config.json"));
    g_path = fz_write("tokenizer.json", data, nul ? (size_t)(nul - data) : size);
    if (fz_run(parse, NULL) == 0 && fz_run(reload, NULL) != 0) {
        fprintf(stderr, "fuzz: a tokenizer that loaded was saved in a form that does not load\n");
        abort();
    }
    return 0;
}
