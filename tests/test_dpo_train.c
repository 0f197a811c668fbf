/*
 * DPO as a training loop on the tiny model (model/dpo.c), beside the PyTorch gradient check of
 * tests/test_dpo.sh: with the reference = the policy's starting weights the first loss is exactly
 * log 2 (z = 0); AdamW steps on dpo_step's gradients then raise the margin and every pair's
 * preference; a pair of weight 0 contributes nothing (the gradient of pairs {p, q} with weights {1, 0}
 * is half that of p alone); the reference cache round-trips, and a cache for other rows, of another
 * size or malformed is a one-line error.
 */
// Backend buffers are read and written here as fp32 arrays: this file runs on fp32 tables (floatX =
// float, kernels/ops.h); the bf16 tables have their own tests (tests/test_bf16.c).
#define QSTAR_FLOATX float
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "model/dpo.h"
#include "model/model.h"
#include "model/sft.h"
#include "tests/check.h"

enum { P = 3, T = 20 };

static uint32_t rng = 7;
static int32_t rand_token(void) { return (int32_t)((rng = rng * 1103515245u + 12345u) >> 8) % 1000 + 3; }

// Pair p: a shared prompt, then a chosen and a rejected response of different lengths.
static void make_rows(int32_t* in, int32_t* tg) {
    for (int p = 0; p < P; p++) {
        int32_t prompt[8], ch[12], rj[12];
        const int np = 3 + p, nc = 6 + 2 * p, nr = 4 + 3 * p;
        for (int i = 0; i < np; i++) prompt[i] = rand_token();
        for (int i = 0; i < nc; i++) ch[i] = rand_token();
        for (int i = 0; i < nr; i++) rj[i] = rand_token();
        sft_make_row(prompt, np, ch, nc, T, 0, in + (2 * p) * T, tg + (2 * p) * T);
        sft_make_row(prompt, np, rj, nr, T, 0, in + (2 * p + 1) * T, tg + (2 * p + 1) * T);
    }
}

static int child_error(const char* path, size_t count, uint64_t key, const char* want) {
    int pfd[2];
    if (pipe(pfd)) return 0;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        dpo_ref_cache_load(path, count, key);
        _exit(0);
    }
    close(pfd[1]);
    char buf[1024] = "";
    ssize_t got = 0, r;
    while ((r = read(pfd[0], buf + got, sizeof buf - 1 - (size_t)got)) > 0) got += r;
    buf[got] = 0;
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    int lines = 0;
    for (char* c = buf; *c; c++) lines += *c == '\n';
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 1 && lines == 1 && strstr(buf, want);
    if (!ok) printf("  child: status %d stderr [%s]\n", st, buf);
    return ok;
}

int main(void) {
    ModelConfig cfg;
    config_load(&cfg, "configs/tiny.json");
    Model m;
    model_create(&m, &cfg, backend_get("cpu"));
    model_init_random(&m, 5);
    int32_t in[2 * P * T], tg[2 * P * T];
    make_rows(in, tg);
    model_alloc_activations(&m, 2 * P, T);

    // the reference: the starting weights, computed once and cached
    double ref[2 * P];
    dpo_sequence_logprobs(&m, in, tg, ref);
    mkdir_p("build/test-work/dpo_train");
    const char* cache = "build/test-work/dpo_train/ref.bin";
    const uint64_t key = dpo_rows_key(in, tg, 2 * P * T);
    dpo_ref_cache_save(cache, ref, 2 * P, key);
    double* back = dpo_ref_cache_load(cache, 2 * P, key);
    CHECK(back && !memcmp(back, ref, sizeof ref), "the cache does not round-trip");
    free(back);
    CHECK(dpo_ref_cache_load("build/test-work/dpo_train/none.bin", 2 * P, key) == NULL, "a missing cache is not NULL");
    int32_t tg2[2 * P * T];
    memcpy(tg2, tg, sizeof tg);
    tg2[5] = tg2[5] == QSTAR_IGNORE_INDEX ? 7 : QSTAR_IGNORE_INDEX;
    CHECK(dpo_rows_key(in, tg2, 2 * P * T) != key, "the key ignores the targets");
    CHECK(child_error(cache, 2 * P, key ^ 1, "computed for other sequences"), "a cache for other rows is accepted");
    CHECK(child_error(cache, 2 * P + 2, key, "holds 6 sequences, the data has 8"), "a cache of another size is accepted");
    write_file_atomic("build/test-work/dpo_train/bad.bin", "QSDPOREF\x06", 9);
    CHECK(child_error("build/test-work/dpo_train/bad.bin", 2 * P, key, "bad.bin: not a DPO reference cache"),
          "a malformed cache is accepted");

    // policy == reference: z = 0 exactly, loss log 2
    model_zero_grad(&m);
    DpoStats st0 = dpo_step(&m, in, tg, ref, NULL, P, 0.1f, 1.0f, NULL);
    CHECK(fabs(st0.loss - log(2.0)) < 1e-12 && st0.margin == 0, "first loss %.15f, want log 2 (margin %g)", st0.loss,
          st0.margin);

    // weights: pairs {0, 1} with weights {1, 0} give half the gradient of pair 0 alone
    {
        float w[2] = {1.0f, 0.0f};
        model_alloc_activations(&m, 4, T);
        model_zero_grad(&m);
        // at z = 0 the gradient does not vanish: dL/dz = -σ(0)/P
        dpo_step(&m, in, tg, ref, w, 2, 0.1f, 1.0f, NULL);
        float* g2 = xmalloc(sizeof(float) * m.n_params);
        memcpy(g2, m.grads, sizeof(float) * m.n_params);
        model_alloc_activations(&m, 2, T);
        model_zero_grad(&m);
        dpo_step(&m, in, tg, ref, NULL, 1, 0.1f, 1.0f, NULL);
        double md = 0, mr = 0;
        for (size_t i = 0; i < m.n_params; i++) {
            md = fmax(md, fabs(2.0 * g2[i] - m.grads[i]));
            mr = fmax(mr, fabs(m.grads[i]));
        }
        CHECK(mr > 0 && md <= 1e-5 * mr, "weight 0: 2 x gradient of {1, 0} vs pair 0 alone: max diff %.3g of %.3g", md,
              mr);
        free(g2);
    }

    // training: AdamW on the DPO gradient raises every pair's margin
    model_alloc_activations(&m, 2 * P, T);
    AdamWConfig opt = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0};
    DpoStats st = st0;
    double pol[2 * P];
    for (int step = 1; step <= 15; step++) {
        model_zero_grad(&m);
        st = dpo_step(&m, in, tg, ref, NULL, P, 0.1f, 1.0f, pol);
        model_adamw_step(&m, &opt, 1e-3f, 1.0f, step);
    }
    printf("after 15 steps: loss %.4f (from %.4f), margin %.3f, accuracy %.2f\n", st.loss, st0.loss, st.margin,
           st.accuracy);
    CHECK(st.loss < 0.5 * st0.loss && st.accuracy == 1.0 && st.margin > 0, "DPO training did not separate the pairs");
    CHECK(st.reward_chosen > st.reward_rejected, "chosen reward %.3f <= rejected %.3f", st.reward_chosen,
          st.reward_rejected);
    model_destroy(&m);
    return test_summary();
}
