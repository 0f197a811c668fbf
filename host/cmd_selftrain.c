/*
 * `qstar selftrain`: the self-taught-reasoner loop (research/star-family.md). This first version runs
 * STaR (Zelikman et al., Algorithm 1) on the `arith` and `gsm8k` tasks; rft, vstar and stepdpo are
 * built on the same pieces (host/star_tasks.h, model/sft.h, model/dpo.h) and refused until they land.
 *
 * One STaR iteration n = 1..N:
 *   1. generate   M_{n-1} completes every training problem after the few-shot prompt (greedy, stop at
 *                 a blank line); the correct ones are kept;
 *   2. rationalize each failure is generated again with the answer as a hint (hinted few-shot prompt,
 *                 STaR's hint formats); the correct ones are kept, stored with the hint-free prompt;
 *   3. fine-tune  from the ORIGINAL model on the union (loss on the completion only, no few-shot
 *                 prompt), int(start_steps * grow^(n-1)) steps of --batch rows;
 *   4. evaluate   M_n greedy on the test problems (accuracy, per digit count on arith).
 * RUN_DIR/iter_NNN/ holds M_n (model.safetensors, config.json, tokenizer.json; only the newest unless
 * --keep-all), RUN_DIR/generations_NNN.jsonl every completion, RUN_DIR/state.json the last finished iteration and the settings, RUN_DIR/metrics.jsonl one line per iteration;
 * RUN_DIR/kept_NNN.jsonl the fine-tuning examples of iteration NNN (token ids). --resume RUN_DIR
 * continues where the run stopped: after the last finished iteration, or inside one after its
 * generation (the kept examples are read back) or after its fine-tuning (M_n is read back); the
 * result is bitwise the uninterrupted run's.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/args.h"
#include "host/commands.h"
#include "host/star_tasks.h"
#include "host/tokenizer.h"
#include "common/util.h"
#include "model/generate.h"
#include "model/sft.h"
#include "host/weights.h"

typedef struct {
    const char *method, *model, *task, *train, *test, *out, *resume, *device, *make_arith, *digits;
    int make_n, iterations, start_steps, batch, seq, warmup, shots, max_tokens, gen_batch, seed, no_rationalize, gold, keep_all,
        n_train, n_test;
    float grow, lr, grad_clip;
} Settings;

typedef struct {
    int32_t* ids;
    int n;
} Toks;

static Toks encode(const Tokenizer* tok, const char* s, int add_special) {
    TokIds t = {0};
    tok_encode(tok, s, strlen(s), add_special, &t);
    Toks r = {xmalloc(sizeof(int32_t) * (t.n + 1)), (int)t.n};
    for (size_t i = 0; i < t.n; i++) r.ids[i] = (int32_t)t.ids[i];
    free(t.ids);
    return r;
}

// ---- generation with a blank-line stop ----------------------------------------------------------------

typedef struct {
    const Tokenizer* tok;
    GenRequest* reqs;
    int task;
    double t0;
} GenCtx;

// Where a completion ends: a blank line, or the end of the answer line (gsm8k: the first line with
// "####", STaR's cut; arith: the line after "</scratch>"). Returns the end (after its '\n'), or NULL.
static const char* completion_end(int task, const char* text) {
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

static int stop_at_blank_line(void* user, int r, int kind, int32_t token) {
    GenCtx* g = user;
    if (kind != GEN_TEXT) return 0;
    const GenRequest* q = &g->reqs[r];
    size_t len;
    char* text = tok_decode(g->tok, (const uint32_t*)q->out, (size_t)q->n_out, 1, &len);
    int stop = completion_end(g->task, text) != NULL;
    free(text);
    return stop;
}

// Completions of every prompt (greedy); texts[i] cut at completion_end, tokens[i] the
// generated tokens up to the one that completed it.
static void generate_all(Model* m, const Tokenizer* tok, const Settings* s, int task, Toks* prompts, int n, char** texts,
                         Toks* tokens, const char* stage, double* tok_per_s) {
    GenRequest* reqs = xcalloc((size_t)n, sizeof(GenRequest));
    int32_t* buf = xmalloc(sizeof(int32_t) * (size_t)n * s->max_tokens);
    for (int i = 0; i < n; i++) {
        reqs[i].prompt = prompts[i].ids;
        reqs[i].n_prompt = prompts[i].n;
        reqs[i].out = buf + (size_t)i * s->max_tokens;
    }
    GenConfig gc = {.temperature = 0, .top_p = 1, .max_tokens = s->max_tokens, .seed = (uint64_t)s->seed,
                    .stop_token = (int)tok_eos_id(tok)};
    GenCtx g = {tok, reqs, task, now_seconds()};
    // in chunks, for a progress line
    const int chunk = s->gen_batch * 4;
    long made = 0;
    for (int i0 = 0; i0 < n; i0 += chunk) {
        const int k = n - i0 < chunk ? n - i0 : chunk;
        generate_batch(m, &gc, reqs + i0, k, s->gen_batch, stop_at_blank_line, &g);
        for (int i = i0; i < i0 + k; i++) made += reqs[i].n_out;
        const double dt = now_seconds() - g.t0;
        fprintf(stderr, "\r  %-12s %d/%d  %.1f tokens/s   ", stage, i0 + k, n, dt > 0 ? made / dt : 0.0);
    }
    fprintf(stderr, "\n");
    const double dt = now_seconds() - g.t0;
    *tok_per_s = dt > 0 ? made / dt : 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        char* t = tok_decode(tok, (const uint32_t*)reqs[i].out, (size_t)reqs[i].n_out, 1, &len);
        const char* end = completion_end(task, t);
        if (end) t[end - t] = 0;  // keep the last line's own newline
        texts[i] = t;
        tokens[i].n = reqs[i].n_out;
        tokens[i].ids = xmalloc(sizeof(int32_t) * (size_t)(reqs[i].n_out + 1));
        memcpy(tokens[i].ids, reqs[i].out, sizeof(int32_t) * (size_t)reqs[i].n_out);
    }
    free(buf);
    free(reqs);
}

// ---- prompts ----------------------------------------------------------------------------------------------

static char* exemplar_completion(int task, const StarItem* it) {
    if (task == STAR_TASK_ARITH) return xstrdup(it->solution);  // "\n<scratch>...\n8 8 3\n"
    return xsprintf(" %s\n", it->solution);
}

static char* hint_of(int task, const StarItem* it) {
    if (task == STAR_TASK_GSM8K) return xstrdup(it->gold);
    StarArith p;
    char err[256];
    if (star_arith_parse_question(it->question, &p, err, sizeof err)) fatal("internal: %s", err);
    return star_arith_hint(&p);
}

// The few-shot context: the first `shots` training problems with their reference solutions, each
// followed by a blank line (STaR's prompt files); hinted: with the hint in each question.
static char* few_shot(int task, const StarItem* items, int shots, int hinted) {
    char* ctx = xstrdup("");
    for (int i = 0; i < shots; i++) {
        char* h = hinted ? hint_of(task, &items[i]) : NULL;
        char* p = star_prompt(task, items[i].question, h);
        char* c = exemplar_completion(task, &items[i]);
        char* next = xsprintf("%s%s%s\n", ctx, p, c);
        free(ctx), free(p), free(c), free(h);
        ctx = next;
    }
    return ctx;
}

// ---- fine-tuning -------------------------------------------------------------------------------------------

typedef struct {
    Toks prompt, completion;
} Example;

static double finetune(Model* m, const Settings* s, Example* ex, int n_ex, int steps, int pad, uint64_t seed,
                       double* tok_per_s) {
    const int B = s->batch, T = s->seq;
    int cut = 0;
    for (int i = 0; i < n_ex; i++) cut += ex[i].prompt.n + ex[i].completion.n - 1 > T;
    if (cut)
        fprintf(stderr, "  warning: %d of %d examples are longer than --seq %d + 1 tokens: their completions are cut\n",
                cut, n_ex, T);
    model_alloc_activations(m, B, T);
    m->be->zero(m->m, sizeof(float) * m->opt_count);
    m->be->zero(m->v, sizeof(float) * m->opt_count);
    AdamWConfig opt = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0};
    int* order = xmalloc(sizeof(int) * (size_t)n_ex);
    for (int i = 0; i < n_ex; i++) order[i] = i;
    uint64_t st = seed * 0x9E3779B97F4A7C15ull + 1;
    int pos = n_ex;
    int32_t* in = xmalloc(sizeof(int32_t) * (size_t)B * T);
    int32_t* tg = xmalloc(sizeof(int32_t) * (size_t)B * T);
    double loss_sum = 0, t0 = now_seconds();
    long tokens = 0;
    for (int step = 1; step <= steps; step++) {
        for (int b = 0; b < B; b++) {
            if (pos == n_ex) {  // a new epoch in a new order
                for (int i = n_ex - 1; i > 0; i--) {
                    st = st * 6364136223846793005ull + 1442695040888963407ull;
                    int j = (int)((st >> 33) % (uint64_t)(i + 1));
                    int t = order[i];
                    order[i] = order[j], order[j] = t;
                }
                pos = 0;
            }
            const Example* e = &ex[order[pos++]];
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
    free(order), free(in), free(tg);
    return steps ? loss_sum / steps : 0;
}

// ---- evaluation -------------------------------------------------------------------------------------------

static double evaluate(Model* m, const Tokenizer* tok, const Settings* s, int task, const char* ctx,
                       const StarItem* test, int n_test, cJSON* by_digits, double* tok_per_s) {
    Toks* prompts = xmalloc(sizeof(Toks) * (size_t)n_test);
    for (int i = 0; i < n_test; i++) {
        char* p = star_prompt(task, test[i].question, NULL);
        char* full = xsprintf("%s%s", ctx, p);
        prompts[i] = encode(tok, full, 1);
        free(p), free(full);
    }
    char** texts = xmalloc(sizeof(char*) * (size_t)n_test);
    Toks* out = xmalloc(sizeof(Toks) * (size_t)n_test);
    generate_all(m, tok, s, task, prompts, n_test, texts, out, "test", tok_per_s);
    int right = 0, per_right[STAR_ARITH_MAX_DIGITS + 1] = {0}, per_n[STAR_ARITH_MAX_DIGITS + 1] = {0};
    for (int i = 0; i < n_test; i++) {
        int ok = star_is_correct(task, texts[i], test[i].gold);
        right += ok;
        per_right[test[i].digits] += ok;
        per_n[test[i].digits]++;
        free(texts[i]), free(out[i].ids), free(prompts[i].ids);
    }
    if (task == STAR_TASK_ARITH)
        for (int d = 1; d <= STAR_ARITH_MAX_DIGITS; d++)
            if (per_n[d]) {
                char key[8];
                snprintf(key, sizeof key, "%d", d);
                cJSON_AddNumberToObject(by_digits, key, (double)per_right[d] / per_n[d]);
            }
    free(texts), free(out), free(prompts);
    return n_test ? (double)right / n_test : 0;
}

// RUN_DIR/generations_NNN.jsonl: every completion of iteration NNN, with its stage and verdict.
static AtomicFile atomic_open_fmt(const char* out, int iter) {
    char* p = xsprintf("%s/generations_%03d.jsonl", out, iter);
    AtomicFile f = atomic_open(p);
    free(p);
    return f;
}

static void write_generation(AtomicFile* f, int line, const char* stage, const char* text, int correct) {
    cJSON* o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "line", line);
    cJSON_AddStringToObject(o, "stage", stage);
    cJSON_AddStringToObject(o, "completion", text);
    cJSON_AddBoolToObject(o, "correct", correct);
    char* l = cJSON_PrintUnformatted(o);
    atomic_write(f, l, strlen(l));
    atomic_write(f, "\n", 1);
    free(l);
    cJSON_Delete(o);
}

// Stages 1 and 2 of an iteration: the fine-tuning examples (tokens) and the counts; every completion
// goes to generations_NNN.jsonl.
typedef struct {
    Example* ex;
    int n_ex, n_correct, n_rat;
    double gen_tps, rat_tps;
} Collected;

static Collected collect(Model* mp, const Tokenizer* tok, const Settings* sp, int task, const char* ctx,
                         const char* hctx, const StarItem* probs, int n_prob, int n_train, int64_t eos, int iter) {
    double gen_tps = 0, rat_tps = 0;
    // 1. generate
    Toks* prompts = xmalloc(sizeof(Toks) * (size_t)n_prob);
    for (int i = 0; i < n_prob; i++) {
        char* p = star_prompt(task, probs[i].question, NULL);
        char* full = xsprintf("%s%s", ctx, p);
        prompts[i] = encode(tok, full, 1);
        free(p), free(full);
    }
    char** texts = xmalloc(sizeof(char*) * (size_t)n_prob);
    Toks* outs = xmalloc(sizeof(Toks) * (size_t)n_prob);
    generate_all(mp, tok, sp, task, prompts, n_prob, texts, outs, "generate", &gen_tps);
    Example* ex = xmalloc(sizeof(Example) * (size_t)(2 * n_prob + n_train));
    int n_ex = 0, n_correct = 0, n_rat = 0;
    int* failed = xmalloc(sizeof(int) * (size_t)n_prob);
    int n_failed = 0;
    AtomicFile gf = atomic_open_fmt(sp->out, iter);
    for (int i = 0; i < n_prob; i++) {
        const int ok = star_is_correct(task, texts[i], probs[i].gold);
        write_generation(&gf, probs[i].line, "generate", texts[i], ok);
        if (ok) {
            char* p = star_prompt(task, probs[i].question, NULL);
            ex[n_ex].prompt = encode(tok, p, 1);
            free(p);
            ex[n_ex].completion = outs[i];
            outs[i].ids = NULL;
            n_ex++, n_correct++;
        } else {
            failed[n_failed++] = i;
        }
        free(texts[i]), free(outs[i].ids), free(prompts[i].ids);
    }
    // 2. rationalize the failures with the answer as a hint
    if (!sp->no_rationalize && n_failed) {
        Toks* hp = xmalloc(sizeof(Toks) * (size_t)n_failed);
        for (int k = 0; k < n_failed; k++) {
            const StarItem* it = &probs[failed[k]];
            char* h = hint_of(task, it);
            char* p = star_prompt(task, it->question, h);
            char* full = xsprintf("%s%s", hctx, p);
            hp[k] = encode(tok, full, 1);
            free(h), free(p), free(full);
        }
        generate_all(mp, tok, sp, task, hp, n_failed, texts, outs, "rationalize", &rat_tps);
        for (int k = 0; k < n_failed; k++) {
            const StarItem* it = &probs[failed[k]];
            const int ok = star_is_correct(task, texts[k], it->gold);
            write_generation(&gf, it->line, "rationalize", texts[k], ok);
            if (ok) {
                // stored as if no hint had been given: the hint-free prompt
                char* h = hint_of(task, it);
                char* hinted = star_prompt(task, it->question, h);
                char* plain = star_remove_hint(task, hinted, h);
                QSTAR_ASSERT(plain != NULL);
                ex[n_ex].prompt = encode(tok, plain, 1);
                ex[n_ex].completion = outs[k];
                outs[k].ids = NULL;
                n_ex++, n_rat++;
                free(h), free(hinted), free(plain);
            }
            free(texts[k]), free(outs[k].ids), free(hp[k].ids);
        }
        free(hp);
    }
    atomic_commit(&gf);
    if (sp->gold)
        for (int i = 0; i < n_prob; i++) {
            char* p = star_prompt(task, probs[i].question, NULL);
            char* c = exemplar_completion(task, &probs[i]);
            ex[n_ex].prompt = encode(tok, p, 1);
            ex[n_ex].completion = encode(tok, c, 0);
            n_ex++;
            free(p), free(c);
        }
    // every kept completion ends with EOS, so the fine-tuned model learns to stop
    if (eos >= 0)
        for (int i = 0; i < n_ex; i++) {
            Toks* c = &ex[i].completion;
            c->ids = xrealloc(c->ids, (size_t)c->n + 1, sizeof(int32_t));
            c->ids[c->n++] = (int32_t)eos;
        }
    free(failed), free(texts), free(outs), free(prompts);
    return (Collected){ex, n_ex, n_correct, n_rat, gen_tps, rat_tps};
}

// RUN_DIR/state.json: the last finished iteration, the settings, and (stage) how far the next one got.
static void write_state(const char* out, int finished, cJSON* stage, const cJSON* settings) {
    cJSON* state = cJSON_CreateObject();
    cJSON_AddNumberToObject(state, "iteration", finished);
    if (stage) cJSON_AddItemToObject(state, "stage", stage);
    cJSON_AddItemToObject(state, "settings", cJSON_Duplicate(settings, 1));
    char* st = cJSON_Print(state);
    char* sp = xsprintf("%s/state.json", out);
    write_file_atomic(sp, st, strlen(st));
    free(st), free(sp);
    cJSON_Delete(state);
}

static double json_num(const cJSON* o, const char* key) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) fatal("state.json: the stage has no number \"%s\"", key);
    return v->valuedouble;
}
static int json_int(const cJSON* o, const char* key) { return (int)json_num(o, key); }

// RUN_DIR/kept_NNN.jsonl: an iteration's fine-tuning examples as token ids, {"prompt": [...],
// "completion": [...]} per line, so a resumed iteration fine-tunes on exactly what was kept.
static void write_examples(const char* path, const Example* ex, int n) {
    AtomicFile f = atomic_open(path);
    for (int i = 0; i < n; i++) {
        cJSON* o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "prompt", cJSON_CreateIntArray(ex[i].prompt.ids, ex[i].prompt.n));
        cJSON_AddItemToObject(o, "completion", cJSON_CreateIntArray(ex[i].completion.ids, ex[i].completion.n));
        char* l = cJSON_PrintUnformatted(o);
        atomic_write(&f, l, strlen(l));
        atomic_write(&f, "\n", 1);
        free(l);
        cJSON_Delete(o);
    }
    atomic_commit(&f);
}

static Toks json_ids(const cJSON* a, const char* path, int line) {
    if (!cJSON_IsArray(a)) fatal("%s:%d: not a list of token ids", path, line);
    Toks t = {xmalloc(sizeof(int32_t) * (size_t)(cJSON_GetArraySize(a) + 1)), 0};
    const cJSON* v;
    cJSON_ArrayForEach(v, a) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0) fatal("%s:%d: a token id is not a non-negative number", path, line);
        t.ids[t.n++] = (int32_t)v->valuedouble;
    }
    return t;
}

static Example* read_examples(const char* path, int* n_out) {
    size_t len;
    char* text = read_file_maybe(path, &len);
    if (!text) fatal("%s: missing (the run's state says its generation finished)", path);
    int n = 0, cap = 16, line = 0;
    Example* ex = xmalloc(sizeof(Example) * (size_t)cap);
    for (char* p = text; *p;) {
        char* nl = strchr(p, '\n');
        if (nl) *nl = 0;
        line++;
        if (*p) {
            cJSON* o = cJSON_Parse(p);
            if (!cJSON_IsObject(o)) fatal("%s:%d: not a JSON object", path, line);
            if (n == cap) ex = xrealloc(ex, (size_t)(cap *= 2), sizeof(Example));
            ex[n].prompt = json_ids(cJSON_GetObjectItemCaseSensitive(o, "prompt"), path, line);
            ex[n].completion = json_ids(cJSON_GetObjectItemCaseSensitive(o, "completion"), path, line);
            n++;
            cJSON_Delete(o);
        }
        if (!nl) break;
        p = nl + 1;
    }
    free(text);
    *n_out = n;
    return ex;
}

// ---- the command -----------------------------------------------------------------------------------------------

static void save_iteration(const char* out, int iter, const Model* m, const Tokenizer* tok) {
    char* dir = xsprintf("%s/iter_%03d", out, iter);
    char* tmp = xsprintf("%s/.tmp.iter_%03d", out, iter);
    char* cmd = xsprintf("rm -rf '%s'", tmp);
    if (system(cmd)) fatal("%s: cannot clear", tmp);
    free(cmd);
    mkdir_p(tmp);
    char* p = xsprintf("%s/model.safetensors", tmp);
    model_save_weights(m, p);
    free(p);
    p = xsprintf("%s/config.json", tmp);
    config_save(&m->cfg, p);
    free(p);
    p = xsprintf("%s/tokenizer.json", tmp);
    tok_save(tok, p);
    free(p);
    fsync_dir(tmp);
    if (rename(tmp, dir)) fatal("%s: cannot rename to %s", tmp, dir);
    fsync_dir(out);
    free(dir), free(tmp);
}

// A resumed run rewrites the records of the iterations it repeats (one that wrote its record but
// stopped before its state.json).
static void keep_metrics_before(const char* path, int iter) {
    size_t len;
    char* text = read_file_maybe(path, &len);
    if (!text) return;
    char* keep = xmalloc(len + 1);
    size_t k = 0;
    for (char* line = text; *line;) {
        char* nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
        cJSON* o = cJSON_ParseWithLength(line, n);
        const cJSON* it = cJSON_GetObjectItemCaseSensitive(o, "iteration");
        if (cJSON_IsNumber(it) && it->valueint < iter) memcpy(keep + k, line, n), k += n;
        cJSON_Delete(o);
        line += n;
    }
    write_file_atomic(path, keep, k);
    free(keep);
    free(text);
}

int cmd_selftrain(int argc, char** argv) {
    Settings s = {.method = "star", .device = "cpu", .iterations = 3, .start_steps = 40, .grow = 1.2f, .batch = 8,
                  .seq = 256, .lr = 1e-6f, .warmup = 100, .grad_clip = 1.0f, .shots = 3, .max_tokens = 96,
                  .gen_batch = 16, .seed = 1};
    ArgSpec specs[] = {
        {"method", ARG_STR, &s.method, "star (rft, vstar, stepdpo: not yet)"},
        {"model", ARG_STR, &s.model, "the starting checkpoint (with tokenizer.json); every iteration fine-tunes it"},
        {"task", ARG_STR, &s.task, "arith | gsm8k"},
        {"train", ARG_STR, &s.train, "training problems (JSONL; the first --shots are the few-shot exemplars)"},
        {"test", ARG_STR, &s.test, "test problems (JSONL)"},
        {"out", ARG_STR, &s.out, "run directory"},
        {"resume", ARG_STR, &s.resume, "continue the run in this directory after its last finished iteration"},
        {"iterations", ARG_INT, &s.iterations, "outer iterations"},
        {"start-steps", ARG_INT, &s.start_steps, "fine-tuning steps of iteration 1"},
        {"grow", ARG_FLOAT, &s.grow, "steps of iteration n: int(start_steps * grow^(n-1))"},
        {"batch", ARG_INT, &s.batch, "sequences per fine-tuning step"},
        {"seq", ARG_INT, &s.seq, "fine-tuning row length (one example per row, padded)"},
        {"lr", ARG_FLOAT, &s.lr, "Adam learning rate (STaR: 1e-6 after 100 warmup steps, constant)"},
        {"warmup", ARG_INT, &s.warmup, "linear warmup steps"},
        {"grad-clip", ARG_FLOAT, &s.grad_clip, "global gradient-norm clip (0: off)"},
        {"shots", ARG_INT, &s.shots, "few-shot exemplars in the generation prompt"},
        {"max-tokens", ARG_INT, &s.max_tokens, "most tokens per completion (STaR: 96)"},
        {"gen-batch", ARG_INT, &s.gen_batch, "requests in flight while generating"},
        {"no-rationalize", ARG_FLAG, &s.no_rationalize, "skip rationalization of failures"},
        {"keep-all", ARG_FLAG, &s.keep_all, "keep every iteration's checkpoint (default: only the newest)"},
        {"gold", ARG_FLAG, &s.gold, "also fine-tune on the reference solutions (V-STaR's D_SFT)"},
        {"n-train", ARG_INT, &s.n_train, "use only the first N training problems (0: all)"},
        {"n-test", ARG_INT, &s.n_test, "use only the first N test problems (0: all)"},
        {"seed", ARG_INT, &s.seed, "seed of the fine-tuning order"},
        {"device", ARG_STR, &s.device, "backend"},
        {"make-arith", ARG_STR, &s.make_arith, "write an arith task file of --make-n problems (--digits, --seed) and exit"},
        {"make-n", ARG_INT, &s.make_n, "problems in --make-arith's file"},
        {"digits", ARG_STR, &s.digits, "operand lengths of --make-arith, LO-HI (cycled)"},
    };
    const int n_specs = (int)(sizeof specs / sizeof specs[0]);
    args_parse(argc, argv, specs, n_specs,
               "usage: qstar selftrain --method star --model DIR --task arith|gsm8k --train FILE --test FILE\n"
               "                       --out RUN_DIR [options]   |   qstar selftrain --resume RUN_DIR\n\n"
               "STaR: generate, rationalize failures with the answer as a hint, fine-tune the original model on\n"
               "the correct completions, evaluate; one metrics.jsonl line per iteration.");
    if (s.make_arith) {
        int lo = 1, hi = 5;
        if (s.digits && (sscanf(s.digits, "%d-%d", &lo, &hi) != 2 || lo < 1 || hi > STAR_ARITH_MAX_DIGITS || lo > hi))
            fatal("selftrain: --digits \"%s\": expected LO-HI within 1-%d", s.digits, STAR_ARITH_MAX_DIGITS);
        if (s.make_n < 1) fatal("selftrain: --make-arith needs --make-n >= 1");
        star_arith_write_file(s.make_arith, (uint64_t)s.seed, s.make_n, lo, hi);
        fprintf(stderr, "selftrain: %d arith problems (%d-%d digits, seed %d) -> %s\n", s.make_n, lo, hi, s.seed,
                s.make_arith);
        return 0;
    }
    cJSON* saved = NULL;
    int first_iter = 1;
    if (s.resume) {
        char* sp = xsprintf("%s/state.json", s.resume);
        size_t len;
        char* text = read_file_maybe(sp, &len);
        if (!text) fatal("%s: no state.json (not a selftrain run, or it stopped before its first generation finished)", s.resume);
        saved = cJSON_Parse(text);
        free(text);
        const cJSON* it = cJSON_GetObjectItemCaseSensitive(saved, "iteration");
        const cJSON* st = cJSON_GetObjectItemCaseSensitive(saved, "settings");
        if (!cJSON_IsNumber(it) || !cJSON_IsObject(st)) fatal("%s: malformed (need iteration and settings)", sp);
        args_from_json(specs, n_specs, st, sp);
        first_iter = it->valueint + 1;
        if (!args_given(specs, n_specs, "out")) s.out = s.resume;
        free(sp);
    }
    if (strcmp(s.method, "star"))
        fatal("selftrain: --method %s is not implemented yet (star is; rft, vstar and stepdpo are next)", s.method);
    if (!s.model || !s.task || !s.train || !s.test || !s.out)
        fatal("selftrain: --model, --task, --train, --test and --out are required");
    const int task = star_task_from_name(s.task);
    if (task < 0) fatal("selftrain: unknown --task \"%s\" (arith or gsm8k)", s.task);
    if (s.iterations < 1 || s.start_steps < 0 || s.batch < 1 || s.seq < 2 || s.shots < 0 || s.max_tokens < 1 ||
        s.gen_batch < 1 || !(s.grow > 0) || !(s.lr >= 0))
        fatal("selftrain: need --iterations, --batch, --max-tokens, --gen-batch >= 1, --seq >= 2, --grow > 0");
    const Backend* be = backend_select(s.device, NULL);

    int n_train, n_test, n_train_all, n_test_all;
    StarItem* train = star_load_tasks(s.train, task, &n_train_all);
    StarItem* test = star_load_tasks(s.test, task, &n_test_all);
    n_train = n_train_all, n_test = n_test_all;
    if (s.n_train > 0 && s.n_train < n_train) n_train = s.n_train;
    if (s.n_test > 0 && s.n_test < n_test) n_test = s.n_test;
    if (s.shots >= n_train) fatal("%s: %d problems, fewer than --shots %d + 1", s.train, n_train, s.shots);
    char* tok_path = xsprintf("%s/tokenizer.json", s.model);
    Tokenizer* tok = tok_load(tok_path);
    ModelConfig cfg;
    config_load(&cfg, s.model);
    Model m;
    model_create(&m, &cfg, be);
    const int64_t eos = tok_eos_id(tok);
    const int pad = eos >= 0 ? (int)eos : 0;

    mkdir_p(s.out);
    char* metrics_path = xsprintf("%s/metrics.jsonl", s.out);
    cJSON* settings = args_to_json(specs, n_specs);
    cJSON_DeleteItemFromObject(settings, "resume");
    if (first_iter == 1) write_file_atomic(metrics_path, "", 0);
    else keep_metrics_before(metrics_path, first_iter);
    args_print_table(specs, n_specs);

    char* ctx = few_shot(task, train, s.shots, 0);
    char* hctx = few_shot(task, train, s.shots, 1);
    const int n_prob = n_train - s.shots;  // the exemplars are not training problems
    const StarItem* probs = train + s.shots;

    for (int iter = first_iter; iter <= s.iterations; iter++) {
        double t_iter = now_seconds();
        fault_set_context(0, iter);
        // a resumed iteration may have finished its generation or its fine-tuning already
        const cJSON* part = iter == first_iter && saved ? cJSON_GetObjectItemCaseSensitive(saved, "stage") : NULL;
        const cJSON* part_done = part ? cJSON_GetObjectItemCaseSensitive(part, "done") : NULL;
        const char* done = cJSON_IsString(part_done) ? part_done->valuestring : "";
        fprintf(stderr, "selftrain: iteration %d/%d%s%s\n", iter, s.iterations, *done ? ", resumed after " : "", done);
        double ft_tps = 0, test_tps = 0;
        Collected col;
        char* kept_path = xsprintf("%s/kept_%03d.jsonl", s.out, iter);
        if (*done) {
            col.ex = read_examples(kept_path, &col.n_ex);
            col.n_correct = json_int(part, "correct");
            col.n_rat = json_int(part, "rationalized");
            col.gen_tps = json_num(part, "generate_tokens_per_s");
            col.rat_tps = json_num(part, "rationalize_tokens_per_s");
        } else {
            // M_{n-1}: the original model, or the previous iteration's
            char* prev = iter == 1 ? xstrdup(s.model) : xsprintf("%s/iter_%03d", s.out, iter - 1);
            model_load_weights(&m, prev);
            free(prev);
            col = collect(&m, tok, &s, task, ctx, hctx, probs, n_prob, n_train, eos, iter);
            write_examples(kept_path, col.ex, col.n_ex);
            cJSON* st = cJSON_CreateObject();
            cJSON_AddNumberToObject(st, "iteration", iter);
            cJSON_AddStringToObject(st, "done", "generate");
            cJSON_AddNumberToObject(st, "correct", col.n_correct);
            cJSON_AddNumberToObject(st, "rationalized", col.n_rat);
            cJSON_AddNumberToObject(st, "generate_tokens_per_s", col.gen_tps);
            cJSON_AddNumberToObject(st, "rationalize_tokens_per_s", col.rat_tps);
            write_state(s.out, iter - 1, st, settings);
            fault_point("after_generate");
        }
        free(kept_path);
        Example* ex = col.ex;
        const int n_ex = col.n_ex, n_correct = col.n_correct, n_rat = col.n_rat;
        const double gen_tps = col.gen_tps, rat_tps = col.rat_tps;
        // 3. fine-tune the original model
        const int steps = n_ex ? (int)(s.start_steps * pow(s.grow, iter - 1)) : 0;
        double loss;
        if (!strcmp(done, "finetune")) {
            char* dir = xsprintf("%s/iter_%03d", s.out, iter);
            model_load_weights(&m, dir);
            free(dir);
            loss = json_num(part, "loss");
            ft_tps = json_num(part, "finetune_tokens_per_s");
        } else {
            model_load_weights(&m, s.model);
            loss = steps ? finetune(&m, &s, ex, n_ex, steps, pad, (uint64_t)(s.seed * 1000 + iter), &ft_tps) : 0;
            if (!n_ex) fprintf(stderr, "  nothing kept: M_%d is the original model\n", iter);
            save_iteration(s.out, iter, &m, tok);
            cJSON* st = cJSON_CreateObject();
            cJSON_AddNumberToObject(st, "iteration", iter);
            cJSON_AddStringToObject(st, "done", "finetune");
            cJSON_AddNumberToObject(st, "correct", n_correct);
            cJSON_AddNumberToObject(st, "rationalized", n_rat);
            cJSON_AddNumberToObject(st, "generate_tokens_per_s", gen_tps);
            cJSON_AddNumberToObject(st, "rationalize_tokens_per_s", rat_tps);
            cJSON_AddNumberToObject(st, "loss", loss);
            cJSON_AddNumberToObject(st, "finetune_tokens_per_s", ft_tps);
            write_state(s.out, iter - 1, st, settings);
            fault_point("after_finetune");
        }
        for (int i = 0; i < n_ex; i++) free(ex[i].prompt.ids), free(ex[i].completion.ids);
        free(ex);
        // 4. evaluate M_n
        cJSON* by_digits = cJSON_CreateObject();
        double acc = evaluate(&m, tok, &s, task, ctx, test, n_test, by_digits, &test_tps);

        cJSON* rec = cJSON_CreateObject();
        cJSON_AddNumberToObject(rec, "iteration", iter);
        cJSON_AddNumberToObject(rec, "train_problems", n_prob);
        cJSON_AddNumberToObject(rec, "correct", n_correct);
        cJSON_AddNumberToObject(rec, "rationalized", n_rat);
        cJSON_AddNumberToObject(rec, "kept", n_correct + n_rat);
        cJSON_AddNumberToObject(rec, "train_accuracy", n_prob ? (double)n_correct / n_prob : 0);
        cJSON_AddNumberToObject(rec, "finetune_examples", n_ex);
        cJSON_AddNumberToObject(rec, "steps", steps);
        cJSON_AddNumberToObject(rec, "loss", loss);
        cJSON_AddNumberToObject(rec, "test_problems", n_test);
        cJSON_AddNumberToObject(rec, "test_accuracy", acc);
        if (task == STAR_TASK_ARITH) cJSON_AddItemToObject(rec, "test_accuracy_by_digits", by_digits);
        else cJSON_Delete(by_digits);
        cJSON_AddNumberToObject(rec, "generate_tokens_per_s", gen_tps);
        cJSON_AddNumberToObject(rec, "rationalize_tokens_per_s", rat_tps);
        cJSON_AddNumberToObject(rec, "finetune_tokens_per_s", ft_tps);
        cJSON_AddNumberToObject(rec, "test_tokens_per_s", test_tps);
        cJSON_AddNumberToObject(rec, "seconds", now_seconds() - t_iter);
        char* line = cJSON_PrintUnformatted(rec);
        FILE* f = fopen(metrics_path, "a");
        if (!f) fatal("%s: cannot open for writing", metrics_path);
        fprintf(f, "%s\n", line);
        fclose(f);
        printf("%s\n", line);
        fflush(stdout);
        free(line);
        cJSON_Delete(rec);
        // the iteration is finished once state.json says so
        write_state(s.out, iter, NULL, settings);
        if (!s.keep_all && iter > 1) {  // M_{n-1} is needed no more: the next iteration starts from M_n
            char* cmd = xsprintf("rm -rf '%s/iter_%03d'", s.out, iter - 1);
            if (system(cmd)) fprintf(stderr, "selftrain: warning: could not remove iteration %d's checkpoint\n", iter - 1);
            free(cmd);
        }
    }
    free(ctx), free(hctx), free(metrics_path), free(tok_path);
    cJSON_Delete(settings);
    cJSON_Delete(saved);
    star_free_tasks(train, n_train_all);
    star_free_tasks(test, n_test_all);
    tok_free(tok);
    model_destroy(&m);
    return 0;
}
