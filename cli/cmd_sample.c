/*
 * `qstar sample`: continue a prompt with a checkpoint, using the key/value-cache generator. With
 * --thoughts the model thinks before every token as Quiet-STaR does at inference; the thoughts are
 * shown (dimmed on a terminal) unless --hide-thoughts.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "io/checkpoint.h"
#include "cli/commands.h"
#include "text/tokenizer.h"
#include "common/util.h"
#include "model/generate.h"
#include "io/weights.h"

typedef struct {
    const Tokenizer* tok;
    uint32_t* text;     // prompt + generated text ids
    size_t n_text, printed;  // bytes of the decoded text already printed
    uint32_t thought[256];
    int n_thought, show_thoughts, tty;
} Printer;

static void emit(void* user, int kind, int32_t token) {
    Printer* p = user;
    if (kind == GEN_TEXT) {
        p->text[p->n_text++] = (uint32_t)token;
        size_t len;
        char* all = tok_decode(p->tok, p->text, p->n_text, 1, &len);
        if (len > p->printed) fwrite(all + p->printed, 1, len - p->printed, stdout);
        p->printed = len > p->printed ? len : p->printed;
        free(all);
    } else if (kind == GEN_THOUGHT_START) {
        p->n_thought = 0;
    } else if (kind == GEN_THOUGHT_TOKEN) {
        if (p->n_thought < 256) p->thought[p->n_thought++] = (uint32_t)token;
    } else if (kind == GEN_THOUGHT_END && p->show_thoughts) {
        char* t = tok_decode(p->tok, p->thought, (size_t)p->n_thought, 0, NULL);
        printf("%s<|startthought|>%s<|endthought|>%s", p->tty ? "\033[2m" : "", t, p->tty ? "\033[0m" : "");
        free(t);
    }
    fflush(stdout);
}

int cmd_sample(int argc, char** argv) {
    const char *ckpt = NULL, *prompt = NULL, *tok_path = NULL, *device = "cpu";
    const char* precision = NULL;
    int thoughts = 0, hide = 0, max_tokens = 64, seed = 1, n_ahead = 0;
    float temperature = 1.0f, top_p = 1.0f, embed_scale = 0;
    ArgSpec specs[] = {
        {"ckpt", ARG_STR, &ckpt, "checkpoint directory"},
        {"prompt", ARG_STR, &prompt, "text to continue"},
        {"tokenizer", ARG_STR, &tok_path, "tokenizer.json (default: the checkpoint's)"},
        {"thoughts", ARG_FLAG, &thoughts, "think before every token (Quiet-STaR checkpoints)"},
        {"hide-thoughts", ARG_FLAG, &hide, "with --thoughts: do not print the thoughts"},
        {"temperature", ARG_FLOAT, &temperature, "sampling temperature of the text (0: greedy)"},
        {"top-p", ARG_FLOAT, &top_p, "nucleus sampling mass"},
        {"max-tokens", ARG_INT, &max_tokens, "text tokens to generate"},
        {"seed", ARG_INT, &seed, "sampling seed"},
        {"n-ahead", ARG_UINT, &n_ahead, "thought length incl. start and end (default: the run's)"},
        {"thought-embed-scale", ARG_UFLOAT, &embed_scale, "scale of the start/end embeddings (default: the run's)"},
        {"device", ARG_STR, &device, "backend"},
        {"precision", ARG_STR, &precision, "fp32 or bf16 (default: bf16 on cuda, fp32 elsewhere)"},
    };
    args_parse(argc, argv, specs, sizeof specs / sizeof *specs,
               "usage: qstar sample --ckpt DIR --prompt TEXT [--thoughts] [options]\n\nGenerates text from a checkpoint.");
    if (!ckpt || !prompt) fatal("sample: --ckpt and --prompt are required");
    if (max_tokens <= 0 || !(top_p > 0 && top_p <= 1) || temperature < 0)
        fatal("sample: need --max-tokens > 0, 0 < --top-p <= 1 and --temperature >= 0");
    char* default_tok = xsprintf("%s/tokenizer.json", ckpt);
    if (!tok_path) tok_path = default_tok;
    const Backend* be = backend_select(device, precision);
    Tokenizer* tok = tok_load(tok_path);
    ModelConfig cfg;
    config_load(&cfg, ckpt);
    Model m;
    model_create(&m, &cfg, be);
    model_load_weights(&m, ckpt);

    GenConfig gc = {.temperature = temperature, .top_p = top_p, .max_tokens = max_tokens, .seed = (uint64_t)seed,
                    .thoughts = thoughts, .stop_token = (int)tok_eos_id(tok)};
    gc.n_ahead = n_ahead > 0 ? n_ahead : (int)checkpoint_setting(ckpt, "n-ahead", 12);
    gc.embed_scale = embed_scale > 0 ? embed_scale : (float)checkpoint_setting(ckpt, "thought-embed-scale", 100);
    TokIds ids = {0};
    tok_encode(tok, prompt, strlen(prompt), 1, &ids);
    int32_t* p32 = xmalloc(sizeof(int32_t) * (ids.n ? ids.n : 1));
    for (size_t i = 0; i < ids.n; i++) {
        if (ids.ids[i] >= (uint32_t)cfg.vocab_size) fatal("%s: token %u is outside the model's vocabulary", tok_path, ids.ids[i]);
        p32[i] = (int32_t)ids.ids[i];
    }
    generate_check_context(&cfg, &gc, ids.n, "sample");  // before --max-tokens sizes the text buffer
    Printer pr = {.tok = tok, .show_thoughts = thoughts && !hide, .tty = stdout_is_tty()};
    pr.text = xmalloc(sizeof(uint32_t) * (ids.n + (size_t)max_tokens + 1));
    memcpy(pr.text, ids.ids, sizeof(uint32_t) * ids.n);
    pr.n_text = ids.n;
    size_t len;
    char* shown = tok_decode(tok, pr.text, pr.n_text, 1, &len);
    fwrite(shown, 1, len, stdout);
    pr.printed = len;
    free(shown);
    generate(&m, &gc, p32, (int)ids.n, emit, &pr);
    printf("\n");
    free(pr.text);
    free(p32);
    free(ids.ids);
    free(default_tok);
    tok_free(tok);
    model_destroy(&m);
    return 0;
}
