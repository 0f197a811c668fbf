/*
 * Training-step benchmark on the CPU backend. First measures this machine's sgemm peak (OpenBLAS,
 * square 2048 GEMMs, best of several), then times full training steps (forward, backward, AdamW)
 * of the presets and reports tokens/s and the share of the sgemm peak the whole step reaches.
 *
 * FLOPs are counted exactly for the work a training step must do, not for what this
 * implementation happens to do: every linear layer costs 2·N·IN·OUT forward and twice that
 * backward (lm_head included, embedding lookups and elementwise ops excluded); causal attention
 * costs 4·HD FLOPs per visible (query, key) pair and head forward (QKᵀ and PV) and 8·HD backward,
 * with T(T+1)/2 visible pairs per sequence. Recomputation in the backward is not counted.
 *
 *   bench_train_step [--presets tiny,100m] [--seq 512] [--batch 4] [--steps 3] [--device cpu]
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/model.h"

static double sgemm_peak_flops(void) {
    const int n = 2048;
    float* a = xmalloc(sizeof(float) * n * n);
    float* b = xmalloc(sizeof(float) * n * n);
    float* c = xmalloc(sizeof(float) * n * n);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    double best = 0;
    for (int r = 0; r < 4; r++) {
        double t0 = now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = now_seconds() - t0;
        double f = 2.0 * n * n * n / dt;
        if (r > 0 && f > best) best = f;  // first call warms up threads and caches
    }
    free(a);
    free(b);
    free(c);
    return best;
}

int main(int argc, char** argv) {
    const char* presets = "tiny,100m";
    const char* device = "cpu";
    int seq = 512, batch = 4, steps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--presets")) presets = argv[i + 1];
        else if (!strcmp(argv[i], "--seq")) seq = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--device")) device = argv[i + 1];
        else fatal("bench_train_step: unknown option %s", argv[i]);
    }
    const Backend* be = backend_get(device);
    if (!be) fatal("bench_train_step: unknown device %s", device);
    double peak = sgemm_peak_flops();
    printf("sgemm peak on this machine: %.1f GFLOP/s (OpenBLAS, 2048^3, best of 3)\n", peak / 1e9);
    printf("%-8s %6s %5s %12s %10s %12s %12s %8s\n", "preset", "batch", "seq", "params", "ms/step", "tokens/s",
           "GFLOP/s", "% peak");

    char* list = xstrdup(presets);
    for (char* save = NULL, *p = strtok_r(list, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        char* path = xsprintf("configs/%s.json", p);
        ModelConfig cfg;
        config_load(&cfg, path);
        Model m;
        model_create(&m, &cfg, be);
        model_init_random(&m, 1);
        model_alloc_activations(&m, batch, seq);
        const int N = batch * seq;
        int32_t* tok = xmalloc(sizeof(int32_t) * N);
        int32_t* tgt = xmalloc(sizeof(int32_t) * N);
        for (int i = 0; i < N; i++) tok[i] = tgt[(i + N - 1) % N] = (int32_t)((i * 2654435761u) % cfg.vocab_size);
        AdamWConfig opt = {0.9f, 0.95f, 1e-8f, 0.1f, 0, 0};
        double best = 1e30;
        for (int s = 0; s <= steps; s++) {
            double t0 = now_seconds();
            model_zero_grad(&m);
            model_forward(&m, tok, tgt, NULL);
            model_backward(&m, 1.0f);
            float norm = model_grad_norm(&m);
            model_adamw_step(&m, &opt, 1e-4f, norm > 1 ? 1 / norm : 1, s + 1);
            be->sync();
            double dt = now_seconds() - t0;
            if (s > 0 && dt < best) best = dt;  // step 0 warms up
        }
        double flops = model_step_flops(&m, batch, seq);
        printf("%-8s %6d %5d %11.1fM %10.1f %12.0f %12.1f %7.1f%%\n", p, batch, seq, m.n_params / 1e6, best * 1e3,
               N / best, flops / best / 1e9, 100.0 * flops / best / peak);
        fflush(stdout);
        free(tok);
        free(tgt);
        free(path);
        model_destroy(&m);
    }
    free(list);
    return 0;
}
