/*
 * `qstar train`: the training driver. It resolves settings (command line, or a checkpoint's stored
 * settings when resuming), builds the model and data loader, and runs the loop: gradient
 * accumulation over micro-batches, global-norm clipping, AdamW with warmup then cosine or linear
 * decay, one log line and one metrics.jsonl record per step, periodic atomic checkpoints.
 * Resuming restores weights, moments, step and data position exactly, so a resumed run is bitwise
 * identical to an uninterrupted one.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/args.h"
#include "host/commands.h"
#include "host/checkpoint.h"
#include "host/dataloader.h"
#include "host/tokenizer.h"
#include "host/util.h"
#include "model/model.h"

typedef struct {
    const char* config;
    const char* model;
    const char* resume;
    const char* data;
    const char* out;
    const char* device;
    const char* schedule;
    const char* tokenizer;
    int sample_every, sample_tokens;
    int steps, batch, seq, grad_accum, warmup, seed, save_every, stop_after, log_every;
    float lr, min_lr_frac, weight_decay, beta1, beta2, eps, grad_clip;
} TrainSettings;

static float lr_at(const TrainSettings* s, int step) {
    if (s->warmup > 0 && step <= s->warmup) return s->lr * (float)step / (float)s->warmup;
    float min_lr = s->lr * s->min_lr_frac;
    int span = s->steps - s->warmup;
    float progress = span > 0 ? (float)(step - s->warmup) / (float)span : 1.0f;
    if (progress > 1.0f) progress = 1.0f;
    if (!strcmp(s->schedule, "cosine")) return min_lr + (s->lr - min_lr) * 0.5f * (1.0f + cosf((float)M_PI * progress));
    if (!strcmp(s->schedule, "linear")) return s->lr - (s->lr - min_lr) * progress;
    return s->lr;
}

// Keeps the metrics of steps <= last_step (a resumed run rewrites what follows).
static void truncate_metrics(const char* path, int last_step) {
    size_t len;
    char* text = read_file_maybe(path, &len);
    if (!text) return;
    char* out = xmalloc(len + 1);
    size_t n = 0;
    for (char* line = text; *line;) {
        char* nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line + 1) : strlen(line);
        int step = -1;
        if (sscanf(line, "{\"step\":%d", &step) == 1 && step <= last_step) {
            memcpy(out + n, line, ll);
            n += ll;
        }
        line += ll;
    }
    write_file_atomic(path, out, n);
    free(out);
    free(text);
}

// Shows the model continuing the start of the current batch's first row: prompt, then the sample.
static void print_sample(Model* m, const Tokenizer* tok, const int32_t* row, int seq, int n_new, uint64_t seed) {
    int n_prompt = seq < 24 ? seq : 24;
    int32_t* out = xmalloc(sizeof(int32_t) * (size_t)n_new);
    int n = model_generate(m, row, n_prompt, n_new, 0.8f, seed, (int)tok_eos_id(tok), out);
    uint32_t* ids = xmalloc(sizeof(uint32_t) * (size_t)(n_prompt + n));
    for (int i = 0; i < n_prompt; i++) ids[i] = (uint32_t)row[i];
    for (int i = 0; i < n; i++) ids[n_prompt + i] = (uint32_t)out[i];
    char* prompt = tok_decode(tok, ids, (size_t)n_prompt, 0, NULL);
    char* gen = tok_decode(tok, ids + n_prompt, (size_t)n, 0, NULL);
    const char* on = stdout_is_tty() ? "\033[1m" : "[", *off = stdout_is_tty() ? "\033[0m" : "]";
    printf("sample: %s%s%s%s\n", prompt, on, gen, off);
    free(prompt);
    free(gen);
    free(ids);
    free(out);
}

static void check_settings(const TrainSettings* s, const ModelConfig* c) {
    if (s->steps <= 0) fatal("train: --steps must be positive");
    if (s->batch <= 0) fatal("train: --batch must be positive");
    if (s->seq <= 0) fatal("train: --seq must be positive");
    if (s->grad_accum <= 0) fatal("train: --grad-accum must be positive");
    if (s->warmup < 0) fatal("train: --warmup must not be negative");
    if (!(s->lr >= 0)) fatal("train: --lr must not be negative");
    if (strcmp(s->schedule, "cosine") && strcmp(s->schedule, "linear") && strcmp(s->schedule, "constant"))
        fatal("train: --schedule must be cosine, linear or constant (got \"%s\")", s->schedule);
    if (s->seq > c->max_position_embeddings)
        fatal("train: --seq %d exceeds the model's max_position_embeddings (%d)", s->seq, c->max_position_embeddings);
    if (c->sliding_window > 0 && s->seq > c->sliding_window)
        fatal("train: --seq %d exceeds the model's sliding_window (%d), which qstar does not implement", s->seq,
              c->sliding_window);
}

int cmd_train(int argc, char** argv) {
    TrainSettings s = {.device = "cpu", .schedule = "cosine", .steps = 100, .batch = 4, .seq = 256, .grad_accum = 1,
                       .warmup = 10, .seed = 1337, .save_every = 0, .stop_after = 0, .log_every = 1, .lr = 3e-4f,
                       .min_lr_frac = 0.1f, .weight_decay = 0.1f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                       .grad_clip = 1.0f, .sample_every = 0, .sample_tokens = 48};
    ArgSpec specs[] = {
        {"config", ARG_STR, &s.config, "model config.json for a new, randomly initialized model"},
        {"model", ARG_STR, &s.model, "start from a Hugging Face checkpoint directory (config.json + safetensors)"},
        {"resume", ARG_STR, &s.resume, "continue the run in this directory from its newest checkpoint"},
        {"data", ARG_STR, &s.data, "token shards: a glob such as 'DIR/*.bin' (commas join several)"},
        {"out", ARG_STR, &s.out, "run directory for metrics.jsonl and checkpoints"},
        {"device", ARG_STR, &s.device, "backend: cpu (cuda when built with it)"},
        {"steps", ARG_INT, &s.steps, "optimizer steps in the whole run"},
        {"batch", ARG_INT, &s.batch, "sequences per micro-batch"},
        {"seq", ARG_INT, &s.seq, "tokens per sequence"},
        {"grad-accum", ARG_INT, &s.grad_accum, "micro-batches per optimizer step"},
        {"lr", ARG_FLOAT, &s.lr, "peak learning rate"},
        {"min-lr-frac", ARG_FLOAT, &s.min_lr_frac, "final learning rate as a fraction of --lr"},
        {"schedule", ARG_STR, &s.schedule, "decay after warmup: cosine, linear or constant"},
        {"warmup", ARG_INT, &s.warmup, "linear warmup steps"},
        {"weight-decay", ARG_FLOAT, &s.weight_decay, "AdamW decoupled weight decay (matrices only)"},
        {"beta1", ARG_FLOAT, &s.beta1, "AdamW beta1"},
        {"beta2", ARG_FLOAT, &s.beta2, "AdamW beta2"},
        {"eps", ARG_FLOAT, &s.eps, "AdamW epsilon"},
        {"grad-clip", ARG_FLOAT, &s.grad_clip, "clip the global gradient norm to this (0: off)"},
        {"seed", ARG_INT, &s.seed, "seed of initialization and data order"},
        {"save-every", ARG_INT, &s.save_every, "checkpoint every N steps (0: only at the end)"},
        {"stop-after", ARG_INT, &s.stop_after, "stop (with a checkpoint) after N steps of this invocation"},
        {"log-every", ARG_INT, &s.log_every, "print a log line every N steps"},
        {"tokenizer", ARG_STR, &s.tokenizer, "tokenizer.json of the data: logs then show text"},
        {"sample-every", ARG_INT, &s.sample_every, "with --tokenizer: print a generated sample every N steps (0: off)"},
        {"sample-tokens", ARG_INT, &s.sample_tokens, "tokens per generated sample"},
    };
    const int nspecs = (int)(sizeof specs / sizeof specs[0]);
    args_parse(argc, argv, specs, nspecs,
               "usage: qstar train (--config C | --model DIR | --resume RUN_DIR) --data 'DIR/*.bin' --out RUN_DIR "
               "[options]\n\nTrains a Mistral/Llama-style language model on token shards.");

    // Resolve where the model comes from and, when resuming, the stored settings.
    RunState rs = {0};
    char* ckpt = NULL;
    if (s.resume) {
        if (s.config || s.model) fatal("train: --resume cannot be combined with --config or --model");
        if (!dir_exists(s.resume)) fatal("%s: no such run directory", s.resume);
        ckpt = checkpoint_latest(s.resume);
        if (!ckpt) fatal("%s: no complete checkpoint (step_*/state.json) to resume from", s.resume);
        char* state_path = xsprintf("%s/state.json", ckpt);
        size_t len;
        char* text = read_file_or_die(state_path, &len);
        cJSON* root = cJSON_ParseWithLength(text, len);
        if (!root) fatal("%s: malformed JSON", state_path);
        const cJSON* stored = cJSON_GetObjectItemCaseSensitive(root, "settings");
        if (cJSON_IsObject(stored)) args_from_json(specs, nspecs, stored, state_path);
        cJSON_Delete(root);
        free(text);
        free(state_path);
        s.config = NULL;
        s.model = NULL;
        if (!args_given(specs, nspecs, "out")) s.out = s.resume;
    } else if (!s.config == !s.model) {
        fatal("train: give exactly one of --config, --model or --resume");
    }
    if (!s.data) fatal("train: --data is required");
    if (!s.out) fatal("train: --out is required");

    const Backend* be = backend_get(s.device);
    if (!be) fatal("train: unknown device \"%s\" (this build has: %s)", s.device, backend_names());

    ModelConfig cfg;
    config_load(&cfg, ckpt ? ckpt : (s.config ? s.config : s.model));
    check_settings(&s, &cfg);
    Model model;
    model_create(&model, &cfg, be);
    int start_step = 0;
    DataLoader dl;
    dataloader_init(&dl, s.data, s.batch, s.seq, cfg.vocab_size, (uint64_t)s.seed, 0, 1, 1);
    if (ckpt) {
        checkpoint_load(ckpt, &model, &rs);
        start_step = rs.step;
        dataloader_seek(&dl, rs.data);
    } else if (s.model) {
        model_load_weights(&model, s.model);
    } else {
        model_init_random(&model, (uint64_t)s.seed);
    }
    model_alloc_activations(&model, s.batch, s.seq);
    Tokenizer* tok = NULL;
    if (s.tokenizer) {
        tok = tok_load(s.tokenizer);
        if (tok_vocab_size(tok) > (uint32_t)cfg.vocab_size)
            fatal("%s: tokenizer has %u tokens but the model's vocabulary is %d", s.tokenizer, tok_vocab_size(tok),
                  cfg.vocab_size);
    }

    args_print_table(specs, nspecs);
    printf("model: %zu parameters (%.1f M), %d layers, hidden %d, heads %d/%d, vocab %d%s\n", model.n_params,
           model.n_params / 1e6, cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
           cfg.num_key_value_heads, cfg.vocab_size, cfg.tie_word_embeddings ? ", tied embeddings" : "");
    printf("memory: %.1f MiB parameters+gradients+AdamW, %.1f MiB activations; data: %d shards, %llu windows\n",
           4.0 * sizeof(float) * model.n_params / 1048576.0, model.acts.bytes / 1048576.0, dl.n_shards,
           (unsigned long long)dl.total_windows);
    if (ckpt) printf("resuming from %s at step %d\n", ckpt, start_step);

    mkdir_p(s.out);
    char* metrics_path = xsprintf("%s/metrics.jsonl", s.out);
    if (ckpt) truncate_metrics(metrics_path, start_step);
    else write_file_atomic(metrics_path, "", 0);
    FILE* metrics = fopen(metrics_path, "a");
    if (!metrics) fatal("%s: cannot open for writing", metrics_path);
    cJSON* settings_json = args_to_json(specs, nspecs);
    cJSON_ReplaceItemInObject(settings_json, "resume", cJSON_CreateNull());

    const int N = s.batch * s.seq;
    int32_t* inputs = xmalloc(sizeof(int32_t) * N);
    int32_t* targets = xmalloc(sizeof(int32_t) * N);
    AdamWConfig opt = {s.beta1, s.beta2, s.eps, s.weight_decay};
    int steps_this_run = 0;
    for (int step = start_step + 1; step <= s.steps; step++) {
        double t0 = now_seconds();
        float lr = lr_at(&s, step);
        model_zero_grad(&model);
        double loss = 0.0;
        for (int micro = 0; micro < s.grad_accum; micro++) {
            dataloader_next(&dl, inputs, targets);
            loss += model_forward(&model, inputs, targets, NULL) / s.grad_accum;
            model_backward(&model, 1.0f / s.grad_accum);
        }
        float norm = model_grad_norm(&model);
        if (!isfinite(norm)) fatal("train: gradient norm is %f at step %d (diverged; lower --lr?)", norm, step);
        float scale = (s.grad_clip > 0 && norm > s.grad_clip) ? s.grad_clip / norm : 1.0f;
        model_adamw_step(&model, &opt, lr, scale, step);
        be->sync();
        double ms = (now_seconds() - t0) * 1e3;
        double tok_s = (double)N * s.grad_accum / (ms / 1e3);
        if (step % s.log_every == 0 || step == s.steps)
            printf("step %6d/%d | loss %.6f | lr %.3e | norm %8.4f | %8.1f ms | %9.0f tok/s\n", step, s.steps, loss, lr,
                   norm, ms, tok_s);
        fprintf(metrics, "{\"step\":%d,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"ms\":%.3f,\"tokens_per_s\":%.1f}\n",
                step, loss, lr, norm, ms, tok_s);
        fflush(metrics);
        fflush(stdout);
        steps_this_run++;
        int stopping = s.stop_after > 0 && steps_this_run >= s.stop_after;
        if ((s.save_every > 0 && step % s.save_every == 0) || step == s.steps || stopping) {
            DataPosition pos = dataloader_tell(&dl);
            checkpoint_save(s.out, step, &model, &pos, settings_json);
            printf("saved checkpoint %s/step_%06d\n", s.out, step);
        }
        if (tok && s.sample_every > 0 && (step % s.sample_every == 0 || step == s.steps))
            print_sample(&model, tok, inputs, s.seq, s.sample_tokens, (uint64_t)s.seed + (uint64_t)step);
        if (stopping) break;
    }
    fclose(metrics);
    cJSON_Delete(settings_json);
    free(metrics_path);
    free(inputs);
    free(targets);
    if (tok) tok_free(tok);
    run_state_free(&rs);
    free(ckpt);
    dataloader_free(&dl);
    model_destroy(&model);
    return 0;
}
