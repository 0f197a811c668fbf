/*
 * What every selftrain method shares (selftrain/selftrain.h): tokens, batched generation with the
 * completion cut, the few-shot context, the SFT loop, greedy test accuracy, and the run directory's
 * files. Moved here from cmd_selftrain.c unchanged in behaviour, so STaR's runs stay bitwise what they
 * were; generation gained sampling (per-request sample keys) and text prefixes for rollouts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "io/jsonl.h"
#include "selftrain/selftrain.h"
#include "io/weights.h"
#include "model/generate.h"
#include "model/sft.h"

Toks st_encode(const Tokenizer* tok, const char* s, int add_special) {
    TokIds t = {0};
    tok_encode(tok, s, strlen(s), add_special, &t);
    Toks r = {xmalloc(sizeof(int32_t) * (t.n + 1)), (int)t.n};
    for (size_t i = 0; i < t.n; i++) r.ids[i] = (int32_t)t.ids[i];
    free(t.ids);
    return r;
}

Toks st_toks_copy(const int32_t* ids, int n) {
    Toks r = {xmalloc(sizeof(int32_t) * (size_t)(n + 1)), n};
    if (n) memcpy(r.ids, ids, sizeof(int32_t) * (size_t)n);
    return r;
}

// ---- generation with the completion cut -----------------------------------------------------------------

const char* st_completion_end(int task, const char* text) {
    const char* blank = strstr(text, "\n\n");
    const char* end = blank ? blank + 1 : NULL;
    const char* a = NULL;
    if (task == STAR_TASK_GSM8K) {
        const char* h = strstr(text, "####");
        if (h) a = strchr(h, '\n');
    } else {
        const char* sc = strstr(text, "</scratch>\n");
        if (sc) a = strchr(sc + 11, '\n');
    }
    if (a && (!end || a + 1 < end)) end = a + 1;
    return end;
}

typedef struct {
    const Tokenizer* tok;
    GenRequest* reqs;
    const char* const* prefixes;
    int task, base;  // reqs[r] is request base + r of the whole call
} GenCtx;

// prefix ++ the request's text so far (malloc'd); *plen the prefix's length
static char* full_text(const GenCtx* g, int r, size_t* plen) {
    const GenRequest* q = &g->reqs[r];
    size_t len;
    char* text = tok_decode(g->tok, (const uint32_t*)q->out, (size_t)q->n_out, 1, &len);
    const char* pre = g->prefixes ? g->prefixes[g->base + r] : NULL;
    *plen = pre ? strlen(pre) : 0;
    if (!pre) return text;
    char* all = xsprintf("%s%s", pre, text);
    free(text);
    return all;
}

static int stop_at_end(void* user, int r, int kind, int32_t token) {
    GenCtx* g = user;
    if (kind != GEN_TEXT) return 0;
    size_t plen;
    char* text = full_text(g, r, &plen);
    // the end must lie in the continuation: a prefix is never complete (it would not be continued)
    const char* end = st_completion_end(g->task, text);
    int stop = end && (size_t)(end - text) > plen;
    free(text);
    return stop;
}

void st_generate(Model* m, const Tokenizer* tok, const Settings* s, int task, const Toks* prompts, const uint32_t* sample,
                 const char* const* prefixes, int n, float temperature, char** texts, Toks* tokens, const char* stage,
                 double* tok_per_s) {
    GenConfig gc = {.temperature = temperature, .top_p = 1, .max_tokens = s->max_tokens, .seed = (uint64_t)s->seed,
                    .stop_token = (int)tok_eos_id(tok)};
    const double t0 = now_seconds();
    // in chunks, for a progress line; the output buffers are a chunk's only (RFT's k = 100 samples of
    // every GSM8K problem would otherwise hold n * max_tokens ids at once)
    const int chunk = s->gen_batch * 4;
    GenRequest* reqs = xcalloc((size_t)chunk, sizeof(GenRequest));
    int32_t* buf = xmalloc(sizeof(int32_t) * (size_t)chunk * s->max_tokens);
    long made = 0;
    for (int i0 = 0; i0 < n; i0 += chunk) {
        const int k = n - i0 < chunk ? n - i0 : chunk;
        for (int r = 0; r < k; r++) {
            reqs[r] = (GenRequest){.prompt = prompts[i0 + r].ids, .n_prompt = prompts[i0 + r].n,
                                   .sample = sample ? sample[i0 + r] : 0, .out = buf + (size_t)r * s->max_tokens};
        }
        // the callback's r counts within this chunk: the context points at the chunk's requests
        GenCtx g = {tok, reqs, prefixes, task, i0};
        generate_batch(m, &gc, reqs, k, s->gen_batch, stop_at_end, &g);
        for (int r = 0; r < k; r++) {
            made += reqs[r].n_out;
            size_t plen;
            char* all = full_text(&g, r, &plen);
            const char* end = st_completion_end(task, all);
            if (end && (size_t)(end - all) > plen) all[end - all] = 0;  // keep the last line's own newline
            texts[i0 + r] = xstrdup(all + plen);
            free(all);
            tokens[i0 + r] = st_toks_copy(reqs[r].out, reqs[r].n_out);
        }
        const double dt = now_seconds() - t0;
        fprintf(stderr, "\r  %-12s %d/%d  %.1f tokens/s   ", stage, i0 + k, n, dt > 0 ? made / dt : 0.0);
    }
    fprintf(stderr, "\n");
    const double dt = now_seconds() - t0;
    *tok_per_s = dt > 0 ? made / dt : 0;
    free(buf);
    free(reqs);
}

// ---- prompts ----------------------------------------------------------------------------------------------

char* st_exemplar_completion(int task, const StarItem* it) {
    if (task == STAR_TASK_ARITH) return xstrdup(it->solution);  // "\n<scratch>...\n8 8 3\n"
    return xsprintf(" %s\n", it->solution);
}

char* st_hint_of(int task, const StarItem* it) {
    if (task == STAR_TASK_GSM8K) return xstrdup(it->gold);
    StarArith p;
    char err[256];
    if (star_arith_parse_question(it->question, &p, err, sizeof err)) fatal("internal: %s", err);
    return star_arith_hint(&p);
}

// Each exemplar is followed by a blank line (STaR's prompt files).
char* st_few_shot(int task, const StarItem* items, int shots, int hinted) {
    char* ctx = xstrdup("");
    for (int i = 0; i < shots; i++) {
        char* h = hinted ? st_hint_of(task, &items[i]) : NULL;
        char* p = star_prompt(task, items[i].question, h);
        char* c = st_exemplar_completion(task, &items[i]);
        char* next = xsprintf("%s%s%s\n", ctx, p, c);
        free(ctx), free(p), free(c), free(h);
        ctx = next;
    }
    return ctx;
}

// ---- fine-tuning -------------------------------------------------------------------------------------------

Epochs st_epochs(int n, uint64_t state) {
    Epochs e = {xmalloc(sizeof(int) * (size_t)(n ? n : 1)), n, n, state};
    for (int i = 0; i < n; i++) e.order[i] = i;
    return e;
}

int st_epochs_next(Epochs* e) {
    QSTAR_ASSERT(e->n > 0);
    if (e->pos == e->n) {  // a new epoch in a new order
        for (int i = e->n - 1; i > 0; i--) {
            e->state = e->state * 6364136223846793005ull + 1442695040888963407ull;
            int j = (int)((e->state >> 33) % (uint64_t)(i + 1));
            int t = e->order[i];
            e->order[i] = e->order[j], e->order[j] = t;
        }
        e->pos = 0;
    }
    return e->order[e->pos++];
}

AdamWConfig st_adamw_fresh(Model* m) {
    m->be->zero(m->m, m->moment_bytes * m->opt_count);
    m->be->zero(m->v, m->moment_bytes * m->opt_count);
    return (AdamWConfig){.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0};
}

double st_finetune(Model* m, const Settings* s, Example* ex, int n_ex, int steps, int pad, uint64_t seed,
                   double* tok_per_s) {
    const int B = s->batch, T = s->seq;
    int cut = 0;
    for (int i = 0; i < n_ex; i++) cut += ex[i].prompt.n + ex[i].completion.n - 1 > T;
    if (cut)
        fprintf(stderr, "  warning: %d of %d examples are longer than --seq %d + 1 tokens: their completions are cut\n",
                cut, n_ex, T);
    model_alloc_activations(m, B, T);
    const AdamWConfig opt = st_adamw_fresh(m);
    Epochs epochs = st_epochs(n_ex, seed * 0x9E3779B97F4A7C15ull + 1);
    int32_t* in = xmalloc(sizeof(int32_t) * (size_t)B * T);
    int32_t* tg = xmalloc(sizeof(int32_t) * (size_t)B * T);
    double loss_sum = 0, t0 = now_seconds();
    long tokens = 0;
    for (int step = 1; step <= steps; step++) {
        for (int b = 0; b < B; b++) {
            const Example* e = &ex[st_epochs_next(&epochs)];
            sft_make_row(e->prompt.ids, e->prompt.n, e->completion.ids, e->completion.n, T, pad, in + (size_t)b * T,
                         tg + (size_t)b * T);
        }
        model_zero_grad(m);
        float loss = sft_step(m, in, tg, 1.0f);
        tokens += (long)B * T;
        if (!m->n_valid) continue;  // no row with a target (prompts longer than --seq): no update
        float norm = model_grad_norm(m);
        float scale = s->grad_clip > 0 && norm > s->grad_clip ? s->grad_clip / norm : 1.0f;
        // STaR: linear warmup, then constant
        float lr = s->warmup > 0 && step <= s->warmup ? s->lr * step / s->warmup : s->lr;
        model_adamw_step(m, &opt, lr, scale, step);
        loss_sum += loss;
        const double dt = now_seconds() - t0;
        fprintf(stderr, "\r  %-12s %d/%d  loss %.4f  %.0f tokens/s   ", "fine-tune", step, steps, loss,
                dt > 0 ? tokens / dt : 0.0);
    }
    fprintf(stderr, "\n");
    const double dt = now_seconds() - t0;
    *tok_per_s = dt > 0 ? tokens / dt : 0;
    free(epochs.order), free(in), free(tg);
    return steps ? loss_sum / steps : 0;
}

// ---- evaluation -------------------------------------------------------------------------------------------

double st_evaluate(Model* m, const Tokenizer* tok, const Settings* s, int task, const char* ctx, const StarItem* test,
                   int n_test, int iter, cJSON* by_digits, double* tok_per_s) {
    Toks* prompts = xmalloc(sizeof(Toks) * (size_t)(n_test ? n_test : 1));
    for (int i = 0; i < n_test; i++) {
        char* p = star_prompt(task, test[i].question, NULL);
        char* full = xsprintf("%s%s", ctx, p);
        prompts[i] = st_encode(tok, full, 1);
        free(p), free(full);
    }
    char** texts = xmalloc(sizeof(char*) * (size_t)(n_test ? n_test : 1));
    Toks* out = xmalloc(sizeof(Toks) * (size_t)(n_test ? n_test : 1));
    st_generate(m, tok, s, task, prompts, NULL, NULL, n_test, 0.0f, texts, out, "test", tok_per_s);
    int right = 0, per_right[STAR_ARITH_MAX_DIGITS + 1] = {0}, per_n[STAR_ARITH_MAX_DIGITS + 1] = {0};
    char* path = xsprintf("%s/test_%03d.jsonl", s->out, iter);
    AtomicFile f = atomic_open(path);
    for (int i = 0; i < n_test; i++) {
        int ok = star_is_correct(task, texts[i], test[i].gold);
        cJSON* o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "question", test[i].question);
        cJSON_AddStringToObject(o, "gold", test[i].gold);
        cJSON_AddStringToObject(o, "completion", texts[i]);
        cJSON_AddBoolToObject(o, "correct", ok);
        jsonl_write(&f, o);
        right += ok;
        per_right[test[i].digits] += ok;
        per_n[test[i].digits]++;
        free(texts[i]), free(out[i].ids), free(prompts[i].ids);
    }
    if (task == STAR_TASK_ARITH && by_digits)
        for (int d = 1; d <= STAR_ARITH_MAX_DIGITS; d++)
            if (per_n[d]) {
                char key[8];
                snprintf(key, sizeof key, "%d", d);
                cJSON_AddNumberToObject(by_digits, key, (double)per_right[d] / per_n[d]);
            }
    atomic_commit(&f);
    free(path), free(texts), free(out), free(prompts);
    return n_test ? (double)right / n_test : 0;
}

int st_majority_correct(int task, const char* const* texts, int n, const char* gold) {
    char(*ans)[64] = xmalloc(sizeof(*ans) * (size_t)(n ? n : 1));
    int* has = xcalloc((size_t)(n ? n : 1), sizeof(int));
    for (int i = 0; i < n; i++)
        has[i] = task == STAR_TASK_GSM8K ? star_gsm8k_extract(texts[i], ans[i], sizeof ans[i])
                                         : star_arith_extract(texts[i], ans[i], sizeof ans[i]);
    int best = -1, best_count = 0;
    for (int i = 0; i < n; i++) {
        if (!has[i]) continue;
        int c = 0;
        for (int j = 0; j < n; j++) c += has[j] && !strcmp(ans[i], ans[j]);
        if (c > best_count) best = i, best_count = c;  // strict: the first answer to reach the count wins ties
    }
    // judged as the completion that wrote it is: the same extraction, the task's comparison
    const int ok = best >= 0 && star_is_correct(task, texts[best], gold);
    free(ans), free(has);
    return ok;
}

// ---- run directory -------------------------------------------------------------------------------------

static int count_lines(const char* path) {
    size_t len;
    char* text = read_file_maybe(path, &len);
    if (!text) return 0;
    int n = 0;
    for (size_t i = 0; i < len; i++) n += text[i] == '\n';
    free(text);
    return n;
}

void st_write_state(const char* out, int finished, cJSON* stage, const cJSON* settings) {
    cJSON* state = cJSON_CreateObject();
    cJSON_AddNumberToObject(state, "iteration", finished);
    if (stage) cJSON_AddItemToObject(state, "stage", stage);
    char* mp = xsprintf("%s/metrics.jsonl", out);
    cJSON_AddNumberToObject(state, "metrics_lines", count_lines(mp));
    free(mp);
    cJSON_AddItemToObject(state, "settings", cJSON_Duplicate(settings, 1));
    char* st = cJSON_Print(state);
    char* sp = xsprintf("%s/state.json", out);
    write_file_atomic(sp, st, strlen(st));
    free(st), free(sp);
    cJSON_Delete(state);
}

void st_metrics_rewind(const char* out, const cJSON* state, int iter) {
    char* path = xsprintf("%s/metrics.jsonl", out);
    size_t len;
    char* text = read_file_maybe(path, &len);
    if (!text) {
        free(path);
        return;
    }
    const cJSON* nl_count = cJSON_GetObjectItemCaseSensitive(state, "metrics_lines");
    char* keep = xmalloc(len + 1);
    size_t k = 0;
    int line_no = 0;
    for (char* line = text; *line;) {
        char* nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
        int keep_it;
        if (cJSON_IsNumber(nl_count)) {
            keep_it = line_no < nl_count->valueint;
        } else {  // a state written before metrics_lines: the records of the iterations before iter
            cJSON* o = cJSON_ParseWithLength(line, n);
            const cJSON* it = cJSON_GetObjectItemCaseSensitive(o, "iteration");
            keep_it = cJSON_IsNumber(it) && it->valueint < iter;
            cJSON_Delete(o);
        }
        if (keep_it) memcpy(keep + k, line, n), k += n;
        line_no++;
        line += n;
    }
    write_file_atomic(path, keep, k);
    free(keep), free(text), free(path);
}

void st_metrics_append(const char* out, const cJSON* rec) {
    char* path = xsprintf("%s/metrics.jsonl", out);
    char* line = cJSON_PrintUnformatted(rec);
    FILE* f = fopen(path, "a");
    if (!f) fatal("%s: cannot open for writing", path);
    fprintf(f, "%s\n", line);
    if (fclose(f)) fatal("%s: write failed", path);
    printf("%s\n", line);
    fflush(stdout);
    free(line), free(path);
}

double st_json_num(const cJSON* o, const char* key) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) fatal("state.json: the stage has no number \"%s\"", key);
    return v->valuedouble;
}

// {"prompt": [...], "completion": [...]} per line, so a resumed iteration trains on exactly what was kept.
void st_write_examples(const char* path, const Example* ex, int n) {
    AtomicFile f = atomic_open(path);
    for (int i = 0; i < n; i++) {
        cJSON* o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "prompt", cJSON_CreateIntArray(ex[i].prompt.ids, ex[i].prompt.n));
        cJSON_AddItemToObject(o, "completion", cJSON_CreateIntArray(ex[i].completion.ids, ex[i].completion.n));
        jsonl_write(&f, o);
    }
    atomic_commit(&f);
}

Toks st_json_ids(const cJSON* a, int vocab, const char* path, int line) {
    if (!cJSON_IsArray(a)) fatal("%s:%d: not a list of token ids", path, line);
    Toks t = {xmalloc(sizeof(int32_t) * (size_t)(cJSON_GetArraySize(a) + 1)), 0};
    const cJSON* v;
    cJSON_ArrayForEach(v, a) {
        // compared as a double before any conversion: 1e99 converted to int32 is undefined
        const double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (!(d >= 0 && d < vocab && d == floor(d)))
            fatal("%s:%d: token id %s is not an integer in [0, %d) (the model's vocabulary)", path, line,
                  cJSON_IsNumber(v) ? xsprintf("%.15g", d) : "(not a number)", vocab);
        t.ids[t.n++] = (int32_t)d;
    }
    return t;
}

Example* st_read_examples(const char* path, int vocab, int* n_out) {
    Jsonl r;
    if (!jsonl_open(&r, path)) fatal("%s: missing (the run's state says its generation finished)", path);
    int n = 0, cap = 16;
    Example* ex = xmalloc(sizeof(Example) * (size_t)cap);
    while (jsonl_next(&r)) {
        if (!cJSON_IsObject(r.value)) fatal("%s:%d: %s", path, r.line, jsonl_not_object(&r));
        if (n == cap) ex = xrealloc(ex, (size_t)(cap *= 2), sizeof(Example));
        ex[n].prompt = st_json_ids(cJSON_GetObjectItemCaseSensitive(r.value, "prompt"), vocab, path, r.line);
        ex[n].completion = st_json_ids(cJSON_GetObjectItemCaseSensitive(r.value, "completion"), vocab, path, r.line);
        n++;
    }
    jsonl_close(&r);
    *n_out = n;
    return ex;
}

void st_free_examples(Example* ex, int n) {
    for (int i = 0; i < n; i++) free(ex[i].prompt.ids), free(ex[i].completion.ids);
    free(ex);
}

void st_save_checkpoint(const char* out, const char* name, const Model* m, const Tokenizer* tok) {
    char* dir = xsprintf("%s/%s", out, name);
    char* tmp = xsprintf("%s/.tmp.%s", out, name);
    // leftovers of an attempt that died mid-save; run_dir_create marks the new one as removable
    char* err = run_dir_remove(tmp);
    if (err) fatal("%s", err);
    run_dir_create(tmp);
    char* p = xsprintf("%s/model.safetensors", tmp);
    model_save_weights(m, p);
    free(p);
    p = xsprintf("%s/config.json", tmp);
    config_save(&m->cfg, p, "float32");
    free(p);
    p = xsprintf("%s/tokenizer.json", tmp);
    tok_save(tok, p);
    free(p);
    fsync_dir(tmp);
    // a checkpoint of this name from an interrupted earlier attempt is replaced
    if ((err = run_dir_remove(dir))) fatal("%s", err);
    if (rename(tmp, dir)) fatal("%s: cannot rename to %s", tmp, dir);
    fsync_dir(out);
    free(dir), free(tmp);
}

AtomicFile st_open_generations(const char* out, const char* what, int iter) {
    char* p = xsprintf("%s/%s_%03d.jsonl", out, what, iter);
    AtomicFile f = atomic_open(p);
    free(p);
    return f;
}

void st_write_generation(AtomicFile* f, int line, const char* stage, const char* text, int correct, int sample) {
    cJSON* o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "line", line);
    cJSON_AddStringToObject(o, "stage", stage);
    if (sample >= 0) cJSON_AddNumberToObject(o, "sample", sample);
    cJSON_AddStringToObject(o, "completion", text);
    cJSON_AddBoolToObject(o, "correct", correct);
    jsonl_write(f, o);
}
