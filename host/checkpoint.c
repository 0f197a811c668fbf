/*
 * Checkpoint writing and reading (layout in checkpoint.h). Every file inside is itself written
 * atomically, and the directory is renamed into place only once all of them are complete.
 */
#define _GNU_SOURCE
#include "host/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host/safetensors.h"
#include "host/util.h"

static void remove_tree(const char* path) {
    DIR* d = opendir(path);
    if (!d) return;
    struct dirent* e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char* p = xsprintf("%s/%s", path, e->d_name);
        if (dir_exists(p)) remove_tree(p);
        else unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(path);
}

void checkpoint_save(const char* run_dir, int step, const Model* m, const float* adam_m, const float* adam_v,
                     const DataPosition* data, const cJSON* settings, const Tokenizer* tok) {
    mkdir_p(run_dir);
    char* final_dir = xsprintf("%s/step_%06d", run_dir, step);
    char* tmp_dir = xsprintf("%s/.tmp.step_%06d", run_dir, step);
    remove_tree(tmp_dir);  // leftovers of a run that died mid-save
    mkdir_p(tmp_dir);

    char* p = xsprintf("%s/model.safetensors", tmp_dir);
    model_save_weights(m, p);
    free(p);
    p = xsprintf("%s/config.json", tmp_dir);
    config_save(&m->cfg, p);
    free(p);

    StWriteTensor t[2] = {{.name = "adam_m", .ndim = 1, .shape = {(int64_t)m->n_params}, .data = adam_m},
                          {.name = "adam_v", .ndim = 1, .shape = {(int64_t)m->n_params}, .data = adam_v}};
    p = xsprintf("%s/optimizer.safetensors", tmp_dir);
    st_write_f32(p, t, 2, NULL);
    free(p);
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
    if (dir_exists(final_dir)) {  // re-saving the same step (a resumed run): replace the old one
        char* old = xsprintf("%s/.old.step_%06d", run_dir, step);
        remove_tree(old);
        if (rename(final_dir, old) != 0) fatal("%s: cannot move aside: %s", final_dir, strerror(errno));
        remove_tree(old);
        free(old);
    }
    if (rename(tmp_dir, final_dir) != 0) fatal("%s: cannot rename checkpoint into place: %s", final_dir, strerror(errno));
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

static double get_num(const cJSON* o, const char* key, const char* path) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble < 0) fatal("%s: missing or invalid \"%s\"", path, key);
    return v->valuedouble;
}

void checkpoint_load(const char* dir, Model* m, RunState* rs) {
    memset(rs, 0, sizeof *rs);
    char* p = xsprintf("%s/model.safetensors", dir);
    model_load_weights(m, p);
    free(p);

    p = xsprintf("%s/optimizer.safetensors", dir);
    StIndex* st = st_open(p);
    int64_t shape[1] = {(int64_t)m->n_params};
    const char* names[2] = {"adam_m", "adam_v"};
    float** dst[2] = {&rs->adam_m, &rs->adam_v};
    for (int i = 0; i < 2; i++) {
        const StTensor* t = st_find(st, names[i]);
        if (!t) fatal("%s: missing tensor \"%s\"", p, names[i]);
        *dst[i] = xmalloc(sizeof(float) * m->n_params);
        st_read_f32(st, t, *dst[i], shape, 1);
    }
    st_close(st);
    free(p);

    p = xsprintf("%s/state.json", dir);
    size_t len;
    char* text = read_file_or_die(p, &len);
    cJSON* root = cJSON_ParseWithLength(text, len);
    if (!root || !cJSON_IsObject(root)) fatal("%s: malformed JSON", p);
    rs->step = (int)get_num(root, "step", p);
    const cJSON* d = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (!cJSON_IsObject(d)) fatal("%s: missing \"data\" position", p);
    rs->data.epoch = (uint64_t)get_num(d, "epoch", p);
    rs->data.shard_cursor = (uint64_t)get_num(d, "shard_cursor", p);
    rs->data.window_cursor = (uint64_t)get_num(d, "window_cursor", p);
    const cJSON* s = cJSON_GetObjectItemCaseSensitive(root, "settings");
    rs->settings = s ? cJSON_Duplicate(s, 1) : NULL;
    cJSON_Delete(root);
    free(text);
    free(p);
}

void run_state_free(RunState* st) {
    if (st->settings) cJSON_Delete(st->settings);
    free(st->adam_m);
    free(st->adam_v);
    memset(st, 0, sizeof *st);
}

double checkpoint_setting(const char* ckpt, const char* key, double def) {
    char* path = xsprintf("%s/state.json", ckpt);
    size_t len;
    char* text = read_file_maybe(path, &len);
    double v = def;
    if (text) {
        cJSON* root = cJSON_ParseWithLength(text, len);
        const cJSON* st = root ? cJSON_GetObjectItemCaseSensitive(root, "settings") : NULL;
        const cJSON* item = st ? cJSON_GetObjectItemCaseSensitive(st, key) : NULL;
        if (cJSON_IsNumber(item)) v = item->valuedouble;
        cJSON_Delete(root);
        free(text);
    }
    free(path);
    return v;
}
