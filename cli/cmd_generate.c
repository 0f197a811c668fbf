/*
 * `qstar generate`: completions for a file of prompts, many at once. Reads JSONL ({"prompt": ...,
 * optional "id"}), runs the batched key/value-cache generator (model/generate.h: up to --batch
 * requests in flight, K samples per prompt, with Quiet-STaR thoughts on --thoughts) and writes one
 * JSON line per sample, in input order: id, sample index, completion text, tokens, finish reason.
 * A request's output depends only on its prompt, its sample index and the seed, so it is the same
 * at every --batch, and sample 0 of a prompt is what `qstar sample` prints for it.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "io/checkpoint.h"
#include "io/jsonl.h"
#include "cli/commands.h"
#include "text/tokenizer.h"
#include "common/util.h"
#include "model/generate.h"
#include "io/weights.h"

typedef struct {
    cJSON* id;  // the input's "id", or its 0-based index among the prompts
    TokIds ids;
} Prompt;

typedef struct {
    const Tokenizer* tok;
    GenRequest* reqs;
    const char* stop;  // stop string ("" or NULL: none)
    size_t* stop_at;   // per request: byte offset of the stop string in the decoded completion, or SIZE_MAX
} Stopper;

// Ends a request once its decoded completion contains the stop string.
static int on_token(void* user, int r, int kind, int32_t token) {
    Stopper* s = user;
    if (kind != GEN_TEXT || !s->stop || !*s->stop) return 0;
    const GenRequest* q = &s->reqs[r];
    size_t len;
    char* text = tok_decode(s->tok, (const uint32_t*)q->out, (size_t)q->n_out, 1, &len);
    char* hit = strstr(text, s->stop);
    if (hit) s->stop_at[r] = (size_t)(hit - text);
    free(text);
    return hit != NULL;
}

// "\n", "\t", "\\" in --stop, so a newline can be given on the command line.
static char* unescape(const char* s) {
    char* out = xmalloc(strlen(s) + 1);
    char* o = out;
    for (; *s; s++) {
        if (*s == '\\' && (s[1] == 'n' || s[1] == 't' || s[1] == '\\')) {
            s++;
            *o++ = *s == 'n' ? '\n' : *s == 't' ? '\t' : '\\';
        } else {
            *o++ = *s;
        }
    }
    *o = 0;
    return out;
}

static Prompt* read_prompts(const char* path, const Tokenizer* tok, int vocab, int* n_out) {
    Jsonl r;
    if (!jsonl_open(&r, path)) fatal("%s: cannot open: %s", path, strerror(errno));
    Prompt* ps = NULL;
    int n = 0, cap = 0;
    while (jsonl_next(&r)) {
        const int line = r.line;
        const cJSON* o = r.value;
        if (!cJSON_IsObject(o)) fatal("%s: line %d: %s", path, line, jsonl_not_object(&r));
        const cJSON* pr = cJSON_GetObjectItemCaseSensitive(o, "prompt");
        if (!pr) fatal("%s: line %d: no \"prompt\" field", path, line);
        if (!cJSON_IsString(pr)) fatal("%s: line %d: \"prompt\" is not a string", path, line);
        const cJSON* id = cJSON_GetObjectItemCaseSensitive(o, "id");
        if (id && !cJSON_IsString(id) && !cJSON_IsNumber(id))
            fatal("%s: line %d: \"id\" must be a string or a number", path, line);
        const char* s = pr->valuestring;
        size_t sl = strlen(s);
        if (tok_utf8_check(s, sl) != sl) fatal("%s: line %d: the prompt is not valid UTF-8", path, line);
        if (n == cap) ps = xrealloc(ps, (size_t)(cap = cap ? 2 * cap : 64), sizeof(Prompt));
        Prompt* P = &ps[n];
        memset(P, 0, sizeof *P);
        tok_encode(tok, s, sl, 1, &P->ids);
        if (P->ids.n == 0) fatal("%s: line %d: the prompt is empty (no tokens)", path, line);
        for (size_t i = 0; i < P->ids.n; i++)
            if (P->ids.ids[i] >= (uint32_t)vocab)
                fatal("%s: line %d: token %u is outside the model's vocabulary", path, line, P->ids.ids[i]);
        P->id = id ? cJSON_Duplicate(id, 1) : cJSON_CreateNumber(n);
        n++;
    }
    jsonl_close(&r);
    if (n == 0) fatal("%s: no prompts", path);
    *n_out = n;
    return ps;
}

int cmd_generate(int argc, char** argv) {
    const char *ckpt = NULL, *in = NULL, *out = NULL, *tok_path = NULL, *device = "cpu", *stop_arg = NULL;
    const char* precision = NULL;
    int samples = 1, max_tokens = 64, batch = 16, seed = 1, thoughts = 0, n_ahead = 0;
    float temperature = 1.0f, top_p = 1.0f, embed_scale = 0;
    ArgSpec specs[] = {
        {"ckpt", ARG_STR, &ckpt, "checkpoint directory"},
        {"in", ARG_STR, &in, "prompts: JSONL with \"prompt\" (and optional \"id\") per line"},
        {"out", ARG_STR, &out, "completions: JSONL, one line per sample"},
        {"samples", ARG_INT, &samples, "samples per prompt"},
        {"temperature", ARG_FLOAT, &temperature, "sampling temperature (0: greedy)"},
        {"top-p", ARG_FLOAT, &top_p, "nucleus sampling mass"},
        {"max-tokens", ARG_INT, &max_tokens, "most tokens per completion"},
        {"stop", ARG_STR, &stop_arg, "stop string, cut from the completion (\\n, \\t escapes); EOS always stops"},
        {"batch", ARG_INT, &batch, "requests (prompt × sample) in flight at once"},
        {"seed", ARG_INT, &seed, "sampling seed"},
        {"thoughts", ARG_FLAG, &thoughts, "think before every token (Quiet-STaR checkpoints)"},
        {"n-ahead", ARG_UINT, &n_ahead, "thought length incl. start and end (default: the run's)"},
        {"thought-embed-scale", ARG_UFLOAT, &embed_scale, "scale of the start/end embeddings (default: the run's)"},
        {"tokenizer", ARG_STR, &tok_path, "tokenizer.json (default: the checkpoint's)"},
        {"device", ARG_STR, &device, "backend"},
        {"precision", ARG_STR, &precision, "fp32 or bf16 (default: bf16 on cuda, fp32 elsewhere)"},
    };
    const int n_specs = (int)(sizeof specs / sizeof specs[0]);
    args_parse(argc, argv, specs, n_specs,
               "usage: qstar generate --ckpt DIR --in PROMPTS.jsonl --out COMPLETIONS.jsonl [options]\n\n"
               "Completes every prompt of a JSONL file, --batch requests at a time with a key/value cache.\n"
               "Output, one line per sample in input order: {\"id\", \"sample\", \"completion\", \"tokens\",\n"
               "\"finish_reason\": \"stop\" (EOS or the stop string) or \"length\"}.");
    if (!ckpt || !in || !out) fatal("generate: --ckpt, --in and --out are required");
    if (max_tokens <= 0 || samples <= 0 || batch <= 0 || !(top_p > 0 && top_p <= 1) || !(temperature >= 0))
        fatal("generate: need --max-tokens, --samples, --batch > 0, 0 < --top-p <= 1 and --temperature >= 0");
    char* default_tok = xsprintf("%s/tokenizer.json", ckpt);
    if (!tok_path) tok_path = default_tok;
    const Backend* be = backend_select(device, precision);
    char* stop = stop_arg ? unescape(stop_arg) : NULL;
    Tokenizer* tok = tok_load(tok_path);
    ModelConfig cfg;
    config_load(&cfg, ckpt);
    int n_prompts;
    Prompt* ps = read_prompts(in, tok, cfg.vocab_size, &n_prompts);
    Model m;
    model_create(&m, &cfg, be);
    model_load_weights(&m, ckpt);

    GenConfig gc = {.temperature = temperature, .top_p = top_p, .max_tokens = max_tokens, .seed = (uint64_t)seed,
                    .thoughts = thoughts, .stop_token = (int)tok_eos_id(tok)};
    gc.n_ahead = n_ahead > 0 ? n_ahead : (int)checkpoint_setting(ckpt, "n-ahead", 12);
    gc.embed_scale = embed_scale > 0 ? embed_scale : (float)checkpoint_setting(ckpt, "thought-embed-scale", 100);
    // Every request's prompt, completion and thought fit the model's context, checked before anything
    // is sized by --max-tokens (generate_batch checks it again for its own callers).
    size_t max_prompt = 0;
    for (int p = 0; p < n_prompts; p++) max_prompt = ps[p].ids.n > max_prompt ? ps[p].ids.n : max_prompt;
    generate_check_context(&cfg, &gc, max_prompt, "generate");
    // requests are indexed by int (generate_batch); each holds max_tokens output ids
    const int n_reqs = (int)checked_count((size_t)n_prompts, (size_t)samples, INT_MAX, "generate: prompts x --samples");
    GenRequest* reqs = xcalloc((size_t)n_reqs, sizeof(GenRequest));
    int32_t* outbuf = xmalloc_for("generate: prompts x --samples x --max-tokens",
                                  checked_count((size_t)n_reqs, (size_t)max_tokens, SIZE_MAX / sizeof(int32_t),
                                                "generate: prompts x --samples x --max-tokens"),
                                  sizeof(int32_t));
    Stopper st = {.tok = tok, .reqs = reqs, .stop = stop,
                  .stop_at = xmalloc_for("generate: prompts x --samples", (size_t)n_reqs, sizeof(size_t))};
    int32_t** prompt32 = xmalloc(sizeof(int32_t*) * n_prompts);
    for (int p = 0; p < n_prompts; p++) {
        prompt32[p] = xmalloc(sizeof(int32_t) * ps[p].ids.n);
        for (size_t i = 0; i < ps[p].ids.n; i++) prompt32[p][i] = (int32_t)ps[p].ids.ids[i];
        for (int k = 0; k < samples; k++) {
            const size_t r = (size_t)p * (size_t)samples + (size_t)k;
            GenRequest* q = &reqs[r];
            q->prompt = prompt32[p];
            q->n_prompt = (int)ps[p].ids.n;
            q->sample = (uint32_t)k;
            q->out = outbuf + r * (size_t)max_tokens;
            st.stop_at[r] = SIZE_MAX;
        }
    }
    double t0 = now_seconds();
    generate_batch(&m, &gc, reqs, n_reqs, batch, on_token, &st);
    double secs = now_seconds() - t0;

    AtomicFile af = atomic_open(out);
    long total = 0;
    for (int r = 0; r < n_reqs; r++) {
        const GenRequest* q = &reqs[r];
        total += q->n_out;
        size_t len;
        char* text = tok_decode(tok, (const uint32_t*)q->out, (size_t)q->n_out, 1, &len);
        if (st.stop_at[r] != SIZE_MAX) text[st.stop_at[r]] = 0;
        cJSON* o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "id", cJSON_Duplicate(ps[r / samples].id, 1));
        cJSON_AddNumberToObject(o, "sample", r % samples);
        cJSON_AddStringToObject(o, "completion", text);
        cJSON* toks = cJSON_AddArrayToObject(o, "tokens");
        for (int i = 0; i < q->n_out; i++) cJSON_AddItemToArray(toks, cJSON_CreateNumber(q->out[i]));
        cJSON_AddStringToObject(o, "finish_reason", q->finish == GEN_FINISH_STOP ? "stop" : "length");
        char* line = cJSON_PrintUnformatted(o);
        atomic_write(&af, line, strlen(line));
        atomic_write(&af, "\n", 1);
        free(line);
        cJSON_Delete(o);
        free(text);
    }
    atomic_commit(&af);
    fprintf(stderr, "generate: %d prompts x %d samples, %ld tokens in %.2f s (%.1f tokens/s, batch %d) -> %s\n",
            n_prompts, samples, total, secs, secs > 0 ? total / secs : 0.0, batch, out);

    for (int p = 0; p < n_prompts; p++) {
        free(prompt32[p]);
        free(ps[p].ids.ids);
        cJSON_Delete(ps[p].id);
    }
    free(prompt32);
    free(ps);
    free(st.stop_at);
    free(outbuf);
    free(reqs);
    free(stop);
    free(default_tok);
    tok_free(tok);
    model_destroy(&m);
    return 0;
}
