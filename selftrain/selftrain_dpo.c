/*
 * The DPO training loop of V-STaR's verifier and of per-step DPO (selftrain/selftrain.h st_dpo_train), and
 * sequence scoring (st_score, the verifier's V(y|x)), and the fields a DPO run adds to its metrics record
 * (st_record_dpo). The loss and its gradient are model/dpo.c's; this
 * file lays pairs out as rows, computes the frozen reference's log-probabilities once (the starting
 * weights are the reference, so before the first update) and caches them in the run directory so a
 * resumed run does not recompute them, then runs AdamW over shuffled batches of pairs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "selftrain/selftrain.h"
#include "model/dpo.h"
#include "model/sft.h"

// Log-probabilities of n_rows rows (inputs/targets, T each) in batches of m's B rows; a last partial
// batch is filled with padding rows (no targets), whose values are dropped.
static void logprobs_of_rows(Model* m, const int32_t* in, const int32_t* tg, int n_rows, int pad, double* logp,
                             const char* stage) {
    const int B = m->acts.B, T = m->acts.T;
    int32_t* bin = xmalloc(sizeof(int32_t) * (size_t)B * T);
    int32_t* btg = xmalloc(sizeof(int32_t) * (size_t)B * T);
    double* out = xmalloc(sizeof(double) * (size_t)B);
    const double t0 = now_seconds();
    for (int r0 = 0; r0 < n_rows; r0 += B) {
        const int k = n_rows - r0 < B ? n_rows - r0 : B;
        memcpy(bin, in + (size_t)r0 * T, sizeof(int32_t) * (size_t)k * T);
        memcpy(btg, tg + (size_t)r0 * T, sizeof(int32_t) * (size_t)k * T);
        for (size_t i = (size_t)k * T; i < (size_t)B * T; i++) bin[i] = pad, btg[i] = QSTAR_IGNORE_INDEX;
        dpo_sequence_logprobs(m, bin, btg, out);
        memcpy(logp + r0, out, sizeof(double) * (size_t)k);
        const double dt = now_seconds() - t0;
        fprintf(stderr, "\r  %-12s %d/%d rows  %.0f tokens/s   ", stage, r0 + k, n_rows,
                dt > 0 ? (double)(r0 + B) * T / dt : 0.0);
    }
    fprintf(stderr, "\n");
    free(bin), free(btg), free(out);
}

void st_score(Model* m, const Settings* s, const Example* ex, int n, int pad, double* logp, const char* stage) {
    const int T = s->seq;
    model_alloc_activations(m, 2 * s->dpo_batch, T);
    int32_t* in = xmalloc(sizeof(int32_t) * (size_t)(n ? n : 1) * T);
    int32_t* tg = xmalloc(sizeof(int32_t) * (size_t)(n ? n : 1) * T);
    for (int i = 0; i < n; i++)
        sft_make_row(ex[i].prompt.ids, ex[i].prompt.n, ex[i].completion.ids, ex[i].completion.n, T, pad, in + (size_t)i * T,
                     tg + (size_t)i * T);
    if (n) logprobs_of_rows(m, in, tg, n, pad, logp, stage);
    free(in), free(tg);
}

DpoRun st_dpo_train(Model* m, const Settings* s, const Pair* pairs, int n_pairs, int steps, int pad, const char* cache_path,
                    uint64_t seed, const char* stage) {
    DpoRun run = {0};
    if (!n_pairs || steps <= 0) return run;
    const int P = s->dpo_batch, B = 2 * P, T = s->seq;
    const size_t rows = 2 * (size_t)n_pairs;
    int32_t* in = xmalloc(sizeof(int32_t) * rows * T);
    int32_t* tg = xmalloc(sizeof(int32_t) * rows * T);
    int cut = 0;
    for (int p = 0; p < n_pairs; p++) {
        const Pair* q = &pairs[p];
        sft_make_row(q->prompt.ids, q->prompt.n, q->chosen.ids, q->chosen.n, T, pad, in + 2 * (size_t)p * T,
                     tg + 2 * (size_t)p * T);
        sft_make_row(q->prompt.ids, q->prompt.n, q->rejected.ids, q->rejected.n, T, pad, in + (2 * (size_t)p + 1) * T,
                     tg + (2 * (size_t)p + 1) * T);
        cut += q->prompt.n + (q->chosen.n > q->rejected.n ? q->chosen.n : q->rejected.n) - 1 > T;
    }
    if (cut) fprintf(stderr, "  warning: %d of %d pairs are longer than --seq %d + 1 tokens: their responses are cut\n", cut, n_pairs, T);
    model_alloc_activations(m, B, T);

    // the reference: these weights before any update, once
    const uint64_t key = dpo_rows_key(in, tg, rows * T);
    double* ref = dpo_ref_cache_load(cache_path, rows, key);
    if (!ref) {
        ref = xmalloc(sizeof(double) * rows);
        logprobs_of_rows(m, in, tg, (int)rows, pad, ref, "reference");
        dpo_ref_cache_save(cache_path, ref, rows, key);
    }

    const AdamWConfig opt = st_adamw_fresh(m);
    Epochs epochs = st_epochs(n_pairs, seed * 0x9E3779B97F4A7C15ull + 7);
    int32_t* bin = xmalloc(sizeof(int32_t) * (size_t)B * T);
    int32_t* btg = xmalloc(sizeof(int32_t) * (size_t)B * T);
    double* bref = xmalloc(sizeof(double) * (size_t)B);
    float* bw = xmalloc(sizeof(float) * (size_t)P);
    const double t0 = now_seconds();
    long tokens = 0;
    for (int step = 1; step <= steps; step++) {
        for (int b = 0; b < P; b++) {
            const int p = st_epochs_next(&epochs);
            memcpy(bin + 2 * (size_t)b * T, in + 2 * (size_t)p * T, sizeof(int32_t) * 2 * (size_t)T);
            memcpy(btg + 2 * (size_t)b * T, tg + 2 * (size_t)p * T, sizeof(int32_t) * 2 * (size_t)T);
            bref[2 * b] = ref[2 * p], bref[2 * b + 1] = ref[2 * p + 1];
            bw[b] = pairs[p].weight;
        }
        model_zero_grad(m);
        DpoStats ds = dpo_step(m, bin, btg, bref, bw, P, s->beta, 1.0f, NULL);
        tokens += (long)B * T;
        const float norm = model_grad_norm(m);
        const float scale = s->grad_clip > 0 && norm > s->grad_clip ? s->grad_clip / norm : 1.0f;
        const float lr = s->dpo_warmup > 0 && step <= s->dpo_warmup ? s->dpo_lr * step / s->dpo_warmup : s->dpo_lr;
        model_adamw_step(m, &opt, lr, scale, step);
        if (step == 1) run.first_loss = ds.loss;
        run.loss = ds.loss, run.accuracy = ds.accuracy, run.margin = ds.margin;
        const double dt = now_seconds() - t0;
        fprintf(stderr, "\r  %-12s %d/%d  loss %.4f  pair acc %.2f  margin %+.3f  %.0f tokens/s   ", stage, step, steps,
                ds.loss, ds.accuracy, ds.margin, dt > 0 ? tokens / dt : 0.0);
    }
    fprintf(stderr, "\n");
    const double dt = now_seconds() - t0;
    run.tok_per_s = dt > 0 ? tokens / dt : 0;
    run.steps = steps;

    // The objective over every pair with the trained weights (one forward over all rows, as for the
    // reference): what the updates lower. run.loss is the last step's --dpo-batch pairs scored before
    // that step's update (pairs not yet trained on in the current epoch): a draw of a few, not a trend.
    double* pol = xmalloc(sizeof(double) * rows);
    logprobs_of_rows(m, in, tg, (int)rows, pad, pol, "after");
    float* w = xmalloc(sizeof(float) * (size_t)n_pairs);
    for (int p = 0; p < n_pairs; p++) w[p] = pairs[p].weight;
    const DpoStats all = dpo_loss(pol, ref, w, n_pairs, s->beta, NULL);
    run.final_loss = all.loss, run.final_accuracy = all.accuracy, run.final_margin = all.margin;
    free(pol), free(w);
    free(epochs.order), free(bin), free(btg), free(bref), free(bw), free(in), free(tg), free(ref);
    return run;
}

void st_record_dpo(cJSON* rec, const DpoRun* run) {
    cJSON_AddNumberToObject(rec, "first_loss", run->first_loss);
    cJSON_AddNumberToObject(rec, "loss", run->loss);
    cJSON_AddNumberToObject(rec, "pair_accuracy", run->accuracy);
    cJSON_AddNumberToObject(rec, "margin", run->margin);
    cJSON_AddNumberToObject(rec, "final_loss", run->final_loss);
    cJSON_AddNumberToObject(rec, "final_pair_accuracy", run->final_accuracy);
    cJSON_AddNumberToObject(rec, "final_margin", run->final_margin);
    cJSON_AddNumberToObject(rec, "dpo_tokens_per_s", run->tok_per_s);
}
