/*
 * `qstar selftrain`: the self-taught-reasoner family (docs/star-family.md) on the `arith` and
 * `gsm8k` tasks. This file parses the command and runs the methods whose iteration is "collect
 * examples, fine-tune the ORIGINAL model on them, evaluate": STaR, RFT and V-STaR's generator; the
 * V-STaR verifier and test (selftrain_vstar.c) and per-step DPO (selftrain_stepdpo.c) have their own.
 *
 * One iteration n = 1..N:
 *   1. collect    STaR: M_{n-1} completes every training problem after the few-shot prompt (greedy,
 *                 stop at a blank line), correct ones kept; each failure generated again with the answer
 *                 as a hint, correct ones kept with the hint-free prompt (rationalization).
 *                 RFT: --samples completions per problem at --temperature; the correct ones whose
 *                 calculator annotations are right, deduplicated by their equation lists, are kept.
 *                 V-STaR: --samples per problem; every sample (correct or not) goes to the verifier's
 *                 data (verifier_NNN.jsonl), the correct ones to the generator's (D_GEN, which grows
 *                 over iterations: the fine-tuning set of iteration n is kept_001..kept_n).
 *   2. fine-tune  from the ORIGINAL model on the kept examples (loss on the completion only, no few-shot
 *                 prompt), int(start_steps * grow^(n-1)) steps of --batch rows;
 *   3. evaluate   M_n greedy on the test problems (accuracy, per digit count on arith).
 * RUN_DIR/iter_NNN/ holds M_n (only the newest unless --keep-all), generations_NNN.jsonl every
 * completion, kept_NNN.jsonl the fine-tuning examples (token ids), test_NNN.jsonl M_n's greedy test
 * completions with their gold answers and verdicts, state.json how far the run got,
 * metrics.jsonl one line per iteration (and per V-STaR final stage). --resume RUN_DIR continues where
 * the run stopped: after the last finished iteration, or inside one after its collection (the kept
 * examples are read back) or after its fine-tuning (M_n is read back); the result is bitwise the
 * uninterrupted run's.
 */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fs.h"
#include "common/args.h"
#include "cli/commands.h"
#include "selftrain/selftrain.h"
#include "io/weights.h"

// Stage 1 of an iteration: the fine-tuning examples (tokens) and the counts; every completion goes to
// generations_NNN.jsonl. extra: the method's own counts (NULL for STaR), kept in state.json and the record.
typedef struct {
    Example* ex;
    int n_ex, n_correct, n_rat, n_kept;
    double gen_tps, rat_tps;
    cJSON* extra;
} Collected;

// With --gold the reference solutions join the examples (V-STaR's D_SFT); every completion then ends
// with EOS, so the fine-tuned model learns to stop.
static void finish_examples(const RunCtx* rc, Example* ex, int* n_ex, int add_gold) {
    if (add_gold)
        for (int i = 0; i < rc->n_prob; i++) {
            char* p = star_prompt(rc->task, rc->probs[i].question, NULL);
            char* c = st_exemplar_completion(rc->task, &rc->probs[i]);
            ex[*n_ex].prompt = st_encode(rc->tok, p, 1);
            ex[*n_ex].completion = st_encode(rc->tok, c, 0);
            (*n_ex)++;
            free(p), free(c);
        }
    if (rc->eos >= 0)
        for (int i = 0; i < *n_ex; i++) {
            Toks* c = &ex[i].completion;
            c->ids = xrealloc(c->ids, (size_t)c->n + 1, sizeof(int32_t));
            c->ids[c->n++] = (int32_t)rc->eos;
        }
}

static Toks plain_prompt(const RunCtx* rc, const StarItem* it) {
    char* p = star_prompt(rc->task, it->question, NULL);
    Toks t = st_encode(rc->tok, p, 1);
    free(p);
    return t;
}

static Collected collect_star(Model* mp, const RunCtx* rc, int iter) {
    const Settings* sp = rc->s;
    const int task = rc->task, n_prob = rc->n_prob;
    const StarItem* probs = rc->probs;
    const Tokenizer* tok = rc->tok;
    double gen_tps = 0, rat_tps = 0;
    // 1. generate
    Toks* prompts = xmalloc(sizeof(Toks) * (size_t)n_prob);
    for (int i = 0; i < n_prob; i++) {
        char* p = star_prompt(task, probs[i].question, NULL);
        char* full = xsprintf("%s%s", rc->ctx, p);
        prompts[i] = st_encode(tok, full, 1);
        free(p), free(full);
    }
    char** texts = xmalloc(sizeof(char*) * (size_t)n_prob);
    Toks* outs = xmalloc(sizeof(Toks) * (size_t)n_prob);
    st_generate(mp, tok, sp, task, prompts, NULL, NULL, n_prob, 0.0f, texts, outs, "generate", &gen_tps);
    Example* ex = xmalloc(sizeof(Example) * (size_t)(3 * n_prob + 1));
    int n_ex = 0, n_correct = 0, n_rat = 0;
    int* failed = xmalloc(sizeof(int) * (size_t)n_prob);
    int n_failed = 0;
    AtomicFile gf = st_open_generations(sp->out, "generations", iter);
    for (int i = 0; i < n_prob; i++) {
        const int ok = star_is_correct(task, texts[i], probs[i].gold);
        st_write_generation(&gf, probs[i].line, "generate", texts[i], ok, -1);
        if (ok) {
            ex[n_ex].prompt = plain_prompt(rc, &probs[i]);
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
            char* h = st_hint_of(task, it);
            char* p = star_prompt(task, it->question, h);
            char* full = xsprintf("%s%s", rc->hctx, p);
            hp[k] = st_encode(tok, full, 1);
            free(h), free(p), free(full);
        }
        st_generate(mp, tok, sp, task, hp, NULL, NULL, n_failed, 0.0f, texts, outs, "rationalize", &rat_tps);
        for (int k = 0; k < n_failed; k++) {
            const StarItem* it = &probs[failed[k]];
            const int ok = star_is_correct(task, texts[k], it->gold);
            st_write_generation(&gf, it->line, "rationalize", texts[k], ok, -1);
            if (ok) {
                // stored as if no hint had been given: the hint-free prompt
                char* h = st_hint_of(task, it);
                char* hinted = star_prompt(task, it->question, h);
                char* plain = star_remove_hint(task, hinted, h);
                QSTAR_ASSERT(plain != NULL);
                ex[n_ex].prompt = st_encode(tok, plain, 1);
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
    finish_examples(rc, ex, &n_ex, sp->gold);
    free(failed), free(texts), free(outs), free(prompts);
    return (Collected){ex, n_ex, n_correct, n_rat, n_correct + n_rat, gen_tps, rat_tps, NULL};
}

// RFT and V-STaR: --samples completions per problem at --temperature. Request r = i*k + j is problem i's
// sample j; its noise key also carries the iteration, so an iteration that samples the same model again
// (nothing was kept before) draws new samples.
static Collected collect_sampled(Model* mp, const RunCtx* rc, int iter, int method) {
    const Settings* sp = rc->s;
    const int task = rc->task, n_prob = rc->n_prob, k = sp->samples, n = n_prob * k;
    const StarItem* probs = rc->probs;
    Toks* prompts = xmalloc(sizeof(Toks) * (size_t)n);
    uint32_t* sample = xmalloc(sizeof(uint32_t) * (size_t)n);
    for (int i = 0; i < n_prob; i++) {
        char* p = star_prompt(task, probs[i].question, NULL);
        char* full = xsprintf("%s%s", rc->ctx, p);
        Toks t = st_encode(rc->tok, full, 1);
        for (int j = 0; j < k; j++) {
            prompts[i * k + j] = t;  // shared ids: freed once below
            sample[i * k + j] = (uint32_t)((uint64_t)(iter - 1) * (uint64_t)n + (uint64_t)(i * k + j));
        }
        free(p), free(full);
    }
    char** texts = xmalloc(sizeof(char*) * (size_t)n);
    Toks* outs = xmalloc(sizeof(Toks) * (size_t)n);
    double gen_tps = 0;
    st_generate(mp, rc->tok, sp, task, prompts, sample, NULL, n, sp->temperature, texts, outs, "sample", &gen_tps);
    Example* ex = xmalloc(sizeof(Example) * (size_t)(n + n_prob + 1));
    int n_ex = 0, n_correct = 0, solved = 0, distinct = 0;
    int* kept = xmalloc(sizeof(int) * (size_t)k);
    AtomicFile gf = st_open_generations(sp->out, "generations", iter);
    AtomicFile vf = {0};
    if (method == METHOD_VSTAR) vf = st_open_generations(sp->out, "verifier", iter);
    for (int i = 0; i < n_prob; i++) {
        char** t = texts + (size_t)i * k;
        int c = 0;
        for (int j = 0; j < k; j++) {
            const int ok = star_is_correct(task, t[j], probs[i].gold);
            st_write_generation(&gf, probs[i].line, "sample", t[j], ok, j);
            c += ok;
            if (method == METHOD_VSTAR) {
                // D_VER: every sample with its label, as token ids (the verifier's data)
                Toks pr = plain_prompt(rc, &probs[i]);
                cJSON* o = cJSON_CreateObject();
                cJSON_AddNumberToObject(o, "problem", i);
                cJSON_AddItemToObject(o, "prompt", cJSON_CreateIntArray(pr.ids, pr.n));
                cJSON_AddItemToObject(o, "completion", cJSON_CreateIntArray(outs[i * k + j].ids, outs[i * k + j].n));
                cJSON_AddBoolToObject(o, "correct", ok);
                char* l = cJSON_PrintUnformatted(o);
                atomic_write(&vf, l, strlen(l));
                atomic_write(&vf, "\n", 1);
                free(l), free(pr.ids);
                cJSON_Delete(o);
                if (ok) {  // D_GEN: every correct sample
                    ex[n_ex].prompt = plain_prompt(rc, &probs[i]);
                    ex[n_ex].completion = outs[i * k + j];
                    outs[i * k + j].ids = NULL;
                    n_ex++;
                }
            }
        }
        n_correct += c;
        solved += c > 0;
        if (method == METHOD_RFT) {
            // correct answer and right annotations, then one path per equation list
            int nc;
            const int nk = star_rft_select(task, (const char* const*)t, k, probs[i].gold, kept, &nc);
            QSTAR_ASSERT(nc <= c);
            distinct += nk;
            for (int q = 0; q < nk; q++) {
                ex[n_ex].prompt = plain_prompt(rc, &probs[i]);
                ex[n_ex].completion = outs[i * k + kept[q]];
                outs[i * k + kept[q]].ids = NULL;
                n_ex++;
            }
        }
        free(prompts[i * k].ids);
    }
    atomic_commit(&gf);
    if (method == METHOD_VSTAR) atomic_commit(&vf);
    const int n_kept = n_ex;
    // V-STaR's D_GEN holds the reference solutions once (they enter with iteration 1's examples)
    finish_examples(rc, ex, &n_ex, sp->gold && (method == METHOD_RFT || iter == 1));
    cJSON* extra = cJSON_CreateObject();
    cJSON_AddNumberToObject(extra, "samples", n);
    cJSON_AddNumberToObject(extra, "correct_samples", n_correct);
    cJSON_AddNumberToObject(extra, "problems_solved", solved);
    if (method == METHOD_RFT) {
        cJSON_AddNumberToObject(extra, "distinct_paths", distinct);
        cJSON_AddNumberToObject(extra, "distinct_paths_per_problem", n_prob ? (double)distinct / n_prob : 0);
        cJSON_AddNumberToObject(extra, "distinct_paths_per_solved_problem", solved ? (double)distinct / solved : 0);
    } else {
        cJSON_AddNumberToObject(extra, "verifier_samples", n);
    }
    for (int i = 0; i < n; i++) free(texts[i]), free(outs[i].ids);
    free(texts), free(outs), free(prompts), free(sample), free(kept);
    return (Collected){ex, n_ex, n_correct, 0, n_kept, gen_tps, 0, extra};
}

static int method_from_name(const char* s) {
    if (!strcmp(s, "star")) return METHOD_STAR;
    if (!strcmp(s, "rft")) return METHOD_RFT;
    if (!strcmp(s, "vstar")) return METHOD_VSTAR;
    if (!strcmp(s, "stepdpo")) return METHOD_STEPDPO;
    return -1;
}

static void add_extra(cJSON* dst, const cJSON* extra) {
    const cJSON* v;
    cJSON_ArrayForEach(v, extra) cJSON_AddItemToObject(dst, v->string, cJSON_Duplicate(v, 1));
}

// The iterations of STaR, RFT and V-STaR's generator, from first_iter on.
static void run_iterations(Model* m, const RunCtx* rc, int method, int first_iter, const cJSON* saved) {
    const Settings* sp = rc->s;
    const Settings s = *sp;
    const int task = rc->task;
    for (int iter = first_iter; iter <= s.iterations; iter++) {
        double t_iter = now_seconds();
        fault_set_context(0, iter);
        // a resumed iteration may have finished its collection or its fine-tuning already
        const cJSON* part = iter == first_iter && saved ? cJSON_GetObjectItemCaseSensitive(saved, "stage") : NULL;
        const cJSON* part_done = part ? cJSON_GetObjectItemCaseSensitive(part, "done") : NULL;
        const char* done = cJSON_IsString(part_done) ? part_done->valuestring : "";
        fprintf(stderr, "selftrain: %s iteration %d/%d%s%s\n", s.method, iter, s.iterations,
                *done ? ", resumed after " : "", done);
        double ft_tps = 0, test_tps = 0;
        Collected col = {0};
        char* kept_path = xsprintf("%s/kept_%03d.jsonl", s.out, iter);
        if (*done) {
            col.ex = st_read_examples(kept_path, rc->vocab, &col.n_ex);
            col.n_correct = (int)st_json_num(part, "correct");
            col.n_rat = (int)st_json_num(part, "rationalized");
            const cJSON* kp = cJSON_GetObjectItemCaseSensitive(part, "kept");
            col.n_kept = cJSON_IsNumber(kp) ? kp->valueint : col.n_correct + col.n_rat;
            col.gen_tps = st_json_num(part, "generate_tokens_per_s");
            col.rat_tps = st_json_num(part, "rationalize_tokens_per_s");
            const cJSON* ex = cJSON_GetObjectItemCaseSensitive(part, "extra");
            col.extra = ex ? cJSON_Duplicate(ex, 1) : NULL;
        } else {
            // M_{n-1}: the original model, or the previous iteration's
            char* prev = iter == 1 ? xstrdup(s.model) : xsprintf("%s/iter_%03d", s.out, iter - 1);
            model_load_weights(m, prev);
            free(prev);
            col = method == METHOD_STAR ? collect_star(m, rc, iter) : collect_sampled(m, rc, iter, method);
            st_write_examples(kept_path, col.ex, col.n_ex);
        }
        free(kept_path);
        // the stage's counts, for state.json (a resumed iteration reads them back)
        cJSON* counts = cJSON_CreateObject();
        cJSON_AddNumberToObject(counts, "iteration", iter);
        cJSON_AddNumberToObject(counts, "correct", col.n_correct);
        cJSON_AddNumberToObject(counts, "rationalized", col.n_rat);
        if (method != METHOD_STAR) cJSON_AddNumberToObject(counts, "kept", col.n_kept);
        cJSON_AddNumberToObject(counts, "generate_tokens_per_s", col.gen_tps);
        cJSON_AddNumberToObject(counts, "rationalize_tokens_per_s", col.rat_tps);
        if (col.extra) cJSON_AddItemToObject(counts, "extra", cJSON_Duplicate(col.extra, 1));
        if (!*done) {
            cJSON* st = cJSON_Duplicate(counts, 1);
            cJSON_AddStringToObject(st, "done", "generate");
            st_write_state(s.out, iter - 1, st, rc->settings);
            fault_point("after_generate");
        }
        // V-STaR's D_GEN grows: the examples of the earlier iterations join this one's
        Example* ex = col.ex;
        int n_ex = col.n_ex;
        if (method == METHOD_VSTAR)
            for (int j = 1; j < iter; j++) {
                char* kp = xsprintf("%s/kept_%03d.jsonl", s.out, j);
                int ne;
                Example* more = st_read_examples(kp, rc->vocab, &ne);
                ex = xrealloc(ex, (size_t)(n_ex + ne + 1), sizeof(Example));
                memcpy(ex + n_ex, more, sizeof(Example) * (size_t)ne);
                n_ex += ne;
                free(more), free(kp);
            }
        // 2. fine-tune the original model
        const int steps = n_ex ? (int)(s.start_steps * pow(s.grow, iter - 1)) : 0;
        double loss;
        if (!strcmp(done, "finetune")) {
            char* dir = xsprintf("%s/iter_%03d", s.out, iter);
            model_load_weights(m, dir);
            free(dir);
            loss = st_json_num(part, "loss");
            ft_tps = st_json_num(part, "finetune_tokens_per_s");
        } else {
            model_load_weights(m, s.model);
            loss = steps ? st_finetune(m, &s, ex, n_ex, steps, rc->pad, (uint64_t)(s.seed * 1000 + iter), &ft_tps) : 0;
            if (!n_ex) fprintf(stderr, "  nothing kept: M_%d is the original model\n", iter);
            char name[32];
            snprintf(name, sizeof name, "iter_%03d", iter);
            st_save_checkpoint(s.out, name, m, rc->tok);
            cJSON* st = cJSON_Duplicate(counts, 1);
            cJSON_AddStringToObject(st, "done", "finetune");
            cJSON_AddNumberToObject(st, "loss", loss);
            cJSON_AddNumberToObject(st, "finetune_tokens_per_s", ft_tps);
            st_write_state(s.out, iter - 1, st, rc->settings);
            fault_point("after_finetune");
        }
        cJSON_Delete(counts);
        st_free_examples(ex, n_ex);
        // 3. evaluate M_n
        cJSON* by_digits = cJSON_CreateObject();
        double acc = st_evaluate(m, rc->tok, &s, task, rc->ctx, rc->test, rc->n_test, iter, by_digits, &test_tps);

        const int n_gen = method == METHOD_STAR ? rc->n_prob : rc->n_prob * s.samples;
        cJSON* rec = cJSON_CreateObject();
        cJSON_AddNumberToObject(rec, "iteration", iter);
        if (method != METHOD_STAR) cJSON_AddStringToObject(rec, "method", s.method);
        cJSON_AddNumberToObject(rec, "train_problems", rc->n_prob);
        cJSON_AddNumberToObject(rec, "correct", col.n_correct);
        cJSON_AddNumberToObject(rec, "rationalized", col.n_rat);
        cJSON_AddNumberToObject(rec, "kept", col.n_kept);
        // STaR: problems solved greedily; RFT / V-STaR: the fraction of samples that are right
        cJSON_AddNumberToObject(rec, "train_accuracy", n_gen ? (double)col.n_correct / n_gen : 0);
        if (col.extra) add_extra(rec, col.extra);
        cJSON_AddNumberToObject(rec, "finetune_examples", n_ex);
        cJSON_AddNumberToObject(rec, "steps", steps);
        cJSON_AddNumberToObject(rec, "loss", loss);
        cJSON_AddNumberToObject(rec, "test_problems", rc->n_test);
        cJSON_AddNumberToObject(rec, "test_accuracy", acc);
        if (task == STAR_TASK_ARITH) cJSON_AddItemToObject(rec, "test_accuracy_by_digits", by_digits);
        else cJSON_Delete(by_digits);
        cJSON_AddNumberToObject(rec, "generate_tokens_per_s", col.gen_tps);
        cJSON_AddNumberToObject(rec, "rationalize_tokens_per_s", col.rat_tps);
        cJSON_AddNumberToObject(rec, "finetune_tokens_per_s", ft_tps);
        cJSON_AddNumberToObject(rec, "test_tokens_per_s", test_tps);
        cJSON_AddNumberToObject(rec, "seconds", now_seconds() - t_iter);
        st_metrics_append(s.out, rec);
        cJSON_Delete(rec);
        cJSON_Delete(col.extra);
        // the iteration is finished once state.json says so
        st_write_state(s.out, iter, NULL, rc->settings);
        if (!s.keep_all && iter > 1) {  // M_{n-1} is needed no more: the next iteration starts from M_n
            char* prev = xsprintf("%s/iter_%03d", s.out, iter - 1);
            char* err = run_dir_remove(prev);
            if (err) fprintf(stderr, "selftrain: warning: iteration %d's checkpoint kept: %s\n", iter - 1, err);
            free(err), free(prev);
        }
    }
}

int cmd_selftrain(int argc, char** argv) {
    Settings s = {.method = "star", .device = "cpu", .iterations = 3, .start_steps = 40, .grow = 1.2f, .batch = 8,
                  .seq = 256, .lr = 1e-6f, .warmup = 100, .grad_clip = 1.0f, .shots = 3, .max_tokens = 96,
                  .gen_batch = 16, .seed = 1, .samples = 4, .temperature = 0.7f, .test_samples = 8, .beta = 0.1f,
                  .dpo_steps = 40, .dpo_batch = 4, .dpo_lr = 1e-6f, .rollouts = 5, .negatives = 8,
                  .pit_threshold = 0.5f, .q_estimator = "any", .pair_weight = "advantage"};
    ArgSpec specs[] = {
        {"method", ARG_STR, &s.method, "star | rft | vstar | stepdpo"},
        {"model", ARG_STR, &s.model, "the starting checkpoint (with tokenizer.json); every iteration fine-tunes it"},
        {"task", ARG_STR, &s.task, "arith | gsm8k"},
        {"train", ARG_STR, &s.train, "training problems (JSONL; the first --shots are the few-shot exemplars)"},
        {"test", ARG_STR, &s.test, "test problems (JSONL)"},
        {"out", ARG_STR, &s.out, "run directory"},
        {"resume", ARG_STR, &s.resume, "continue the run in this directory where it stopped"},
        {"iterations", ARG_INT, &s.iterations, "outer iterations (default 3 for star and vstar, 1 for rft and stepdpo)"},
        {"start-steps", ARG_INT, &s.start_steps, "fine-tuning steps of iteration 1"},
        {"grow", ARG_FLOAT, &s.grow, "steps of iteration n: int(start_steps * grow^(n-1))"},
        {"batch", ARG_INT, &s.batch, "sequences per fine-tuning step"},
        {"seq", ARG_INT, &s.seq, "fine-tuning / DPO row length (one example per row, padded)"},
        {"lr", ARG_FLOAT, &s.lr, "Adam learning rate (STaR: 1e-6 after 100 warmup steps, constant)"},
        {"warmup", ARG_UINT, &s.warmup, "linear warmup steps"},
        {"grad-clip", ARG_UFLOAT, &s.grad_clip, "global gradient-norm clip (0: off)"},
        {"shots", ARG_INT, &s.shots, "few-shot exemplars in the generation prompt"},
        {"max-tokens", ARG_INT, &s.max_tokens, "most tokens per completion (STaR: 96)"},
        {"gen-batch", ARG_INT, &s.gen_batch, "requests in flight while generating"},
        {"no-rationalize", ARG_FLAG, &s.no_rationalize, "star: skip rationalization of failures"},
        {"keep-all", ARG_FLAG, &s.keep_all, "keep every iteration's checkpoint (default: only the newest)"},
        {"gold", ARG_FLAG, &s.gold, "also fine-tune on the reference solutions (V-STaR's D_SFT)"},
        {"n-train", ARG_UINT, &s.n_train, "use only the first N training problems (0: all)"},
        {"n-test", ARG_UINT, &s.n_test, "use only the first N test problems (0: all)"},
        {"seed", ARG_INT, &s.seed, "seed of the fine-tuning order and of sampling"},
        {"samples", ARG_INT, &s.samples, "rft, vstar, stepdpo: completions sampled per training problem (k)"},
        {"temperature", ARG_FLOAT, &s.temperature, "rft, vstar, stepdpo: sampling temperature (RFT: 0.7)"},
        {"test-samples", ARG_INT, &s.test_samples, "vstar: candidates per test problem (N of best-of-k)"},
        {"beta", ARG_FLOAT, &s.beta, "vstar, stepdpo: DPO beta"},
        {"dpo-steps", ARG_INT, &s.dpo_steps, "vstar, stepdpo: DPO steps"},
        {"dpo-batch", ARG_INT, &s.dpo_batch, "vstar, stepdpo: preference pairs per DPO step"},
        {"dpo-lr", ARG_FLOAT, &s.dpo_lr, "vstar, stepdpo: DPO Adam learning rate"},
        {"dpo-warmup", ARG_UINT, &s.dpo_warmup, "vstar, stepdpo: DPO linear warmup steps"},
        {"pairs-per-problem", ARG_INT, &s.pairs_per_problem, "vstar: most (correct, incorrect) pairs per problem (0: all)"},
        {"rollouts", ARG_INT, &s.rollouts, "stepdpo: Monte-Carlo rollouts per step prefix (M)"},
        {"negatives", ARG_INT, &s.negatives, "stepdpo: most incorrect samples per problem analysed"},
        {"q-estimator", ARG_STR, &s.q_estimator, "stepdpo: any (Q of best-of-M, Setlur et al.) | mean"},
        {"pit-threshold", ARG_FLOAT, &s.pit_threshold, "stepdpo: a critical step's advantage is below -threshold"},
        {"pair-weight", ARG_STR, &s.pair_weight, "stepdpo: advantage (the pair weighs -A of its critical step) | uniform"},
        {"device", ARG_STR, &s.device, "backend"},
        {"make-arith", ARG_STR, &s.make_arith, "write an arith task file of --make-n problems (--digits, --seed) and exit"},
        {"make-n", ARG_INT, &s.make_n, "problems in --make-arith's file"},
        {"digits", ARG_STR, &s.digits, "operand lengths of --make-arith, LO-HI (cycled)"},
    };
    const int n_specs = (int)(sizeof specs / sizeof specs[0]);
    args_parse(argc, argv, specs, n_specs,
               "usage: qstar selftrain --method star|rft|vstar|stepdpo --model DIR --task arith|gsm8k --train FILE\n"
               "                       --test FILE --out RUN_DIR [options]   |   qstar selftrain --resume RUN_DIR\n\n"
               "STaR: generate, rationalize failures with the answer as a hint, fine-tune the original model on\n"
               "the correct completions, evaluate. RFT: sample k, keep the correct distinct reasoning paths,\n"
               "fine-tune. V-STaR: RFT-like generator iterations keeping every sample, then a DPO verifier and\n"
               "best-of-k at test time. stepdpo: Monte-Carlo step values of wrong samples, DPO on critical steps.\n"
               "One metrics.jsonl line per iteration (and stage).");
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
    const int method = method_from_name(s.method);
    if (method < 0) fatal("selftrain: unknown --method \"%s\" (star, rft, vstar or stepdpo)", s.method);
    // RFT and per-step DPO are one round of sampling from the starting model in their papers
    if (!s.resume && !args_given(specs, n_specs, "iterations") && (method == METHOD_RFT || method == METHOD_STEPDPO))
        s.iterations = 1;
    if (!s.model || !s.task || !s.train || !s.test || !s.out)
        fatal("selftrain: --model, --task, --train, --test and --out are required");
    const int task = star_task_from_name(s.task);
    if (task < 0) fatal("selftrain: unknown --task \"%s\" (arith or gsm8k)", s.task);
    if (s.iterations < 1 || s.start_steps < 0 || s.batch < 1 || s.seq < 2 || s.shots < 0 || s.max_tokens < 1 ||
        s.gen_batch < 1 || !(s.grow > 0) || !(s.lr >= 0))
        fatal("selftrain: need --iterations, --batch, --max-tokens, --gen-batch >= 1, --seq >= 2, --grow > 0");
    if (s.samples < 1 || s.test_samples < 1 || s.dpo_steps < 0 || s.dpo_batch < 1 || s.rollouts < 1 || s.negatives < 1 ||
        s.pairs_per_problem < 0 || !(s.temperature >= 0) || !(s.beta > 0) || !(s.dpo_lr >= 0) || !(s.pit_threshold >= 0))
        fatal("selftrain: need --samples, --test-samples, --dpo-batch, --rollouts, --negatives >= 1, --dpo-steps >= 0, "
              "--beta > 0, --temperature, --dpo-lr, --pit-threshold >= 0");
    if (strcmp(s.q_estimator, "any") && strcmp(s.q_estimator, "mean"))
        fatal("selftrain: unknown --q-estimator \"%s\" (any or mean)", s.q_estimator);
    if (strcmp(s.pair_weight, "advantage") && strcmp(s.pair_weight, "uniform"))
        fatal("selftrain: unknown --pair-weight \"%s\" (advantage or uniform)", s.pair_weight);
    const Backend* be = backend_select(s.device, NULL);

    int n_train, n_test, n_train_all, n_test_all;
    StarItem* train = star_load_tasks(s.train, task, &n_train_all);
    StarItem* test = star_load_tasks(s.test, task, &n_test_all);
    n_train = n_train_all, n_test = n_test_all;
    if (s.n_train > 0 && s.n_train < n_train) n_train = s.n_train;
    if (s.n_test > 0 && s.n_test < n_test) n_test = s.n_test;
    if (s.shots >= n_train) fatal("%s: %d problems, fewer than --shots %d + 1", s.train, n_train, s.shots);
    // Fine-tuning steps of the last (largest when --grow > 1) iteration: int(start_steps * grow^(n-1))
    // must be an int, else the conversion is undefined (it recorded 3e9 steps and ran none).
    for (int n = 1; n <= s.iterations; n++) {
        const double steps = s.start_steps * pow(s.grow, n - 1);
        if (!(steps <= INT_MAX))
            fatal("selftrain: --start-steps %d x --grow %g^%d = %.4g fine-tuning steps in iteration %d, more than %d",
                  s.start_steps, s.grow, n - 1, steps, n, INT_MAX);
    }
    // Requests are counted and indexed by int, and n + 1 of them allocated; sample keys of all iterations
    // stay below 2^31 (stepdpo's rollouts use the keys above). The products are checked here, before
    // any of them sizes an allocation, each message naming the options that make it.
    const size_t max_req = (size_t)INT_MAX - 1, n_prob = (size_t)(n_train - s.shots);
    if (method != METHOD_STAR) {
        size_t n = checked_count(n_prob, (size_t)s.samples, max_req, "selftrain: training problems x --samples");
        checked_count(n, (size_t)s.iterations, max_req, "selftrain: --iterations x training problems x --samples");
    }
    if (method == METHOD_VSTAR)
        checked_count((size_t)n_test, (size_t)s.test_samples, max_req, "selftrain: test problems x --test-samples");
    if (method == METHOD_STEPDPO)
        checked_count(n_prob, (size_t)s.rollouts, max_req, "selftrain: training problems x --rollouts");
    checked_count((size_t)s.gen_batch, 4, max_req, "selftrain: --gen-batch x 4 (requests per chunk)");
    char* tok_path = xsprintf("%s/tokenizer.json", s.model);
    Tokenizer* tok = tok_load(tok_path);
    ModelConfig cfg;
    config_load(&cfg, s.model);
    if (s.max_tokens >= cfg.max_position_embeddings)
        fatal("selftrain: --max-tokens %d: more than the model's context of %d positions holds after a prompt",
              s.max_tokens, cfg.max_position_embeddings);
    Model m;
    model_create(&m, &cfg, be);
    const int64_t eos = tok_eos_id(tok);

    mkdir_p(s.out);
    cJSON* settings = args_to_json(specs, n_specs);
    cJSON_DeleteItemFromObject(settings, "resume");
    if (first_iter == 1 && !(saved && cJSON_GetObjectItemCaseSensitive(saved, "stage"))) {
        char* mp = xsprintf("%s/metrics.jsonl", s.out);
        write_file_atomic(mp, "", 0);
        free(mp);
    } else {
        st_metrics_rewind(s.out, saved, first_iter);
    }
    args_print_table(specs, n_specs);

    char* ctx = st_few_shot(task, train, s.shots, 0);
    char* hctx = st_few_shot(task, train, s.shots, 1);
    // the exemplars are not training problems
    RunCtx rc = {&s, task, n_train - s.shots, n_test, train + s.shots, test, ctx, hctx, tok, eos >= 0 ? (int)eos : 0,
                 eos, settings, cfg.vocab_size};
    if (method == METHOD_STEPDPO) {
        stepdpo_run(&m, &rc, first_iter, saved);
    } else {
        run_iterations(&m, &rc, method, first_iter, saved);
        if (method == METHOD_VSTAR)
            vstar_final(&m, &rc, first_iter > s.iterations && saved ? cJSON_GetObjectItemCaseSensitive(saved, "stage") : NULL);
    }
    free(ctx), free(hctx), free(tok_path);
    cJSON_Delete(settings);
    cJSON_Delete(saved);
    star_free_tasks(train, n_train_all);
    star_free_tasks(test, n_test_all);
    tok_free(tok);
    model_destroy(&m);
    return 0;
}
