/*
 * V-STaR's last two stages (Hosseini et al., docs/star-family.md §4.2, §4.3), after the generator
 * iterations of cmd_selftrain.c have stored every sample with its label (verifier_NNN.jsonl, D_VER):
 *
 *   verifier  the preference pairs of each problem (every correct x incorrect sample of it, at most
 *             --pairs-per-problem, a seeded choice), DPO from the starting model (G_SFT: the verifier's
 *             start and its frozen reference, whose log-probabilities are computed once and cached in
 *             verifier_ref.bin); RUN_DIR/verifier/ holds it;
 *   test      --test-samples candidates per test problem from the last generator at --temperature;
 *             Pass@1 (the mean fraction of right candidates), majority vote over their answers, and
 *             best-of-k with the verifier's score (its summed log-probability of the candidate, V(y|x))
 *             by the unbiased estimator of V-STaR Eq. 3, for k = 1, 2, 4, ... N; the same with the
 *             generator's own likelihood as the score, the baseline that shows what the verifier adds.
 * One metrics.jsonl record per stage; state.json says which finished, so --resume continues after it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/jsonl.h"
#include "selftrain/selftrain.h"
#include "io/weights.h"

typedef struct {
    int problem, correct;
    Toks prompt, completion;
} VerSample;

static VerSample* read_verifier_data(const char* path, int vocab, VerSample* v, int* n) {
    Jsonl r;
    if (!jsonl_open(&r, path)) fatal("%s: missing (the generator iterations write it)", path);
    while (jsonl_next(&r)) {
        if (!cJSON_IsObject(r.value)) fatal("%s:%d: %s", path, r.line, jsonl_not_object(&r));
        const cJSON* o = r.value;
        const cJSON* pr = cJSON_GetObjectItemCaseSensitive(o, "problem");
        const cJSON* ok = cJSON_GetObjectItemCaseSensitive(o, "correct");
        const cJSON* a = cJSON_GetObjectItemCaseSensitive(o, "prompt");
        const cJSON* c = cJSON_GetObjectItemCaseSensitive(o, "completion");
        if (!cJSON_IsObject(o) || !cJSON_IsNumber(pr) || !cJSON_IsBool(ok) || !cJSON_IsArray(a) || !cJSON_IsArray(c))
            fatal("%s:%d: not a verifier sample (problem, prompt, completion, correct)", path, r.line);
        v = xrealloc(v, (size_t)*n + 1, sizeof(VerSample));
        VerSample* s = &v[(*n)++];
        s->problem = pr->valueint;
        s->correct = cJSON_IsTrue(ok);
        s->prompt = st_json_ids(a, vocab, path, r.line);
        s->completion = st_json_ids(c, vocab, path, r.line);
    }
    jsonl_close(&r);
    return v;
}

// The verifier's pairs from D_VER: per problem, correct x incorrect (star_preference_pairs), capped.
static Pair* build_pairs(const RunCtx* rc, const VerSample* v, int n, int* n_pairs, int* problems_with_pairs) {
    const Settings* s = rc->s;
    Pair* out = NULL;
    int np = 0, with = 0;
    int* idx = xmalloc(sizeof(int) * (size_t)(n + 1));
    int* corr = xmalloc(sizeof(int) * (size_t)(n + 1));
    for (int p = 0; p < rc->n_prob; p++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (v[i].problem == p) idx[m] = i, corr[m] = v[i].correct, m++;
        int c = 0;
        for (int i = 0; i < m; i++) c += corr[i];
        if (!c || c == m) continue;
        int(*pp)[2] = xmalloc(sizeof(int[2]) * (size_t)c * (size_t)(m - c));
        int k = star_preference_pairs(corr, m, pp);
        // a seeded choice of --pairs-per-problem of them (partial Fisher-Yates), in their original order
        if (s->pairs_per_problem > 0 && k > s->pairs_per_problem) {
            uint64_t st = ((uint64_t)s->seed << 32) ^ (uint64_t)(p + 1) * 0x9E3779B97F4A7C15ull;
            int* pick = xmalloc(sizeof(int) * (size_t)k);
            for (int i = 0; i < k; i++) pick[i] = i;
            for (int i = 0; i < s->pairs_per_problem; i++) {
                st = st * 6364136223846793005ull + 1442695040888963407ull;
                int j = i + (int)((st >> 33) % (uint64_t)(k - i));
                int t = pick[i];
                pick[i] = pick[j], pick[j] = t;
            }
            char* take = xcalloc((size_t)k, 1);
            for (int i = 0; i < s->pairs_per_problem; i++) take[pick[i]] = 1;
            int w = 0;
            for (int i = 0; i < k; i++)
                if (take[i]) pp[w][0] = pp[i][0], pp[w][1] = pp[i][1], w++;
            k = w;
            free(pick), free(take);
        }
        out = xrealloc(out, (size_t)(np + k + 1), sizeof(Pair));
        for (int i = 0; i < k; i++) {
            const VerSample *a = &v[idx[pp[i][0]]], *b = &v[idx[pp[i][1]]];
            out[np++] = (Pair){a->prompt, a->completion, b->completion, 1.0f};  // views into v
        }
        with++;
        free(pp);
    }
    free(idx), free(corr);
    *n_pairs = np;
    *problems_with_pairs = with;
    return out;
}

// A float option as it was written (0.1, not 0.10000000149011612) for the record.
static double round_float(float x) {
    char b[32];
    snprintf(b, sizeof b, "%g", x);
    return strtod(b, NULL);
}

// A metrics record of a final stage ({"iteration", "method", "stage"}, the stage's fields to follow),
// and its end: the stage's seconds since t0, appended to metrics.jsonl.
static cJSON* stage_record(const Settings* s, const char* stage) {
    cJSON* rec = cJSON_CreateObject();
    cJSON_AddNumberToObject(rec, "iteration", s->iterations);
    cJSON_AddStringToObject(rec, "method", "vstar");
    cJSON_AddStringToObject(rec, "stage", stage);
    return rec;
}

static void append_record(const Settings* s, cJSON* rec, double t0) {
    cJSON_AddNumberToObject(rec, "seconds", now_seconds() - t0);
    st_metrics_append(s->out, rec);
    cJSON_Delete(rec);
}

static void train_verifier(Model* m, const RunCtx* rc) {
    const Settings* s = rc->s;
    const double t0 = now_seconds();
    VerSample* v = NULL;
    int n = 0;
    for (int it = 1; it <= s->iterations; it++) {
        char* p = xsprintf("%s/verifier_%03d.jsonl", s->out, it);
        v = read_verifier_data(p, rc->vocab, v, &n);
        free(p);
    }
    int correct = 0;
    for (int i = 0; i < n; i++) correct += v[i].correct;
    int n_pairs, with;
    Pair* pairs = build_pairs(rc, v, n, &n_pairs, &with);
    fprintf(stderr, "selftrain: vstar verifier: %d samples (%d correct), %d pairs over %d problems\n", n, correct, n_pairs,
            with);
    model_load_weights(m, s->model);  // G_SFT
    char* cache = xsprintf("%s/verifier_ref.bin", s->out);
    DpoRun run = st_dpo_train(m, s, pairs, n_pairs, s->dpo_steps, rc->pad, cache, (uint64_t)s->seed * 7919 + 1, "verifier");
    if (!n_pairs) fprintf(stderr, "  no (correct, incorrect) pair: the verifier is the starting model\n");
    st_save_checkpoint(s->out, "verifier", m, rc->tok);
    cJSON* rec = stage_record(s, "verifier");
    cJSON_AddNumberToObject(rec, "verifier_samples", n);
    cJSON_AddNumberToObject(rec, "correct_samples", correct);
    cJSON_AddNumberToObject(rec, "pairs", n_pairs);
    cJSON_AddNumberToObject(rec, "problems_with_pairs", with);
    cJSON_AddNumberToObject(rec, "dpo_steps", run.steps);
    cJSON_AddNumberToObject(rec, "beta", round_float(s->beta));
    st_record_dpo(rec, &run);
    append_record(s, rec, t0);
    for (int i = 0; i < n; i++) free(v[i].prompt.ids), free(v[i].completion.ids);
    free(v), free(pairs), free(cache);
}

static void test_candidates(Model* m, const RunCtx* rc) {
    const Settings* s = rc->s;
    const double t0 = now_seconds();
    const int N = s->test_samples, nt = rc->n_test, n = nt * N;
    char* gen = xsprintf("%s/iter_%03d", s->out, s->iterations);
    model_load_weights(m, gen);
    free(gen);
    Toks* prompts = xmalloc(sizeof(Toks) * (size_t)(n + 1));
    uint32_t* sample = xmalloc(sizeof(uint32_t) * (size_t)(n + 1));
    Example* rows = xmalloc(sizeof(Example) * (size_t)(n + 1));
    for (int i = 0; i < nt; i++) {
        char* p = star_prompt(rc->task, rc->test[i].question, NULL);
        char* full = xsprintf("%s%s", rc->ctx, p);
        Toks t = st_encode(rc->tok, full, 1);
        for (int j = 0; j < N; j++) prompts[i * N + j] = t, sample[i * N + j] = (uint32_t)(i * N + j);
        free(p), free(full);
    }
    char** texts = xmalloc(sizeof(char*) * (size_t)(n + 1));
    Toks* outs = xmalloc(sizeof(Toks) * (size_t)(n + 1));
    double tps = 0;
    st_generate(m, rc->tok, s, rc->task, prompts, sample, NULL, n, s->temperature, texts, outs, "candidates", &tps);
    int* correct = xmalloc(sizeof(int) * (size_t)(n + 1));
    double pass1 = 0, maj = 0;
    for (int i = 0; i < nt; i++) {
        // the verifier reads the candidate after the hint-free prompt, without the few-shot context
        char* p = star_prompt(rc->task, rc->test[i].question, NULL);
        int c = 0;
        for (int j = 0; j < N; j++) {
            const int r = i * N + j;
            correct[r] = star_is_correct(rc->task, texts[r], rc->test[i].gold);
            c += correct[r];
            rows[r].prompt = st_encode(rc->tok, p, 1);
            rows[r].completion = outs[r];
        }
        free(p);
        pass1 += (double)c / N / (nt ? nt : 1);
        maj += (double)st_majority_correct(rc->task, (const char* const*)(texts + (size_t)i * N), N, rc->test[i].gold) / (nt ? nt : 1);
        free(prompts[i * N].ids);
    }
    double* gen_score = xmalloc(sizeof(double) * (size_t)(n + 1));
    double* ver_score = xmalloc(sizeof(double) * (size_t)(n + 1));
    st_score(m, s, rows, n, rc->pad, gen_score, "score (gen)");
    char* ver = xsprintf("%s/verifier", s->out);
    model_load_weights(m, ver);
    free(ver);
    st_score(m, s, rows, n, rc->pad, ver_score, "score (ver)");
    cJSON* bok_v = cJSON_CreateObject();
    cJSON* bok_g = cJSON_CreateObject();
    for (int k = 1;; k = k * 2 > N && k < N ? N : k * 2) {
        double bv = 0, bg = 0;
        for (int i = 0; i < nt; i++) {
            bv += star_best_of_k(ver_score + (size_t)i * N, correct + (size_t)i * N, N, k) / nt;
            bg += star_best_of_k(gen_score + (size_t)i * N, correct + (size_t)i * N, N, k) / nt;
        }
        char key[16];
        snprintf(key, sizeof key, "%d", k);
        cJSON_AddNumberToObject(bok_v, key, bv);
        cJSON_AddNumberToObject(bok_g, key, bg);
        if (k >= N) break;
    }
    // every candidate with its verdict and both scores
    AtomicFile f = st_open_generations(s->out, "test_candidates", s->iterations);
    for (int r = 0; r < n; r++) {
        cJSON* o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "line", rc->test[r / N].line);
        cJSON_AddNumberToObject(o, "sample", r % N);
        cJSON_AddStringToObject(o, "completion", texts[r]);
        cJSON_AddBoolToObject(o, "correct", correct[r]);
        cJSON_AddNumberToObject(o, "verifier_logp", ver_score[r]);
        cJSON_AddNumberToObject(o, "generator_logp", gen_score[r]);
        jsonl_write(&f, o);
    }
    atomic_commit(&f);
    cJSON* rec = stage_record(s, "test");
    cJSON_AddNumberToObject(rec, "test_problems", nt);
    cJSON_AddNumberToObject(rec, "candidates_per_problem", N);
    cJSON_AddNumberToObject(rec, "pass_at_1", pass1);
    cJSON_AddNumberToObject(rec, "majority_vote", maj);
    cJSON_AddItemToObject(rec, "best_of_k_verifier", bok_v);
    cJSON_AddItemToObject(rec, "best_of_k_generator", bok_g);
    cJSON_AddNumberToObject(rec, "candidate_tokens_per_s", tps);
    append_record(s, rec, t0);
    for (int r = 0; r < n; r++) free(texts[r]), free(rows[r].prompt.ids), free(rows[r].completion.ids);
    free(prompts), free(sample), free(rows), free(texts), free(outs), free(correct), free(gen_score), free(ver_score);
}

void vstar_final(Model* m, const RunCtx* rc, const cJSON* saved_stage) {
    const Settings* s = rc->s;
    const cJSON* d = saved_stage ? cJSON_GetObjectItemCaseSensitive(saved_stage, "done") : NULL;
    const char* done = cJSON_IsString(d) ? d->valuestring : "";
    fault_set_context(0, s->iterations + 1);
    if (!strcmp(done, "test")) {
        fprintf(stderr, "selftrain: the run in %s is finished (its verifier and test records are in metrics.jsonl)\n", s->out);
        return;
    }
    if (strcmp(done, "verifier")) {
        train_verifier(m, rc);
        cJSON* st = cJSON_CreateObject();
        cJSON_AddStringToObject(st, "done", "verifier");
        st_write_state(s->out, s->iterations, st, rc->settings);
        fault_point("after_verifier");
    } else {
        fprintf(stderr, "selftrain: vstar: resumed after the verifier\n");
    }
    test_candidates(m, rc);
    cJSON* st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "done", "test");
    st_write_state(s->out, s->iterations, st, rc->settings);
}
