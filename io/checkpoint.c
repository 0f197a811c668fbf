/*
 * Checkpoint writing and reading (layout in checkpoint.h). Every file inside is itself written
 * atomically, and the directory is renamed into place only once all of them are complete.
 */
#define _GNU_SOURCE
#include "io/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/bf16.h"
#include "common/fs.h"
#include "io/safetensors.h"
#include "common/util.h"
#include "io/weights.h"

// A directory this save made (.tmp.step_N, .old.step_N): removed without following links (fs.h). A
// failure is left unsaid: what stays behind is a leftover, never the checkpoint, and where it matters
// (an unwritable run directory) the save's own next step fails with the one error line that names it.
static void remove_tree(const char* path) { free(tree_remove(path)); }

static void remove_tree_on_error(void* path) { remove_tree(path); }

static int all_bf16_values(const float* x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (bf16_round(x[i]) != x[i]) return 0;
    return 1;
}

void checkpoint_save(const char* run_dir, int step, const Model* m, const CheckpointTensors* ct,
                     const DataPosition* data, const cJSON* settings, const Tokenizer* tok) {
    mkdir_p(run_dir);
    char* final_dir = xsprintf("%s/step_%06d", run_dir, step);
    char* tmp_dir = xsprintf("%s/.tmp.step_%06d", run_dir, step);
    remove_tree(tmp_dir);  // leftovers of a run that died mid-save
    mkdir_p(tmp_dir);
    // a failed write (a full disk) must not leave the partial directory holding its space until the
    // next save; a crash still can, and the next save clears that (above)
    fatal_set_cleanup(remove_tree_on_error, tmp_dir);

    float* own = NULL;
    const float* weights = ct->weights;
    if (!weights) {
        weights = own = xmalloc(sizeof(float) * m->n_params);
        model_get_weights(m, own);
    }
    char* p = xsprintf("%s/model.safetensors", tmp_dir);
    model_save_host_weights(m, weights, p, ct->bf16);
    free(p);
    p = xsprintf("%s/config.json", tmp_dir);
    config_save(&m->cfg, p, ct->bf16 ? "bfloat16" : "float32");
    free(p);

    // the full-precision weights ride in the optimizer file when model.safetensors rounded them; the
    // BF16 working copy goes last (F32 tensors stay 4-byte aligned)
    const int64_t n = (int64_t)m->n_params;
    StWriteTensor t[4] = {{.name = "adam_m", .ndim = 1, .shape = {n}, .data = ct->adam_m},
                          {.name = "adam_v", .ndim = 1, .shape = {n}, .data = ct->adam_v}};
    int nt = 2;
    if (ct->bf16 && !all_bf16_values(weights, m->n_params))
        t[nt++] = (StWriteTensor){.name = "master", .ndim = 1, .shape = {n}, .data = weights};
    if (ct->working) t[nt++] = (StWriteTensor){.name = "working_bf16", .ndim = 1, .shape = {n}, .data = ct->working, .bf16 = 1};
    p = xsprintf("%s/optimizer.safetensors", tmp_dir);
    st_write(p, t, nt, NULL);
    free(p);
    free(own);
    fault_point("save");  // test hook: a crash with a half-written checkpoint directory

    cJSON* st = cJSON_CreateObject();
    cJSON_AddNumberToObject(st, "step", step);
    cJSON* d = cJSON_AddObjectToObject(st, "data");
    cJSON_AddNumberToObject(d, "epoch", (double)data->epoch);
    cJSON_AddNumberToObject(d, "shard_cursor", (double)data->shard_cursor);
    cJSON_AddNumberToObject(d, "window_cursor", (double)data->window_cursor);
    if (settings) cJSON_AddItemToObject(st, "settings", cJSON_Duplicate(settings, 1));
    char* text = cJSON_Print(st);
    p = xsprintf("%s/state.json", tmp_dir);
    write_file_atomic(p, text, strlen(text));
    free(p);
    free(text);
    cJSON_Delete(st);

    if (tok) {
        p = xsprintf("%s/tokenizer.json", tmp_dir);
        tok_save(tok, p);
        free(p);
    }
    fsync_dir(tmp_dir);
    // Re-saving the same step (a resumed run) replaces the old one, which is deleted only once the new
    // one is in place: a failed rename puts it back.
    char* old = NULL;
    if (dir_exists(final_dir)) {
        old = xsprintf("%s/.old.step_%06d", run_dir, step);
        remove_tree(old);
        if (rename(final_dir, old) != 0) fatal("%s: cannot move aside: %s", final_dir, strerror(errno));
    }
    if (rename(tmp_dir, final_dir) != 0) {
        int err = errno;
        if (old) rename(old, final_dir);
        fatal("%s: cannot rename checkpoint into place: %s", final_dir, strerror(err));
    }
    fatal_set_cleanup(NULL, NULL);
    if (old) remove_tree(old);
    free(old);
    fsync_dir(run_dir);
    free(final_dir);
    free(tmp_dir);
}

char* checkpoint_latest(const char* run_dir) {
    DIR* d = opendir(run_dir);
    if (!d) return NULL;
    int best = -1;
    struct dirent* e;
    while ((e = readdir(d))) {
        int s;
        char tail;
        if (sscanf(e->d_name, "step_%d%c", &s, &tail) != 1) continue;
        char* state = xsprintf("%s/%s/state.json", run_dir, e->d_name);
        if (file_exists(state) && s > best) best = s;
        free(state);
    }
    closedir(d);
    return best < 0 ? NULL : xsprintf("%s/step_%06d", run_dir, best);
}

// A flat (n_params) tensor of the optimizer file, checked finite (and non-negative where asked); NULL
// when the file has no such tensor.
static float* read_flat(const StIndex* st, const char* path, const char* name, size_t n, int nonneg) {
    const StTensor* t = st_find(st, name);
    if (!t) return NULL;
    const int64_t shape[1] = {(int64_t)n};
    float* x = xmalloc(sizeof(float) * n);
    st_read_f32(st, t, x, shape, 1);
    // a NaN moment, or a negative second moment (its square root is NaN), would surface steps later
    // as a "diverged" gradient norm blamed on the learning rate; a NaN weight makes every loss NaN
    for (size_t k = 0; k < n; k++)
        if (!isfinite(x[k]) || (nonneg && x[k] < 0))
            fatal("%s: tensor \"%s\" holds %g at element %zu (must be finite%s)", path, name, x[k], k,
                  nonneg ? " and non-negative" : "");
    return x;
}

void checkpoint_load(const char* dir, Model* m, float** adam_m, float** adam_v) {
    char* p = xsprintf("%s/model.safetensors", dir);
    model_load_weights(m, p);
    free(p);

    p = xsprintf("%s/optimizer.safetensors", dir);
    StIndex* st = st_open(p);
    const char* names[2] = {"adam_m", "adam_v"};
    float** dst[2] = {adam_m, adam_v};
    for (int i = 0; i < 2; i++)
        if (!(*dst[i] = read_flat(st, p, names[i], m->n_params, i == 1))) fatal("%s: missing tensor \"%s\"", p, names[i]);
    float* master = read_flat(st, p, "master", m->n_params, 0);
    if (master) model_set_weights(m, master);  // model.safetensors holds them rounded to bf16
    free(master);
    // the working copy a stochastically rounding run had (a model without a master has no separate copy)
    float* working = m->master ? read_flat(st, p, "working_bf16", m->n_params, 0) : NULL;
    if (working) x_upload(m->be, m->params, working, m->n_params);
    free(working);
    st_close(st);
    free(p);
}

// A non-negative integer of state.json, below max (an out-of-range double converts with undefined
// behaviour, and positions beyond 2^53 are not integers in JSON's doubles).
static double get_count(const cJSON* o, const char* key, double max, const char* path) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) fatal("%s: missing or non-numeric \"%s\"", path, key);
    const double d = v->valuedouble;
    if (!(d >= 0 && d <= max && d == floor(d)))
        fatal("%s: \"%s\" must be an integer in 0..%.0f (got %.17g)", path, key, max, d);
    return d;
}

int run_state_read(const char* dir, RunState* rs, int required) {
    memset(rs, 0, sizeof *rs);
    char* p = xsprintf("%s/state.json", dir);
    size_t len;
    char* text = required ? read_file_or_die(p, &len) : read_file_maybe(p, &len);
    if (!text) {
        free(p);
        return 0;
    }
    const char* err_at = NULL;
    cJSON* root = cJSON_ParseWithLengthOpts(text, len, &err_at, 0);
    if (!root) fatal("%s: malformed JSON near byte %zu", p, err_at ? (size_t)(err_at - text) : (size_t)0);
    if (!cJSON_IsObject(root)) fatal("%s: expected a JSON object", p);
    rs->step = (int)get_count(root, "step", 2147483647.0, p);
    const cJSON* d = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!cJSON_IsObject(d)) fatal("%s: missing \"data\" position", p);
    const double max_pos = 9007199254740992.0;  // 2^53
    rs->data.epoch = (uint64_t)get_count(d, "epoch", max_pos, p);
    rs->data.shard_cursor = (uint64_t)get_count(d, "shard_cursor", max_pos, p);
    rs->data.window_cursor = (uint64_t)get_count(d, "window_cursor", max_pos, p);
    const cJSON* s = cJSON_GetObjectItemCaseSensitive(root, "settings");
    if (s && !cJSON_IsNull(s) && !cJSON_IsObject(s)) fatal("%s: \"settings\" must be an object", p);
    rs->settings = cJSON_IsObject(s) ? cJSON_Duplicate(s, 1) : NULL;
    cJSON_Delete(root);
    free(text);
    free(p);
    return 1;
}

void run_state_free(RunState* st) {
    if (st->settings) cJSON_Delete(st->settings);
    memset(st, 0, sizeof *st);
}

double checkpoint_setting(const char* ckpt, const char* key, double def) {
    RunState rs;
    double v = def;
    if (run_state_read(ckpt, &rs, 0)) {
        const cJSON* item = rs.settings ? cJSON_GetObjectItemCaseSensitive(rs.settings, key) : NULL;
        if (cJSON_IsNumber(item)) v = item->valuedouble;
        // the callers convert to int or float: a value beyond either is a damaged file
        if (!(fabs(v) <= 1e9)) fatal("%s/state.json: setting \"%s\" is out of range (%g)", ckpt, key, v);
    }
    run_state_free(&rs);
    return v;
}
