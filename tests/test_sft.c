/*
 * SFT rows (model/sft.c): the loss only on completion tokens (prompt and padding ignored), truncation
 * of long completions, empty completions and over-long prompts; and on the tiny model, that sft_step's
 * loss over a padded batch equals the mean of the completion tokens' losses computed one sequence at a
 * time at its exact length (no leak through padding or between rows), and that it produces gradients.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/model.h"
#include "model/sft.h"
#include "tests/check.h"

#define IG QSTAR_IGNORE_INDEX

static void check_row(const int32_t* p, int np, const int32_t* c, int nc, int T, const int32_t* want_in,
                      const int32_t* want_tg, int want_n, const char* what) {
    int32_t in[16], tg[16];
    int n = sft_make_row(p, np, c, nc, T, 0, in, tg);
    CHECK(n == want_n, "%s: %d targets, want %d", what, n, want_n);
    CHECK(!memcmp(in, want_in, sizeof(int32_t) * (size_t)T), "%s: inputs differ", what);
    int same = !memcmp(tg, want_tg, sizeof(int32_t) * (size_t)T);
    CHECK(same, "%s: targets differ", what);
    if (!same)
        for (int t = 0; t < T; t++) printf("  t=%d in %d target %d want %d\n", t, in[t], tg[t], want_tg[t]);
}

static void test_rows(void) {
    const int32_t p[] = {10, 11, 12}, c[] = {20, 21, 22, 23};
    {
        const int32_t in[] = {10, 11, 12, 20, 21, 22, 23, 0, 0}, tg[] = {IG, IG, 20, 21, 22, 23, IG, IG, IG};
        check_row(p, 3, c, 4, 9, in, tg, 4, "padded");
    }
    {  // n - 1 == T: the last completion token is only a target
        const int32_t in[] = {10, 11, 12, 20, 21, 22}, tg[] = {IG, IG, 20, 21, 22, 23};
        check_row(p, 3, c, 4, 6, in, tg, 4, "exact fit");
    }
    {  // too long: the completion's end is cut
        const int32_t in[] = {10, 11, 12, 20}, tg[] = {IG, IG, 20, 21};
        check_row(p, 3, c, 4, 4, in, tg, 2, "truncated");
    }
    {  // the prompt fills the row: nothing to learn
        const int32_t in[] = {10, 11}, tg[] = {IG, IG};
        check_row(p, 3, c, 4, 2, in, tg, 0, "prompt longer than the row");
    }
    {
        const int32_t in[] = {10, 11, 12, 0}, tg[] = {IG, IG, IG, IG};
        check_row(p, 3, c, 0, 4, in, tg, 0, "empty completion");
    }
    {  // no prompt: the first completion token has nothing to be predicted from
        const int32_t in[] = {20, 21, 22, 23, 0}, tg[] = {21, 22, 23, IG, IG};
        check_row(p, 0, c, 4, 5, in, tg, 3, "no prompt");
    }
    {
        const int32_t in[] = {10, 20, 0}, tg[] = {20, IG, IG};
        check_row(p, 1, c, 1, 3, in, tg, 1, "one and one");
    }
}

static void test_model(void) {
    ModelConfig cfg;
    config_load(&cfg, "configs/tiny.json");
    Model m;
    model_create(&m, &cfg, backend_get("cpu"));
    model_init_random(&m, 3);
    enum { T = 16, B = 3 };
    const int np[B] = {4, 7, 2}, nc[B] = {9, 5, 14};
    int32_t seq[B][32];
    uint32_t x = 99;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < np[b] + nc[b]; i++) seq[b][i] = (int32_t)((x = x * 1103515245u + 12345u) >> 8) % 1000 + 3;
    int32_t in[B * 16], tg[B * 16];
    int total = 0;
    for (int b = 0; b < B; b++) total += sft_make_row(seq[b], np[b], seq[b] + np[b], nc[b], T, 0, in + b * T, tg + b * T);
    // each sequence alone at its exact length, the completion's losses summed
    double sum = 0;
    for (int b = 0; b < B; b++) {
        const int n = np[b] + nc[b] - 1;
        int32_t* ti = xmalloc(sizeof(int32_t) * (size_t)n);
        int32_t* tt = xmalloc(sizeof(int32_t) * (size_t)n);
        for (int t = 0; t < n; t++) {
            ti[t] = seq[b][t];
            tt[t] = t + 1 >= np[b] ? seq[b][t + 1] : IG;
        }
        model_alloc_activations(&m, 1, n);
        float l = model_forward(&m, ti, tt, NULL);
        sum += (double)l * m.n_valid;
        free(ti), free(tt);
    }
    model_alloc_activations(&m, B, T);
    model_zero_grad(&m);
    float loss = sft_step(&m, in, tg, 1.0f);
    const double want = sum / total;
    CHECK(m.n_valid == total && fabs(loss - want) <= 1e-5 * want, "batch loss %.7f, one at a time %.7f (%d targets)",
          loss, want, m.n_valid);
    CHECK(model_grad_norm(&m) > 0, "no gradient");
    // a changed prompt token changes nothing but the conditioning; a changed padding token nothing at all
    int32_t in2[B * 16];
    memcpy(in2, in, sizeof in);
    in2[0 * T + 14] = 500;  // padding of row 0 (its sequence is 13 tokens)
    model_alloc_activations(&m, B, T);
    float loss2 = model_forward(&m, in2, tg, NULL);
    CHECK(loss2 == loss, "padding changed the loss: %.9g vs %.9g", loss2, loss);
    model_destroy(&m);
}

int main(void) {
    test_rows();
    test_model();
    return test_summary();
}
