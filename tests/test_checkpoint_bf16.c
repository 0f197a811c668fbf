/*
 * Checkpoints in bf16 and the state a bf16 run needs to resume bitwise (io/checkpoint.c):
 *   - --save-dtype bf16: model.safetensors holds every tensor as BF16 and config.json says torch_dtype
 *     "bfloat16"; loading it (model_load_weights, as `qstar sample --ckpt` does) gives exactly the
 *     weights rounded to nearest even; checkpoint_load restores the fp32 weights bit for bit from the
 *     optimizer file's "master", which is written only when rounding lost something;
 *   - fp32 (the default) stays F32 with no "master";
 *   - a bf16 table with a master (emu-bf16): a working copy that is not the master rounded to nearest
 *     (stochastic rounding) is saved as "working_bf16" and restored, the master unchanged; a model
 *     without a master ignores it.
 * Exact comparisons throughout: nothing here computes, it only stores and converts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bf16.h"
#include "common/fs.h"
#include "common/util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "model/model.h"
#include "tests/check.h"
#include "tests/tiny_config.h"

static const char* DIR_ = "build/test-work/checkpoint_bf16";

// Saves step `step` of m with the given weights/working copy and moments; returns the checkpoint path.
static char* save(const Model* m, int step, const float* weights, const float* working, int bf16) {
    float* am = xcalloc(m->n_params, sizeof(float));
    float* av = xcalloc(m->n_params, sizeof(float));
    for (size_t i = 0; i < m->n_params; i++) am[i] = 1e-3f * (float)(i % 7), av[i] = 1e-6f * (float)(i % 5);
    const CheckpointTensors ct = {weights, working, am, av, bf16};
    const DataPosition pos = {0};
    checkpoint_save(DIR_, step, m, &ct, &pos, NULL, NULL);
    free(am), free(av);
    return xsprintf("%s/step_%06d", DIR_, step);
}

// "name:DTYPE" of every tensor of a file, for membership checks.
static int has_tensor(const char* path, const char* name, const char* dtype) {
    StIndex* st = st_open(path);
    const StTensor* t = st_find(st, name);
    const int yes = t && !strcmp(t->dtype_name, dtype);
    st_close(st);
    return yes;
}

static int all_dtype(const char* path, const char* dtype) {
    StIndex* st = st_open(path);
    int all = st_count(st) > 0;
    for (int i = 0; i < st_count(st); i++) all &= !strcmp(st_tensor(st, i)->dtype_name, dtype);
    st_close(st);
    return all;
}

static size_t count_differ(const float* a, const float* b, size_t n) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], 4) != 0;
    return d;
}

static void test_cpu_bf16_save(void) {
    const ModelConfig cfg = tiny_config(64, 48, 2, 1, 0);
    Model m;
    model_create(&m, &cfg, backend_get("cpu"));
    model_init_random(&m, 7);
    const size_t n = m.n_params;
    float* w = xmalloc(sizeof(float) * n);
    model_get_weights(&m, w);
    size_t off_grid = 0;
    for (size_t i = 0; i < n; i++) off_grid += bf16_round(w[i]) != w[i];
    CHECK(off_grid > n / 2, "the random weights should mostly lie between bf16 values (%zu of %zu do)", off_grid, n);

    char* ck = save(&m, 1, NULL, NULL, 1);
    char* mp = xsprintf("%s/model.safetensors", ck);
    char* op = xsprintf("%s/optimizer.safetensors", ck);
    char* cp = xsprintf("%s/config.json", ck);
    CHECK(all_dtype(mp, "BF16"), "--save-dtype bf16: model.safetensors has a tensor that is not BF16");
    size_t len;
    char* cj = read_file_or_die(cp, &len);
    CHECK(strstr(cj, "\"torch_dtype\":\t\"bfloat16\"") != NULL, "config.json does not say torch_dtype bfloat16");
    free(cj);
    CHECK(has_tensor(op, "master", "F32") && has_tensor(op, "adam_m", "F32") && has_tensor(op, "adam_v", "F32"),
          "optimizer.safetensors lacks the F32 master or moments");
    CHECK(!has_tensor(op, "working_bf16", "BF16"), "an fp32 model saved a working copy");

    // what any loader of model.safetensors gets: the weights rounded to nearest even
    Model a;
    model_create(&a, &cfg, backend_get("cpu"));
    model_load_weights(&a, mp);
    float* got = xmalloc(sizeof(float) * n);
    float* rounded = xmalloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) rounded[i] = bf16_round(w[i]);
    model_get_weights(&a, got);
    size_t d = count_differ(got, rounded, n);
    printf("  bf16 model.safetensors loads as bf16(weights): %zu of %zu differ\n", d, n);
    CHECK(d == 0, "model.safetensors loads %zu of %zu weights other than the weights rounded to nearest", d, n);

    // resuming: the fp32 weights come back bit for bit from "master"
    float *am, *av;
    Model b;
    model_create(&b, &cfg, backend_get("cpu"));
    checkpoint_load(ck, &b, &am, &av);
    model_get_weights(&b, got);
    d = count_differ(got, w, n);
    printf("  checkpoint_load restores the fp32 weights: %zu of %zu differ\n", d, n);
    CHECK(d == 0, "checkpoint_load restored %zu of %zu weights other than the fp32 ones", d, n);
    CHECK(am[5] == 1e-3f * 5 && av[4] == 1e-6f * 4, "moments not restored");
    free(am), free(av);

    // weights that are bf16 values lose nothing: no "master"
    model_set_weights(&m, rounded);
    free(ck), free(op);
    ck = save(&m, 2, NULL, NULL, 1);
    op = xsprintf("%s/optimizer.safetensors", ck);
    CHECK(!has_tensor(op, "master", "F32"), "bf16-valued weights saved a redundant master");
    // fp32 save: F32 file, no master, torch_dtype float32
    model_set_weights(&m, w);
    free(ck), free(op), free(mp), free(cp);
    ck = save(&m, 3, NULL, NULL, 0);
    op = xsprintf("%s/optimizer.safetensors", ck);
    mp = xsprintf("%s/model.safetensors", ck);
    cp = xsprintf("%s/config.json", ck);
    CHECK(all_dtype(mp, "F32") && !has_tensor(op, "master", "F32"), "fp32 save: not all F32, or a master written");
    cj = read_file_or_die(cp, &len);
    CHECK(strstr(cj, "\"torch_dtype\":\t\"float32\"") != NULL, "fp32 save: config.json's torch_dtype is not float32");
    free(cj);
    model_destroy(&a), model_destroy(&b), model_destroy(&m);
    free(w), free(got), free(rounded), free(ck), free(op), free(mp), free(cp);
}

static void test_working_copy(void) {
    const Backend* bf = backend_get("emu-bf16");
    if (!bf) {
        CHECK(0, "SKIP: emu-bf16 is not built into this binary (built: %s): the working copy was not checked",
              backend_names());
        return;
    }
    const ModelConfig cfg = tiny_config(64, 48, 2, 0, 0);
    Model m;
    model_create(&m, &cfg, bf);
    model_init_random(&m, 9);
    const size_t n = m.n_params;
    float* w = xmalloc(sizeof(float) * n);
    model_get_weights(&m, w);  // the fp32 master
    // a working copy the master does not determine: every other weight one bf16 step away from nearest
    float* work = xmalloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) {
        uint16_t h = bf16_from_float(w[i]);
        work[i] = bf16_to_float(i % 2 ? h : (uint16_t)(h + 1));
    }
    char* ck = save(&m, 4, NULL, work, 0);
    char* op = xsprintf("%s/optimizer.safetensors", ck);
    CHECK(has_tensor(op, "working_bf16", "BF16"), "the working copy was not saved as BF16 \"working_bf16\"");
    Model b;
    model_create(&b, &cfg, bf);
    float *am, *av;
    checkpoint_load(ck, &b, &am, &av);
    free(am), free(av);
    float* got = xmalloc(sizeof(float) * n);
    x_download(bf, got, b.params, n);
    const size_t dw = count_differ(got, work, n);
    bf->download(got, b.master, sizeof(float) * n);
    const size_t dm = count_differ(got, w, n);
    printf("  emu-bf16 working copy restored: %zu of %zu differ; master: %zu differ\n", dw, n, dm);
    CHECK(dw == 0 && dm == 0, "working copy (%zu) or master (%zu) not restored bit for bit", dw, dm);
    // without a master (the reference's bf16 mode) the bf16 params are the weights: model.safetensors
    Model c;
    model_create_shard(&c, &cfg, bf, 0, 1, 1);
    CHECK(c.master == NULL, "model_create_shard(bf16_weights = 1) allocated a master in bf16");
    checkpoint_load(ck, &c, &am, &av);
    free(am), free(av);
    x_download(bf, got, c.params, n);
    size_t dr = 0;
    for (size_t i = 0; i < n; i++) dr += got[i] != bf16_round(w[i]);
    CHECK(dr == 0, "a model without a master loaded %zu weights other than bf16(weights)", dr);
    model_destroy(&m), model_destroy(&b), model_destroy(&c);
    free(w), free(work), free(got), free(ck), free(op);
}

int main(void) {
    // the test's directory is a run directory (common/fs.h), so that the next run may clear it
    char* err = run_dir_remove(DIR_);
    if (err) printf("note: %s\n", err);
    free(err);
    run_dir_create(DIR_);
    test_cpu_bf16_save();
    test_working_copy();
    return test_summary();
}
