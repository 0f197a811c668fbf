/*
 * Per-step DPO on incorrect synthetic data (Setlur et al., docs/star-family.md §5). One iteration n:
 *
 *   generate  --samples completions per training problem from M_{n-1} (= π_sft for n = 1) at
 *             --temperature, judged right or wrong (generations_NNN.jsonl);
 *   rollouts  each distinct wrong completion of a problem (at most --negatives) is split into steps
 *             (lines, star_split_steps); from every step prefix ŷ_{1:i} M_{n-1} completes --rollouts
 *             continuations, and Q_i is estimated from how many reach the right answer (--q-estimator:
 *             any = Q of best-of-M, the paper's practical choice; mean = the fraction). Q_0 is the bare
 *             question's (shared by a problem's negatives); a complete wrong solution has Q_L = 0
 *             without rollouts. A_i = Q_i − Q_{i−1}; the critical step c is the first index attaining
 *             min_{i>=1} Q_i when A_c < −--pit-threshold (the "first pit"). Its pair contrasts, after
 *             the shared prefix ŷ_{1:c−1}, a continuation from that prefix that reached the right
 *             answer (chosen) with the step ŷ_c (rejected: the negative truncated right after its pit).
 *             The shared prefix is part of the pair's prompt: its log-probabilities are the same in
 *             both responses and cancel in the DPO margin, so the loss is the paper's (x, y+, ŷ_{1:c})
 *             with y+ sharing the prefix. steps_NNN.jsonl holds every negative's Q and advantages,
 *             pairs_NNN.jsonl the pairs (token ids);
 *   dpo       DPO from M_{n-1}, which is also the frozen reference (log-probabilities cached in
 *             dpo_ref_NNN.bin); each pair weighs −A_c (--pair-weight advantage) or 1 (uniform);
 *   evaluate  M_n greedy on the test problems.
 * One metrics.jsonl record per iteration; state.json records each finished stage for --resume.
 */
#include <math.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "io/jsonl.h"
#include "selftrain/selftrain.h"
#include "io/weights.h"

typedef struct {
    char** texts;
    int* correct;
    int n;
} Samples;

static Samples read_samples(const char* path, int n_expected) {
    Jsonl r;
    if (!jsonl_open(&r, path)) fatal("%s: missing (the run's state says its generation finished)", path);
    Samples s = {xmalloc(sizeof(char*) * (size_t)(n_expected + 1)), xmalloc(sizeof(int) * (size_t)(n_expected + 1)), 0};
    while (jsonl_next(&r)) {
        if (!cJSON_IsObject(r.value)) fatal("%s:%d: %s", path, r.line, jsonl_not_object(&r));
        const cJSON* c = cJSON_GetObjectItemCaseSensitive(r.value, "completion");
        const cJSON* ok = cJSON_GetObjectItemCaseSensitive(r.value, "correct");
        if (!cJSON_IsString(c) || !cJSON_IsBool(ok) || s.n == n_expected)
            fatal("%s:%d: not one of the %d generation records expected", path, r.line, n_expected);
        s.texts[s.n] = xstrdup(c->valuestring);
        s.correct[s.n++] = cJSON_IsTrue(ok);
    }
    jsonl_close(&r);
    if (s.n != n_expected) fatal("%s: %d generation records, expected %d", path, s.n, n_expected);
    return s;
}

static void free_samples(Samples* s) {
    for (int i = 0; i < s->n; i++) free(s->texts[i]);
    free(s->texts), free(s->correct);
}

static Samples generate_stage(Model* m, const RunCtx* rc, int iter, double* tps) {
    const Settings* s = rc->s;
    const int k = s->samples, n = rc->n_prob * k;
    Toks* prompts = xmalloc(sizeof(Toks) * (size_t)(n + 1));
    uint32_t* sample = xmalloc(sizeof(uint32_t) * (size_t)(n + 1));
    for (int i = 0; i < rc->n_prob; i++) {
        char* p = star_prompt(rc->task, rc->probs[i].question, NULL);
        char* full = xsprintf("%s%s", rc->ctx, p);
        Toks t = st_encode(rc->tok, full, 1);
        for (int j = 0; j < k; j++) prompts[i * k + j] = t, sample[i * k + j] = (uint32_t)((uint64_t)(iter - 1) * n + i * k + j);
        free(p), free(full);
    }
    Samples out = {xmalloc(sizeof(char*) * (size_t)(n + 1)), xmalloc(sizeof(int) * (size_t)(n + 1)), n};
    Toks* toks = xmalloc(sizeof(Toks) * (size_t)(n + 1));
    st_generate(m, rc->tok, s, rc->task, prompts, sample, NULL, n, s->temperature, out.texts, toks, "sample", tps);
    AtomicFile f = st_open_generations(s->out, "generations", iter);
    for (int r = 0; r < n; r++) {
        const StarItem* it = &rc->probs[r / k];
        out.correct[r] = star_is_correct(rc->task, out.texts[r], it->gold);
        st_write_generation(&f, it->line, "sample", out.texts[r], out.correct[r], r % k);
        free(toks[r].ids);
    }
    atomic_commit(&f);
    for (int i = 0; i < rc->n_prob; i++) free(prompts[i * k].ids);
    free(prompts), free(sample), free(toks);
    return out;
}

// One wrong completion under analysis: its steps and where its rollouts are among the requests.
typedef struct {
    int problem, sample, L, complete;
    int* starts;       // L + 1 step boundaries
    int first_req;     // rollouts of prefix i (1 .. last) start at first_req + (i-1)*M
    int last_prefix;   // L - 1 when complete (Q_L = 0 is known), else L
} Negative;

static void write_pair(AtomicFile* f, const Pair* p) {
    cJSON* o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "prompt", cJSON_CreateIntArray(p->prompt.ids, p->prompt.n));
    cJSON_AddItemToObject(o, "chosen", cJSON_CreateIntArray(p->chosen.ids, p->chosen.n));
    cJSON_AddItemToObject(o, "rejected", cJSON_CreateIntArray(p->rejected.ids, p->rejected.n));
    cJSON_AddNumberToObject(o, "weight", p->weight);
    jsonl_write(f, o);
}

static Pair* read_pairs(const char* path, int vocab, int* n_out) {
    Jsonl r;
    if (!jsonl_open(&r, path)) fatal("%s: missing (the run's state says its rollouts finished)", path);
    Pair* p = NULL;
    int n = 0;
    while (jsonl_next(&r)) {
        if (!cJSON_IsObject(r.value)) fatal("%s:%d: %s", path, r.line, jsonl_not_object(&r));
        const cJSON* o = r.value;
        const cJSON* w = cJSON_GetObjectItemCaseSensitive(o, "weight");
        if (!cJSON_IsObject(o) || !cJSON_IsNumber(w) || !(fabs(w->valuedouble) <= 1e30))  // a float weight
            fatal("%s:%d: not a pair (prompt, chosen, rejected, weight)", path, r.line);
        p = xrealloc(p, (size_t)n + 1, sizeof(Pair));
        p[n].prompt = st_json_ids(cJSON_GetObjectItemCaseSensitive(o, "prompt"), vocab, path, r.line);
        p[n].chosen = st_json_ids(cJSON_GetObjectItemCaseSensitive(o, "chosen"), vocab, path, r.line);
        p[n].rejected = st_json_ids(cJSON_GetObjectItemCaseSensitive(o, "rejected"), vocab, path, r.line);
        p[n].weight = (float)w->valuedouble;
        n++;
    }
    jsonl_close(&r);
    *n_out = n;
    return p;
}

static void free_pairs(Pair* p, int n) {
    for (int i = 0; i < n; i++) free(p[i].prompt.ids), free(p[i].chosen.ids), free(p[i].rejected.ids);
    free(p);
}

// The rollouts stage: Q-values, critical steps and pairs; its counts go into counts.
static Pair* rollouts_stage(Model* m, const RunCtx* rc, int iter, const Samples* smp, int* n_pairs, cJSON* counts) {
    const Settings* s = rc->s;
    const int k = s->samples, M = s->rollouts, task = rc->task;
    // the negatives: distinct wrong completions, at most --negatives per problem
    Negative* neg = xmalloc(sizeof(Negative) * (size_t)(smp->n + 1));
    int nn = 0, n_req = rc->n_prob * M;  // requests 0 .. n_prob*M-1: every problem's bare-question rollouts
    for (int i = 0; i < rc->n_prob; i++) {
        int taken = 0;
        for (int j = 0; j < k && taken < s->negatives; j++) {
            const int r = i * k + j;
            if (smp->correct[r]) continue;
            int dup = 0;
            for (int q = 0; q < j && !dup; q++) dup = !smp->correct[i * k + q] && !strcmp(smp->texts[i * k + q], smp->texts[r]);
            if (dup) continue;
            Negative* g = &neg[nn];
            g->problem = i, g->sample = j;
            g->L = star_split_steps(smp->texts[r], &g->starts);
            if (g->L == 0) {  // an empty completion has no step to blame
                free(g->starts);
                continue;
            }
            g->complete = st_completion_end(task, smp->texts[r]) != NULL;
            g->last_prefix = g->complete ? g->L - 1 : g->L;
            g->first_req = n_req;
            // every step prefix of every negative gets M rollouts: bounded like the other request counts
            if ((int64_t)g->last_prefix * M > (int64_t)INT_MAX - 1 - n_req)
                fatal("selftrain: stepdpo rollouts: steps of the wrong samples x --rollouts %d exceed %d requests "
                      "(lower --rollouts or --negatives)",
                      M, INT_MAX - 1);
            n_req += g->last_prefix * M;
            nn++, taken++;
        }
    }
    // the requests: prompt ++ prefix, the prefix also given as text so the completion cut sees it
    Toks* prompts = xmalloc(sizeof(Toks) * (size_t)(n_req + 1));
    char** prefixes = xmalloc(sizeof(char*) * (size_t)(n_req + 1));
    uint32_t* sample = xmalloc(sizeof(uint32_t) * (size_t)(n_req + 1));
    char** plain = xmalloc(sizeof(char*) * (size_t)(rc->n_prob + 1));
    for (int i = 0; i < rc->n_prob; i++) {
        plain[i] = star_prompt(task, rc->probs[i].question, NULL);
        char* full = xsprintf("%s%s", rc->ctx, plain[i]);
        Toks t = st_encode(rc->tok, full, 1);
        for (int j = 0; j < M; j++) prompts[i * M + j] = j ? st_toks_copy(t.ids, t.n) : t, prefixes[i * M + j] = xstrdup("");
        free(full);
    }
    for (int g = 0; g < nn; g++) {
        const Negative* ng = &neg[g];
        const char* text = smp->texts[ng->problem * k + ng->sample];
        for (int i = 1; i <= ng->last_prefix; i++) {
            char* pre = star_step_prefix(text, ng->starts, i);
            char* full = xsprintf("%s%s%s", rc->ctx, plain[ng->problem], pre);
            Toks t = st_encode(rc->tok, full, 1);
            for (int j = 0; j < M; j++) {
                const int r = ng->first_req + (i - 1) * M + j;
                prompts[r] = j ? st_toks_copy(t.ids, t.n) : t;
                prefixes[r] = xstrdup(pre);
            }
            free(pre), free(full);
        }
    }
    // sample keys apart from the generate stage's (which are below iterations * problems * samples)
    for (int r = 0; r < n_req; r++) sample[r] = 0x80000000u + (uint32_t)((uint64_t)(iter - 1) * (uint64_t)n_req + r);
    char** conts = xmalloc(sizeof(char*) * (size_t)(n_req + 1));
    Toks* ctoks = xmalloc(sizeof(Toks) * (size_t)(n_req + 1));
    double tps = 0;
    st_generate(m, rc->tok, s, task, prompts, sample, (const char* const*)prefixes, n_req, s->temperature, conts, ctoks,
                "rollouts", &tps);
    int* ok = xcalloc((size_t)n_req + 1, sizeof(int));
    for (int r = 0; r < rc->n_prob * M; r++) {
        char* all = xsprintf("%s%s", prefixes[r], conts[r]);
        ok[r] = star_is_correct(task, all, rc->probs[r / M].gold);
        free(all);
    }
    for (int g = 0; g < nn; g++)
        for (int r = neg[g].first_req; r < neg[g].first_req + neg[g].last_prefix * M; r++) {
            char* all = xsprintf("%s%s", prefixes[r], conts[r]);
            ok[r] = star_is_correct(task, all, rc->probs[neg[g].problem].gold);
            free(all);
        }

    // Q, advantages, the critical step and its pair, per negative
    const int est = !strcmp(s->q_estimator, "any") ? STAR_Q_ANY : STAR_Q_MEAN;
    Pair* pairs = xmalloc(sizeof(Pair) * (size_t)(nn + 1));
    int np = 0, critical = 0;
    double crit_frac = 0;
    AtomicFile sf = st_open_generations(s->out, "steps", iter);
    AtomicFile pf = st_open_generations(s->out, "pairs", iter);
    for (int g = 0; g < nn; g++) {
        const Negative* ng = &neg[g];
        const char* text = smp->texts[ng->problem * k + ng->sample];
        const int L = ng->L;
        int* succ = xcalloc((size_t)L + 1, sizeof(int));
        for (int j = 0; j < M; j++) succ[0] += ok[ng->problem * M + j];
        for (int i = 1; i <= ng->last_prefix; i++)
            for (int j = 0; j < M; j++) succ[i] += ok[ng->first_req + (i - 1) * M + j];
        // a complete wrong solution: succ[L] = 0, Q_L = 0
        double* q = xmalloc(sizeof(double) * (size_t)(L + 1));
        double* adv = xmalloc(sizeof(double) * (size_t)(L + 1));
        star_q_values(succ, L + 1, M, est, q);
        const int c = star_critical_step(q, L + 1, s->pit_threshold, adv);
        cJSON* o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "line", rc->probs[ng->problem].line);
        cJSON_AddNumberToObject(o, "sample", ng->sample);
        cJSON_AddNumberToObject(o, "steps", L);
        cJSON_AddItemToObject(o, "successes", cJSON_CreateIntArray(succ, L + 1));
        cJSON_AddItemToObject(o, "q", cJSON_CreateDoubleArray(q, L + 1));
        cJSON_AddItemToObject(o, "advantages", cJSON_CreateDoubleArray(adv, L + 1));
        cJSON_AddNumberToObject(o, "critical", c);
        if (c >= 1) {
            critical++;
            crit_frac += (double)c / L;
            // a continuation from the prefix before the pit that reached the right answer
            const int base = c - 1 == 0 ? ng->problem * M : ng->first_req + (c - 2) * M;
            int win = -1;
            for (int j = 0; j < M && win < 0; j++)
                if (ok[base + j]) win = base + j;
            QSTAR_ASSERT(win >= 0);  // A_c < 0 means Q_{c-1} > 0: some rollout from it succeeded
            char* pre = star_step_prefix(text, ng->starts, c - 1);
            char* step = xstrdup(text + ng->starts[c - 1]);
            step[ng->starts[c] - ng->starts[c - 1]] = 0;  // step c alone
            char* pp = xsprintf("%s%s", plain[ng->problem], pre);
            Pair* p = &pairs[np++];
            p->prompt = st_encode(rc->tok, pp, 1);
            p->chosen = st_toks_copy(ctoks[win].ids, ctoks[win].n);
            p->rejected = st_encode(rc->tok, step, 0);
            p->weight = !strcmp(s->pair_weight, "advantage") ? (float)-adv[c] : 1.0f;
            write_pair(&pf, p);
            cJSON_AddStringToObject(o, "prefix", pre);
            cJSON_AddStringToObject(o, "rejected_step", step);
            cJSON_AddStringToObject(o, "chosen_continuation", conts[win]);
            cJSON_AddNumberToObject(o, "weight", p->weight);
            free(pre), free(step), free(pp);
        }
        cJSON_AddStringToObject(o, "completion", text);
        jsonl_write(&sf, o);
        free(succ), free(q), free(adv);
    }
    atomic_commit(&sf);
    atomic_commit(&pf);
    cJSON_AddNumberToObject(counts, "negatives", nn);
    cJSON_AddNumberToObject(counts, "rollouts", n_req);
    cJSON_AddNumberToObject(counts, "critical_steps", critical);
    cJSON_AddNumberToObject(counts, "mean_critical_position", critical ? crit_frac / critical : 0);
    cJSON_AddNumberToObject(counts, "pairs", np);
    cJSON_AddNumberToObject(counts, "rollout_tokens_per_s", tps);
    for (int r = 0; r < n_req; r++) free(prompts[r].ids), free(prefixes[r]), free(conts[r]), free(ctoks[r].ids);
    for (int i = 0; i < rc->n_prob; i++) free(plain[i]);
    for (int g = 0; g < nn; g++) free(neg[g].starts);
    free(prompts), free(prefixes), free(sample), free(conts), free(ctoks), free(ok), free(plain), free(neg);
    *n_pairs = np;
    return pairs;
}

static void add_all(cJSON* dst, const cJSON* src) {
    const cJSON* v;
    cJSON_ArrayForEach(v, src) {
        if (!strcmp(v->string, "done") || !strcmp(v->string, "iteration")) continue;
        cJSON_DeleteItemFromObjectCaseSensitive(dst, v->string);
        cJSON_AddItemToObject(dst, v->string, cJSON_Duplicate(v, 1));
    }
}

static void save_stage(const RunCtx* rc, int iter, const cJSON* counts, const char* done) {
    cJSON* st = cJSON_Duplicate(counts, 1);
    cJSON_AddStringToObject(st, "done", done);
    st_write_state(rc->s->out, iter - 1, st, rc->settings);
}

void stepdpo_run(Model* m, const RunCtx* rc, int first_iter, const cJSON* saved) {
    const Settings* s = rc->s;
    for (int iter = first_iter; iter <= s->iterations; iter++) {
        const double t_iter = now_seconds();
        fault_set_context(0, iter);
        const cJSON* part = iter == first_iter && saved ? cJSON_GetObjectItemCaseSensitive(saved, "stage") : NULL;
        const cJSON* pd = part ? cJSON_GetObjectItemCaseSensitive(part, "done") : NULL;
        const char* done = cJSON_IsString(pd) ? pd->valuestring : "";
        const int stage_done = !strcmp(done, "dpo") ? 3 : !strcmp(done, "rollouts") ? 2 : !strcmp(done, "generate") ? 1 : 0;
        fprintf(stderr, "selftrain: stepdpo iteration %d/%d%s%s\n", iter, s->iterations, *done ? ", resumed after " : "", done);
        cJSON* counts = cJSON_CreateObject();
        cJSON_AddNumberToObject(counts, "iteration", iter);
        if (part) add_all(counts, part);
        char* prev = iter == 1 ? xstrdup(s->model) : xsprintf("%s/iter_%03d", s->out, iter - 1);
        // 1. generate
        const int n_samples = rc->n_prob * s->samples;
        Samples smp = {0};
        char* gpath = xsprintf("%s/generations_%03d.jsonl", s->out, iter);
        if (stage_done < 1) {
            model_load_weights(m, prev);
            double tps;
            smp = generate_stage(m, rc, iter, &tps);
            int c = 0;
            for (int r = 0; r < smp.n; r++) c += smp.correct[r];
            cJSON_AddNumberToObject(counts, "samples", smp.n);
            cJSON_AddNumberToObject(counts, "correct_samples", c);
            cJSON_AddNumberToObject(counts, "generate_tokens_per_s", tps);
            save_stage(rc, iter, counts, "generate");
            fault_point("after_generate");
        } else if (stage_done < 2) {
            smp = read_samples(gpath, n_samples);
        }
        free(gpath);
        // 2. rollouts, Q-values, critical steps, pairs
        int n_pairs = 0;
        Pair* pairs;
        char* ppath = xsprintf("%s/pairs_%03d.jsonl", s->out, iter);
        if (stage_done < 2) {
            model_load_weights(m, prev);
            pairs = rollouts_stage(m, rc, iter, &smp, &n_pairs, counts);
            save_stage(rc, iter, counts, "rollouts");
            fault_point("after_rollouts");
        } else {
            pairs = read_pairs(ppath, rc->vocab, &n_pairs);
        }
        free(ppath);
        if (smp.texts) free_samples(&smp);
        // 3. DPO from M_{n-1}, also the reference
        char name[32];
        snprintf(name, sizeof name, "iter_%03d", iter);
        if (stage_done < 3) {
            model_load_weights(m, prev);
            char* cache = xsprintf("%s/dpo_ref_%03d.bin", s->out, iter);
            DpoRun run = st_dpo_train(m, s, pairs, n_pairs, s->dpo_steps, rc->pad, cache, (uint64_t)s->seed * 1000 + iter, "dpo");
            free(cache);
            if (!n_pairs) fprintf(stderr, "  no critical step found: M_%d is M_%d\n", iter, iter - 1);
            st_save_checkpoint(s->out, name, m, rc->tok);
            cJSON_AddNumberToObject(counts, "dpo_steps", run.steps);
            st_record_dpo(counts, &run);
            save_stage(rc, iter, counts, "dpo");
            fault_point("after_dpo");
        } else {
            char* dir = xsprintf("%s/%s", s->out, name);
            model_load_weights(m, dir);
            free(dir);
        }
        free_pairs(pairs, n_pairs);
        free(prev);
        // 4. evaluate M_n
        double test_tps;
        cJSON* by_digits = cJSON_CreateObject();
        const double acc =
            st_evaluate(m, rc->tok, s, rc->task, rc->ctx, rc->test, rc->n_test, iter, by_digits, &test_tps);
        cJSON* rec = cJSON_CreateObject();
        cJSON_AddNumberToObject(rec, "iteration", iter);
        cJSON_AddStringToObject(rec, "method", "stepdpo");
        cJSON_AddNumberToObject(rec, "train_problems", rc->n_prob);
        add_all(rec, counts);
        const double ns = st_json_num(counts, "samples");
        cJSON_AddNumberToObject(rec, "train_accuracy", ns ? st_json_num(counts, "correct_samples") / ns : 0);
        cJSON_AddNumberToObject(rec, "test_problems", rc->n_test);
        cJSON_AddNumberToObject(rec, "test_accuracy", acc);
        if (rc->task == STAR_TASK_ARITH) cJSON_AddItemToObject(rec, "test_accuracy_by_digits", by_digits);
        else cJSON_Delete(by_digits);
        cJSON_AddNumberToObject(rec, "test_tokens_per_s", test_tps);
        cJSON_AddNumberToObject(rec, "seconds", now_seconds() - t_iter);
        st_metrics_append(s->out, rec);
        cJSON_Delete(rec);
        cJSON_Delete(counts);
        st_write_state(s->out, iter, NULL, rc->settings);
        if (!s->keep_all && iter > 1) {
            char* prev = xsprintf("%s/iter_%03d", s->out, iter - 1);
            char* err = run_dir_remove(prev);
            if (err) fprintf(stderr, "selftrain: warning: iteration %d's checkpoint kept: %s\n", iter - 1, err);
            free(err), free(prev);
        }
    }
}
