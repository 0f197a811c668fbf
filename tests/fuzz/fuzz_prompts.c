/*
 * libFuzzer harness: `qstar generate`'s prompts file (JSON Lines of {"prompt", "id"}) through its
 * reader read_prompts (cli/cmd_generate.c, included here for its static reader), with the bundled
 * tokenizer and its vocabulary.
 */
#include "text/tokenizer.c"
#include "cli/cmd_generate.c"
#include "tests/fuzz/common.h"
#include "tests/fuzz/tok_harness.h"

static const char* g_path;

static void parse(void* arg) {
    (void)arg;
    int n = 0;
    Prompt* ps = read_prompts(g_path, fz_tok, (int)tok_vocab_size(fz_tok), &n);
    for (int i = 0; i < n; i++) {
        cJSON_Delete(ps[i].id);
        free(ps[i].ids.ids);
    }
    free(ps);
    fz_tok_drop_cache(0);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fz_init();
    if (!fz_tok) fz_tok_load();
    g_path = fz_write("prompts.jsonl", data, size);
    if (fz_run(parse, NULL)) fz_tok_drop_cache(1);
    return 0;
}
