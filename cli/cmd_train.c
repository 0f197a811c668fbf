/*
 * `qstar train`: the training driver, for plain language modelling (--mode lm) and Quiet-STaR
 * (--mode quietstar). It resolves settings (command line, or a checkpoint's stored settings when
 * resuming), builds the model and data loader, and runs the loop: gradient accumulation over
 * micro-batches, global-norm clipping, AdamW with warmup then cosine or linear decay, one log line and
 * one metrics.jsonl record per step, periodic atomic checkpoints. Resuming restores weights, moments,
 * step and data position exactly, and thoughts are sampled from Philox keyed by the step, so a
 * resumed run is bitwise identical to an uninterrupted one.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "io/checkpoint.h"
#include "comm/comm.h"
#include "cli/commands.h"
#include "io/dataloader.h"
#include "text/tokenizer.h"
#include "common/util.h"
#include "model/model.h"
#include "model/quietstar.h"
#include "io/weights.h"

typedef struct {
    const char *config, *model, *resume, *data, *out, *device, *precision, *schedule, *tokenizer, *mode, *thought_init, *profile_steps;
    const char* save_dtype;   // model.safetensors: "fp32" or "bf16"
    const char* grad_reduce;  // several ranks: "fp32" or "bf16", the type the gradients are summed in
    int steps, batch, seq, grad_accum, warmup, decay_steps, seed, save_every, stop_after, log_every, sample_every, sample_tokens;
    float lr, min_lr_frac, weight_decay, beta1, beta2, eps, grad_clip;
    // Quiet-STaR
    int n_ahead, n_ahead_talk, n_passes, mask_thoughts_in_talk, thoughts_every, decay_norms, bf16_weights, zero;
    int stochastic_rounding, recompute;
    float policy_weight, base_weight, talk_weight, reinforce_temperature, embed_scale;
} TrainSettings;

static float lr_at(const TrainSettings* s, int step) {
    if (s->warmup > 0 && step <= s->warmup) return s->lr * (float)step / (float)s->warmup;
    float min_lr = s->lr * s->min_lr_frac;
    int span = (s->decay_steps > 0 ? s->decay_steps : s->steps) - s->warmup;
    float progress = span > 0 ? (float)(step - s->warmup) / (float)span : 1.0f;
    if (progress > 1.0f) progress = 1.0f;
    if (!strcmp(s->schedule, "cosine")) return min_lr + (s->lr - min_lr) * 0.5f * (1.0f + cosf((float)M_PI * progress));
    if (!strcmp(s->schedule, "linear")) return s->lr - (s->lr - min_lr) * progress;
    return s->lr;
}

// The first metrics record of a run started with --model names that checkpoint and, when it is a qstar
// checkpoint, the step it was saved at, so plots can draw the run as the continuation of the other
// one (tools/plot_metrics.py). Returns the JSON fields to append ("" when there is nothing to say).
static char* init_fields(const char* model_dir) {
    if (!model_dir) return xstrdup("");
    RunState rs = {0};
    if (dir_exists(model_dir)) run_state_read(model_dir, &rs, 0);  // stays zeroed without a state.json
    const int init_step = rs.step;
    run_state_free(&rs);
    cJSON* name = cJSON_CreateString(model_dir);
    char* quoted = cJSON_PrintUnformatted(name);
    char* out = init_step > 0 ? xsprintf(",\"init_model\":%s,\"init_step\":%d", quoted, init_step)
                              : xsprintf(",\"init_model\":%s", quoted);
    free(quoted);
    cJSON_Delete(name);
    return out;
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

static char* decode(const Tokenizer* tok, const int32_t* ids, int n) {
    uint32_t* u = xmalloc(sizeof(uint32_t) * (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < n; i++) u[i] = (uint32_t)ids[i];
    char* text = tok_decode(tok, u, (size_t)n, 0, NULL);
    free(u);
    return text;
}

// Shows the model continuing the start of the current batch's first row: prompt, then the sample.
static void print_sample(Model* m, const Tokenizer* tok, const int32_t* row, int seq, int n_new, uint64_t seed) {
    int n_prompt = seq < 24 ? seq : 24;
    int32_t* out = xmalloc(sizeof(int32_t) * (size_t)n_new);
    int n = model_generate(m, row, n_prompt, n_new, 0.8f, seed, (int)tok_eos_id(tok), out);
    char* prompt = decode(tok, row, n_prompt);
    char* gen = decode(tok, out, n);
    const char* on = stdout_is_tty() ? "\033[1m" : "[", *off = stdout_is_tty() ? "\033[0m" : "]";
    printf("sample: %s%s%s%s\n", prompt, on, gen, off);
    free(prompt);
    free(gen);
    free(out);
}

// A few of the last step's thoughts in context, from the first pass of the first sequence:
// ...text<|startthought|>thought<|endthought|>next (thoughts dimmed on a terminal).
static void print_thoughts(QuietStar* qs, const Tokenizer* tok, int count) {
    const int L = qs->L, N = qs->N;
    const int32_t* step_tokens = quietstar_step_tokens(qs);  // the step keeps them on the device
    const int tty = stdout_is_tty();
    for (int c = 0; c < count; c++) {
        int i = (int)((long)(c + 1) * (L - 1 - qs->T) / (count + 1));
        int ctx0 = i >= 12 ? i - 11 : 0;
        char* ctx = decode(tok, step_tokens + ctx0, i - ctx0 + 1);
        int32_t th[64];
        int nt = 0;
        for (int k = 2; k <= qs->NA - 2 && nt < 64; k++) th[nt++] = step_tokens[(size_t)k * N + i];
        char* thought = decode(tok, th, nt);
        char* next = decode(tok, step_tokens + i + 1, 1);
        for (char* p = ctx; *p; p++) if (*p == '\n') *p = ' ';
        for (char* p = thought; *p; p++) if (*p == '\n') *p = ' ';
        printf("  thought @%-4d ...%s%s<|startthought|>%s<|endthought|>%s%s\n", i, ctx, tty ? "\033[2m" : "", thought,
               tty ? "\033[0m" : "", next);
        free(ctx);
        free(thought);
        free(next);
    }
}

// How the ranks' gradients are summed. The gradients are floatX; with --grad-reduce bf16 (the default
// for bf16 gradients) they travel as they are, in bf16 (half the bytes; NCCL adds in fp32 and rounds
// each partial sum to bf16). With --grad-reduce fp32 a bf16 gradient is first widened into `stage`, an
// fp32 copy of all n_params, the fp32 sums are reduced, and the result is rounded to bf16 once:
// exact sums (two ranks give the same bits either way, more ranks round once instead of per hop).
typedef struct {
    Model* m;
    Comm* comm;
    CommType grad_type;  // the type of the gradient buffer itself (be->x_bytes)
    float* stage;        // fp32 staging copy (backend memory, n_params), or NULL: reduce in grad_type
} GradReduce;

// Starts the all-reduce of gradients [offset, offset + count).
static void grad_allreduce_async(GradReduce* g, size_t offset, size_t count) {
    if (!count) return;
    if (g->stage) {
        g->m->be->from_floatX(g->stage + offset, xat(g->m->be, g->m->grads, offset), count);
        comm_allreduce_sum_async(g->comm, g->stage + offset, count, COMM_FP32);
    } else {
        comm_allreduce_sum_async(g->comm, xat(g->m->be, g->m->grads, offset), count, g->grad_type);
    }
}
// After comm_wait: the fp32 sums back into the gradients.
static void grad_allreduce_finish(GradReduce* g) {
    if (g->stage) g->m->be->to_floatX(g->m->grads, g->stage, g->m->n_params);
}
// ZeRO-1: this rank's optimizer range [opt_offset, opt_offset + opt_count) of the gradients becomes
// the sum over ranks (the rest is left as it is and not read).
static void grad_reduce_scatter(GradReduce* g) {
    Model* m = g->m;
    if (g->stage) {
        m->be->from_floatX(g->stage, m->grads, m->n_params);
        comm_reduce_scatter_sum(g->comm, g->stage, m->n_params, COMM_FP32);
        m->be->to_floatX(xat(m->be, m->grads, m->opt_offset), g->stage + m->opt_offset, m->opt_count);
    } else {
        comm_reduce_scatter_sum(g->comm, m->grads, m->n_params, g->grad_type);
    }
}

// Data parallelism without ZeRO: each layer's gradients start their all-reduce as soon as the
// backward has finished with them.
static void reduce_layer(void* ctx, size_t offset, size_t count) { grad_allreduce_async(ctx, offset, count); }

static void check_settings(const TrainSettings* s, const ModelConfig* c) {
    if (s->steps <= 0) fatal("train: --steps must be positive");
    if (s->batch <= 0) fatal("train: --batch must be positive");
    if (s->seq <= 0) fatal("train: --seq must be positive");
    if (s->grad_accum <= 0) fatal("train: --grad-accum must be positive");
    if (s->warmup < 0) fatal("train: --warmup must not be negative");
    if (s->decay_steps < 0) fatal("train: --decay-steps must not be negative");
    if (!(s->lr >= 0)) fatal("train: --lr must not be negative");
    if (s->log_every <= 0) fatal("train: --log-every must be positive");
    if (s->recompute < 0 || s->recompute > 2) fatal("train: --recompute must be 0, 1 or 2");
    if (strcmp(s->save_dtype, "fp32") && strcmp(s->save_dtype, "bf16"))
        fatal("train: --save-dtype must be fp32 or bf16 (got \"%s\")", s->save_dtype);
    if (strcmp(s->schedule, "cosine") && strcmp(s->schedule, "linear") && strcmp(s->schedule, "constant"))
        fatal("train: --schedule must be cosine, linear or constant (got \"%s\")", s->schedule);
    if (strcmp(s->mode, "lm") && strcmp(s->mode, "quietstar"))
        fatal("train: --mode must be lm or quietstar (got \"%s\")", s->mode);
    if (s->seq > c->max_position_embeddings)
        fatal("train: --seq %d exceeds the model's max_position_embeddings (%d)", s->seq, c->max_position_embeddings);
    if (c->sliding_window > 0 && s->seq > c->sliding_window)
        fatal("train: --seq %d exceeds the model's sliding_window (%d), which qstar does not implement", s->seq,
              c->sliding_window);
}

// The moments of this rank's optimizer range between host fp32 arrays and the model's storage (fp32, or
// floatX in the reference's bf16 mode: bf16 values there, so the conversion is exact both ways).
static void moments_upload(const Model* m, void* dst, const float* host) {
    if (m->moment_bytes == sizeof(float)) m->be->upload(dst, host, sizeof(float) * m->opt_count);
    else x_upload(m->be, dst, host, m->opt_count);
}
static void moments_download(const Model* m, float* host, const void* src) {
    if (m->moment_bytes == sizeof(float)) m->be->download(host, src, sizeof(float) * m->opt_count);
    else x_download(m->be, host, src, m->opt_count);
}

// Quiet-STaR on a model without thought tokens: add <|startthought|> and <|endthought|> to the
// tokenizer and the vocabulary (new embedding and lm_head rows drawn like fresh weights), add the
// mixing head (last layer zero: the mixed prediction starts equal to the base model's) and start the
// two thought embeddings at the embedding of the first token of thought_init ("---").
static void add_thought_tokens(Model* model, Tokenizer* tok, const char* tok_path, const char* thought_init,
                               float embed_scale, uint64_t seed, int verbose) {
    ModelConfig cfg = model->cfg;
    cfg.start_thought_id = (int)tok_add_special_token(tok, "<|startthought|>");
    cfg.end_thought_id = (int)tok_add_special_token(tok, "<|endthought|>");
    int needed = (int)tok_vocab_size(tok);
    if (needed > cfg.vocab_size) cfg.vocab_size = needed;
    TokIds init = {0};
    tok_encode(tok, thought_init, strlen(thought_init), 0, &init);
    if (init.n == 0) fatal("%s: \"%s\" encodes to no token (--thought-init)", tok_path, thought_init);
    // The base model's weights move to the host and its device state (weights, gradients, master, moments)
    // is freed before the grown model is made: never both models' state on the device at once.
    float* base_w = xmalloc(sizeof(float) * model->n_params);
    model_get_weights(model, base_w);
    Model base;
    model_build_table(&base, &model->cfg);
    const Backend* be = model->be;
    const int recompute = model->recompute;
    const int base_rank = model->shard_rank, base_world = model->shard_world;
    const int base_bf16 = model->bf16_state;  // the reference's bf16 mode carries over to the grown model
    const int old_vocab = model->cfg.vocab_size;
    model_destroy(model);
    Model grown;
    model_create_shard(&grown, &cfg, be, base_rank, base_world, base_bf16);  // the grown model's shard of the same rank
    model_init_random(&grown, seed ^ 0x7175696574ull);
    model_copy_matching(&grown, &base, base_w);
    free(base_w);
    model_destroy(&base);  // a table only (no backend): frees the table
    quietstar_init_thought_embeddings(&grown, (int)init.ids[0], embed_scale);
    if (verbose)
        printf("quietstar: added <|startthought|> = %d and <|endthought|> = %d (vocabulary %d -> %d); thought "
           "embeddings start at token %u of \"%s\"\n",
           cfg.start_thought_id, cfg.end_thought_id, old_vocab, cfg.vocab_size, init.ids[0], thought_init);
    free(init.ids);
    grown.recompute = recompute;
    *model = grown;
}

// The Quiet-STaR reference trains with these HF Trainer settings (docs/quietstar.md §11): AdamW
// lr 1e-6, betas (0.9, 0.999), eps 1e-8, weight decay 0.001, 20 warmup steps, then linear decay to 0
// over 100k steps (flat in practice), clip 1.0, and 8 sequences per optimizer step (4 per micro-batch,
// 2 accumulated). A fresh --mode quietstar run takes them wherever the command line is silent; a
// resumed run keeps the settings it stored. The lm defaults are those of a small pretraining run.
static void apply_quietstar_defaults(const ArgSpec* specs, int n, TrainSettings* s, int world) {
#define QS_DEFAULT(option, field, value) \
    if (!args_given(specs, n, option)) s->field = value
    QS_DEFAULT("lr", lr, 1e-6f);
    QS_DEFAULT("beta1", beta1, 0.9f);
    QS_DEFAULT("beta2", beta2, 0.999f);
    QS_DEFAULT("eps", eps, 1e-8f);
    QS_DEFAULT("weight-decay", weight_decay, 0.001f);
    QS_DEFAULT("warmup", warmup, 20);
    QS_DEFAULT("schedule", schedule, "linear");
    QS_DEFAULT("decay-steps", decay_steps, 100000);
    QS_DEFAULT("min-lr-frac", min_lr_frac, 0.0f);
    QS_DEFAULT("grad-clip", grad_clip, 1.0f);
#undef QS_DEFAULT
    // The shape is the user's once --batch or --grad-accum is given (the announcement says how far
    // it is from the reference's 8 sequences); otherwise 4 per micro-batch, accumulated up to 8
    // across ranks and micro-batches.
    if (!args_given(specs, n, "batch") && !args_given(specs, n, "grad-accum")) {
        s->batch = 4;
        s->grad_accum = 8 / (4 * world) > 1 ? 8 / (4 * world) : 1;
    }
}

int cmd_train(int argc, char** argv) {
    QuietStarConfig ref = quietstar_reference_config();
    TrainSettings s = {.device = "cpu", .schedule = "cosine", .save_dtype = "fp32", .mode = "lm", .thought_init = "---", .steps = 100,
                       .batch = 4, .seq = 256, .grad_accum = 1, .warmup = 10, .seed = 1337, .log_every = 1,
                       .sample_tokens = 48, .lr = 3e-4f, .min_lr_frac = 0.1f, .weight_decay = 0.1f, .beta1 = 0.9f,
                       .beta2 = 0.95f, .eps = 1e-8f, .grad_clip = 1.0f, .n_ahead = ref.n_ahead,
                       .n_ahead_talk = ref.n_ahead_talk, .n_passes = ref.n_passes, .thoughts_every = 50, .decay_norms = -1,
                       .policy_weight = ref.policy_weight, .base_weight = ref.base_weight, .talk_weight = ref.talk_weight,
                       .reinforce_temperature = ref.reinforce_temperature, .embed_scale = ref.embed_scale};
    ArgSpec specs[] = {
        {"mode", ARG_STR, &s.mode, "lm (next-token training) or quietstar"},
        {"config", ARG_STR, &s.config, "model config.json for a new, randomly initialized model"},
        {"model", ARG_STR, &s.model, "start from a Hugging Face checkpoint directory (config.json + safetensors)"},
        {"resume", ARG_STR, &s.resume, "continue the run in this directory from its newest checkpoint"},
        {"data", ARG_STR, &s.data, "token shards: a glob such as 'DIR/*.bin' (commas join several)"},
        {"out", ARG_STR, &s.out, "run directory for metrics.jsonl and checkpoints"},
        {"device", ARG_STR, &s.device, "backend: cpu (cuda when built with it)"},
        {"precision", ARG_STR, &s.precision, "fp32 or bf16 activations, weight copy and gradients (default: bf16 on cuda)"},
        {"recompute", ARG_INT, &s.recompute,
         "activation memory: 0 keeps every activation; 1 recomputes each layer's MLP activations in the backward; 2 "
         "also keeps only each Quiet-STaR step's input and K/V, rerunning its forward before its backward"},
        {"stochastic-rounding", ARG_INT, &s.stochastic_rounding,
         "bf16 or --bf16-weights: 1 rounds the weights' bf16 copy stochastically after each AdamW step (0: to nearest)"},
        {"steps", ARG_INT, &s.steps, "optimizer steps in the whole run"},
        {"batch", ARG_INT, &s.batch, "sequences per micro-batch"},
        {"seq", ARG_INT, &s.seq, "tokens per sequence"},
        {"grad-accum", ARG_INT, &s.grad_accum, "micro-batches per optimizer step (quietstar: 2 with batch 4)"},
        {"lr", ARG_FLOAT, &s.lr, "peak learning rate (quietstar: 1e-6)"},
        {"min-lr-frac", ARG_FLOAT, &s.min_lr_frac, "final learning rate as a fraction of --lr (quietstar: 0)"},
        {"schedule", ARG_STR, &s.schedule, "decay after warmup: cosine, linear or constant (quietstar: linear)"},
        {"warmup", ARG_UINT, &s.warmup, "linear warmup steps (quietstar: 20)"},
        {"decay-steps", ARG_INT, &s.decay_steps, "step at which the decay ends (0: --steps; quietstar: 100000)"},
        {"weight-decay", ARG_FLOAT, &s.weight_decay, "AdamW decoupled weight decay (quietstar: 0.001)"},
        {"beta1", ARG_FLOAT, &s.beta1, "AdamW beta1"},
        {"beta2", ARG_FLOAT, &s.beta2, "AdamW beta2 (quietstar: 0.999)"},
        {"eps", ARG_FLOAT, &s.eps, "AdamW epsilon"},
        {"grad-clip", ARG_UFLOAT, &s.grad_clip, "clip the global gradient norm to this (0: off)"},
        {"decay-norms", ARG_INT, &s.decay_norms,
         "1: weight decay on RMSNorm weights too (reference Trainer); 0: matrices only; -1: 1 for quietstar, 0 for lm"},
        {"bf16-weights", ARG_FLAG, &s.bf16_weights,
         "the reference's precision: weights and AdamW moments in bf16 (bf16 values in fp32 storage on an fp32 "
         "device), no fp32 master"},
        {"seed", ARG_INT, &s.seed, "seed of initialization, data order and thought sampling"},
        {"zero", ARG_INT, &s.zero,
         "with several ranks: 1 shards the AdamW moments (and bf16's fp32 master weights) across ranks (ZeRO-1)"},
        {"grad-reduce", ARG_STR, &s.grad_reduce,
         "with several ranks: fp32 or bf16, the type gradients are summed in (default: the gradients' precision; "
         "fp32 sums bf16 gradients exactly, through an fp32 copy of them)"},
        {"save-every", ARG_INT, &s.save_every, "checkpoint every N steps (0: only at the end)"},
        {"save-dtype", ARG_STR, &s.save_dtype,
         "fp32 or bf16: model.safetensors' dtype (bf16 rounds to nearest; the optimizer file keeps what resuming needs)"},
        {"stop-after", ARG_INT, &s.stop_after, "stop (with a checkpoint) after N steps of this invocation"},
        {"log-every", ARG_INT, &s.log_every, "print a log line every N steps"},
        {"profile-steps", ARG_STR, &s.profile_steps,
         "A:B: open the profiler's capture window (cudaProfilerStart/Stop) around steps A..B, for ncu/nsys"},
        {"tokenizer", ARG_STR, &s.tokenizer,
         "tokenizer.json of the data: logs then show text (quietstar --model DIR: DIR/tokenizer.json when present)"},
        {"sample-every", ARG_INT, &s.sample_every, "with --tokenizer: print a generated sample every N steps (0: off)"},
        {"sample-tokens", ARG_INT, &s.sample_tokens, "tokens per generated sample"},
        {"n-ahead", ARG_INT, &s.n_ahead, "quietstar: thought length incl. start and end tokens"},
        {"n-ahead-talk", ARG_INT, &s.n_ahead_talk, "quietstar: true tokens predicted after each thought"},
        {"n-passes", ARG_INT, &s.n_passes, "quietstar: thoughts sampled per sequence (REINFORCE baseline)"},
        {"policy-weight", ARG_FLOAT, &s.policy_weight, "quietstar: weight of the REINFORCE loss"},
        {"base-loss-weight", ARG_FLOAT, &s.base_weight, "quietstar: weight of the base NLL"},
        {"talk-loss-weight", ARG_FLOAT, &s.talk_weight, "quietstar: weight of the mean talk NLL"},
        {"reinforce-temperature", ARG_FLOAT, &s.reinforce_temperature, "quietstar: temperature of log pi"},
        {"thought-embed-scale", ARG_FLOAT, &s.embed_scale,
         "quietstar: start/end embeddings stored /scale, used x scale (x100 effective learning rate)"},
        {"thought-init", ARG_STR, &s.thought_init, "quietstar: start/end embeddings start at this text's first token"},
        {"mask-thoughts-in-talk", ARG_FLAG, &s.mask_thoughts_in_talk,
         "quietstar: hide the thought tokens from the talk logits (qstar option; the reference does not)"},
        {"thoughts-every", ARG_INT, &s.thoughts_every, "quietstar, with --tokenizer: show thoughts every N steps"},
    };
    const int nspecs = (int)(sizeof specs / sizeof specs[0]);
    args_parse(argc, argv, specs, nspecs,
               "usage: qstar train (--config C | --model DIR | --resume RUN_DIR) --data 'DIR/*.bin' --out RUN_DIR "
               "[options]\n\nTrains a Mistral/Llama-style language model on token shards, with Quiet-STaR thoughts "
               "in --mode quietstar.");

    Comm comm;
    comm_init(&comm, NULL, NULL);
    const int main_rank = comm.rank == 0;

    // Resolve where the model comes from and, when resuming, the stored settings.
    RunState rs = {0};
    char* ckpt = NULL;
    char* tok_path_made = NULL;  // a tokenizer path made here (freed at the end)
    if (s.resume) {
        if (s.config || s.model) fatal("train: --resume cannot be combined with --config or --model");
        if (!dir_exists(s.resume)) fatal("%s: no such run directory", s.resume);
        ckpt = checkpoint_latest(s.resume);
        if (!ckpt) fatal("%s: no complete checkpoint (step_*/state.json) to resume from", s.resume);
        run_state_read(ckpt, &rs, 1);
        if (rs.settings) {
            char* state_path = xsprintf("%s/state.json", ckpt);
            args_from_json(specs, nspecs, rs.settings, state_path);
            free(state_path);
        }
        s.config = NULL;
        s.model = NULL;
        if (!args_given(specs, nspecs, "out")) s.out = s.resume;
        char* saved_tok = xsprintf("%s/tokenizer.json", ckpt);
        if (file_exists(saved_tok)) s.tokenizer = tok_path_made = saved_tok;  // the tokenizer the run grew (thought tokens)
        else free(saved_tok);
    } else if (!s.config == !s.model) {
        fatal("train: give exactly one of --config, --model or --resume");
    }
    if (!s.data) fatal("train: --data is required");
    if (!s.out) fatal("train: --out is required");
    const int quietstar = !strcmp(s.mode, "quietstar");
    if (quietstar && !s.resume) apply_quietstar_defaults(specs, nspecs, &s, comm.world);
    if (s.decay_norms < 0) s.decay_norms = quietstar;  // resolved here so that the table shows it
    if (quietstar && !s.tokenizer && s.model && dir_exists(s.model)) {
        // a checkpoint's own tokenizer, as `qstar sample` uses it
        char* own = xsprintf("%s/tokenizer.json", s.model);
        if (file_exists(own)) s.tokenizer = tok_path_made = own;
        else free(own);
    }

    const Backend* be = backend_select(s.device, s.precision);
    // The gradients are summed in their own precision unless --grad-reduce says otherwise; a value that
    // came from a resumed run's settings and no longer fits (its precision was changed) is re-resolved.
    if (s.grad_reduce && !args_given(specs, nspecs, "grad-reduce") && be->x_bytes == sizeof(float) &&
        !strcmp(s.grad_reduce, "bf16"))
        s.grad_reduce = NULL;
    if (!s.grad_reduce || !*s.grad_reduce) s.grad_reduce = be->precision;
    if (strcmp(s.grad_reduce, "fp32") && strcmp(s.grad_reduce, "bf16"))
        fatal("train: --grad-reduce must be fp32 or bf16 (got \"%s\")", s.grad_reduce);
    if (!strcmp(s.grad_reduce, "bf16") && be->x_bytes == sizeof(float))
        fatal("train: --grad-reduce bf16 needs bf16 gradients (--precision bf16); fp32 gradients are reduced in fp32");
    comm_use_device(&comm, be->name);

    ModelConfig cfg;
    config_load(&cfg, ckpt ? ckpt : (s.config ? s.config : s.model));
    check_settings(&s, &cfg);
    Tokenizer* tok = s.tokenizer ? tok_load(s.tokenizer) : NULL;
    Model model;
    // ZeRO-1: this rank's shard of the optimizer state only, from the start (never the whole of it)
    const int zero = s.zero && comm.world > 1;
    model_create_shard(&model, &cfg, be, zero ? comm.rank : 0, zero ? comm.world : 1, s.bf16_weights);
    model.recompute = s.recompute;
    int start_step = 0;
    if (ckpt) {
        float *adam_m, *adam_v;
        checkpoint_load(ckpt, &model, &adam_m, &adam_v);
        start_step = rs.step;
        // every rank reads the whole checkpoint and keeps the moments of its own range: the number of
        // ranks may differ from the run that wrote it
        moments_upload(&model, model.m, adam_m + model.opt_offset);
        moments_upload(&model, model.v, adam_v + model.opt_offset);
        free(adam_m);
        free(adam_v);
    } else {
        if (s.model) model_load_weights(&model, s.model);
        else model_init_random(&model, (uint64_t)s.seed);
        if (quietstar && cfg.start_thought_id < 0) {
            if (!tok) fatal("train: --mode quietstar on a model without thought tokens needs --tokenizer");
            add_thought_tokens(&model, tok, s.tokenizer, s.thought_init, s.embed_scale, (uint64_t)s.seed, main_rank);
            cfg = model.cfg;
        }
    }
    if (tok && tok_vocab_size(tok) > (uint32_t)cfg.vocab_size)
        fatal("%s: tokenizer has %u tokens but the model's vocabulary is %d", s.tokenizer, tok_vocab_size(tok),
              cfg.vocab_size);
    DataLoader dl;
    dataloader_init(&dl, s.data, s.batch, s.seq, cfg.vocab_size, (uint64_t)s.seed, comm.rank, comm.world, 1);
    if (ckpt) dataloader_seek(&dl, rs.data);

    QuietStar qs;
    QuietStarConfig qc = {.n_ahead = s.n_ahead, .n_ahead_talk = s.n_ahead_talk, .n_passes = s.n_passes,
                          .policy_weight = s.policy_weight, .base_weight = s.base_weight, .talk_weight = s.talk_weight,
                          .reinforce_temperature = s.reinforce_temperature, .embed_scale = s.embed_scale,
                          .mask_thoughts_in_talk = s.mask_thoughts_in_talk, .seed = (uint64_t)s.seed};
    size_t act_bytes;
    if (quietstar) {
        quietstar_create(&qs, &model, &qc, s.batch, s.seq);
        act_bytes = quietstar_activation_bytes(&cfg, &qc, be->x_bytes, s.recompute, s.batch, s.seq);
    } else {
        model_alloc_activations(&model, s.batch, s.seq);
        act_bytes = model.acts.bytes;
    }
    GradReduce grad_reduce = {&model, &comm, be->x_bytes == sizeof(float) ? COMM_FP32 : COMM_BF16, NULL};
    if (comm.world > 1 && be->x_bytes != sizeof(float) && !strcmp(s.grad_reduce, "fp32"))
        grad_reduce.stage = be->alloc(sizeof(float) * model.n_params);

    if (main_rank) {
    args_print_table(specs, nspecs);
    printf("model: %zu parameters (%.1f M), %d layers, hidden %d, heads %d/%d, vocab %d%s%s\n", model_count_params(&model),
           model_count_params(&model) / 1e6, cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
           cfg.num_key_value_heads, cfg.vocab_size, cfg.tie_word_embeddings ? ", tied embeddings" : "",
           cfg.start_thought_id >= 0 ? ", thought tokens + mixing head" : "");
    printf("memory: %.1f MiB parameters+gradients+AdamW (%s)%s, %.1f MiB activations; data: %d shards, %llu windows\n",
           (2.0 * be->x_bytes * model.n_params + (4.0 * !!model.master + 2.0 * model.moment_bytes) * model.opt_count +
            (grad_reduce.stage ? 4.0 * model.n_params : 0)) / 1048576.0,
           be->precision, grad_reduce.stage ? " with the fp32 gradient copy" : "", act_bytes / 1048576.0, dl.n_shards,
           (unsigned long long)dl.total_windows);
    if (comm.world > 1)
        printf("data parallel: %d ranks x batch %d (%s), gradients reduced in %s%s%s\n", comm.world, s.batch,
               comm_transport(&comm), s.grad_reduce, grad_reduce.stage ? " (through an fp32 copy of the bf16 gradients)" : "",
               !s.zero ? ""
               : model.master           ? ", ZeRO-1 (fp32 master weights and AdamW moments sharded, bf16 weights all-gathered)"
               : be->x_bytes != sizeof(float) ? ", ZeRO-1 (AdamW moments sharded, bf16 weights all-gathered)"
                                        : ", ZeRO-1 (AdamW moments sharded)");
    if (ckpt) printf("resuming from %s at step %d\n", ckpt, start_step);
    if (quietstar && !ckpt)
        printf("quietstar: options not given follow the reference's Trainer (lr 1e-6, betas 0.9/0.999, eps 1e-8, "
               "weight decay 0.001, warmup 20, linear decay to 0 at step 100000, clip 1.0)\n");
    if (quietstar) {
        const int seqs = s.batch * s.grad_accum * comm.world;
        printf("quietstar: %d sequences per optimizer step (batch %d x grad-accum %d x %d rank%s)%s\n", seqs, s.batch,
               s.grad_accum, comm.world, comm.world > 1 ? "s" : "",
               seqs == 8 ? ", as the reference" : "; the reference uses 8 (4 per micro-batch x 2 accumulated)");
    }
    }

    char* metrics_path = xsprintf("%s/metrics.jsonl", s.out);
    FILE* metrics = NULL;
    if (main_rank) {
        mkdir_p(s.out);
        if (ckpt) truncate_metrics(metrics_path, start_step);
        else write_file_atomic(metrics_path, "", 0);
        metrics = fopen(metrics_path, "a");
        if (!metrics) fatal("%s: cannot open for writing", metrics_path);
    }
    // host copies of the moments of every parameter, for checkpoints
    float* host_m = xmalloc(sizeof(float) * model.n_params);
    float* host_v = xmalloc(sizeof(float) * model.n_params);
    float* host_w = model.master && model.opt_count < model.n_params ? xmalloc(sizeof(float) * model.n_params) : NULL;
    // stochastic rounding leaves a bf16 working copy that the master does not determine: checkpoints keep it
    float* host_working = model.master && s.stochastic_rounding && main_rank ? xmalloc(sizeof(float) * model.n_params) : NULL;
    cJSON* settings_json = args_to_json(specs, nspecs);
    char* init_json = init_fields(ckpt ? NULL : s.model);
    cJSON_ReplaceItemInObject(settings_json, "resume", cJSON_CreateNull());

    int prof_a = 0, prof_b = -1;
    if (s.profile_steps && (sscanf(s.profile_steps, "%d:%d", &prof_a, &prof_b) != 2 || prof_a < 1 || prof_b < prof_a))
        fatal("train: --profile-steps expects A:B with 1 <= A <= B (got \"%s\")", s.profile_steps);
    // MFU: the FLOPs a step must do over the device's peak. A Quiet-STaR step runs S forwards and
    // backwards of R = B·P rows; the thought attention's extra own-slot keys and the mixing head are
    // not counted.
    const double peak = be->peak_flops();
    const double step_flops = (quietstar ? (double)(s.n_ahead + s.n_ahead_talk - 1) *
                                               model_step_flops(&model, s.batch * s.n_passes, s.seq)
                                         : model_step_flops(&model, s.batch, s.seq)) *
                              s.grad_accum * comm.world;
    const int N = s.batch * s.seq;
    int32_t* inputs = xmalloc(sizeof(int32_t) * N);
    int32_t* targets = xmalloc(sizeof(int32_t) * N);
    AdamWConfig opt = {s.beta1, s.beta2, s.eps, s.weight_decay, s.decay_norms, s.bf16_weights,
                       s.stochastic_rounding ? (uint64_t)s.seed * 0x9E3779B97F4A7C15ull + 1 : 0};
    if (main_rank && peak > 0) printf("MFU against %.0f TFLOP/s (TF32) per device\n", peak / 1e12);
    int steps_this_run = 0;
    for (int step = start_step + 1; step <= s.steps; step++) {
        if (step == prof_a) be->profiler(1);
        char range[32];
        snprintf(range, sizeof range, "step %d", step);
        be->range_push(range);
        double t0 = now_seconds();
        float lr = lr_at(&s, step);
        model_zero_grad(&model);
        double loss = 0.0;
        QuietStarStats qst;
        memset(&qst, 0, sizeof qst);
        fault_set_context(comm.rank, step);
        // gradients of the mean over every micro-batch of every rank: each backward is scaled by
        // 1/(grad_accum·world) and the ranks' gradients are summed
        const float loss_scale = 1.0f / (float)(s.grad_accum * comm.world);
        const int overlap = comm.world > 1 && !s.zero;
        for (int micro = 0; micro < s.grad_accum; micro++) {
            dataloader_next(&dl, inputs, targets);
            // on the last micro-batch the layers' gradients are final as the backward leaves them
            model.grad_ready = overlap && micro == s.grad_accum - 1 ? reduce_layer : NULL;
            model.grad_ready_ctx = &grad_reduce;
            if (quietstar) {
                uint32_t sample_step = (uint32_t)(((step - 1) * s.grad_accum + micro) * comm.world + comm.rank);
                loss += quietstar_forward(&qs, inputs, sample_step) / s.grad_accum;
                quietstar_backward(&qs, loss_scale);
                const double* src = &qs.stats.loss;
                double* dst = &qst.loss;  // every field is a double: average them over micro-batches
                for (size_t f = 0; f < sizeof qst / sizeof(double); f++) dst[f] += src[f] / s.grad_accum;
            } else {
                loss += model_forward(&model, inputs, targets, NULL) / s.grad_accum;
                model_backward(&model, loss_scale);
            }
        }
        fault_point("step");
        double ss;
        if (s.zero && comm.world > 1) {
            grad_reduce_scatter(&grad_reduce);
            ss = comm_allreduce_sum_scalar(&comm, model_grad_sum_squares(&model, model.opt_offset, model.opt_count));
        } else if (overlap) {  // the layers are on their way; add what lies outside them, then wait
            size_t first, last_off, last_n, tmp;
            model_layer_range(&model, 0, &first, &tmp);
            model_layer_range(&model, cfg.num_hidden_layers - 1, &last_off, &last_n);
            grad_allreduce_async(&grad_reduce, 0, first);
            grad_allreduce_async(&grad_reduce, last_off + last_n, model.n_params - last_off - last_n);
            comm_wait(&comm);
            grad_allreduce_finish(&grad_reduce);
            ss = model_grad_sum_squares(&model, 0, model.n_params);
        } else {
            ss = model_grad_sum_squares(&model, 0, model.n_params);
        }
        model.grad_ready = NULL;
        float norm = sqrtf((float)ss);
        if (!isfinite(norm)) fatal("train: gradient norm is %f at step %d (diverged; lower --lr?)", norm, step);
        float scale = (s.grad_clip > 0 && norm > s.grad_clip) ? s.grad_clip / norm : 1.0f;
        model_adamw_step(&model, &opt, lr, scale, step);
        // ZeRO-1: each rank updated its shard of the weights (in bf16: of the fp32 master, and the bf16 copy from
        // it); the forward needs all of the working copy, gathered in its own precision
        if (s.zero && comm.world > 1) comm_allgather(&comm, model.params, model.n_params, grad_reduce.grad_type);
        be->sync();
        if (comm.world > 1) {
            loss = comm_allreduce_sum_scalar(&comm, loss) / comm.world;
            double* f = &qst.loss;
            for (size_t i = 0; quietstar && i < sizeof qst / sizeof(double); i++)
                f[i] = comm_allreduce_sum_scalar(&comm, f[i]) / comm.world;
        }
        be->range_pop();
        if (step == prof_b) be->profiler(0);
        double ms = (now_seconds() - t0) * 1e3;
        double tok_s = (double)N * s.grad_accum * comm.world / (ms / 1e3);
        double mfu = peak > 0 ? step_flops / (ms / 1e3) / (peak * comm.world) : 0;
        double talk = 0;
        for (int t = 0; t < s.n_ahead_talk && quietstar; t++) talk += qst.talk_nll[t] / s.n_ahead_talk;
        if (main_rank && (step % s.log_every == 0 || step == s.steps)) {
            printf("step %6d/%d | loss %.6f | lr %.3e | norm %8.4f | %8.1f ms | %9.0f tok/s", step, s.steps, loss, lr,
                   norm, ms, tok_s);
            if (peak > 0) printf(" | MFU %4.1f%%", 100 * mfu);
            if (quietstar)
                printf(" | base %.4f | talk %.4f | reward %+.4f | adv %.4f | pos %4.1f%% | w %+.4f | policy %.4g",
                       qst.base_nll, talk, qst.mean_reward, qst.mean_advantage, 100 * qst.frac_positive,
                       qst.mean_mix_weight, qst.policy_loss);
            printf("\n");
        }
        if (metrics) {
        fprintf(metrics, "{\"step\":%d,\"loss\":%.9g,\"lr\":%.9g,\"grad_norm\":%.9g,\"ms\":%.3f,\"tokens_per_s\":%.1f",
                step, loss, lr, norm, ms, tok_s);
        if (step == 1) fputs(init_json, metrics);
        if (quietstar) {
            fprintf(metrics, ",\"base_nll\":%.9g,\"talk_nll\":[", qst.base_nll);
            for (int t = 0; t < s.n_ahead_talk; t++) fprintf(metrics, "%s%.9g", t ? "," : "", qst.talk_nll[t]);
            fprintf(metrics,
                    "],\"talk_nll_mean\":%.9g,\"mean_reward\":%.9g,\"mean_advantage\":%.9g,\"frac_positive_advantage\":"
                    "%.9g,\"mean_mix_weight\":%.9g,\"policy_loss\":%.9g",
                    talk, qst.mean_reward, qst.mean_advantage, qst.frac_positive, qst.mean_mix_weight, qst.policy_loss);
        }
        fprintf(metrics, "}\n");
        fflush(metrics);
        }
        if (main_rank && quietstar && tok && s.thoughts_every > 0 && (step % s.thoughts_every == 0 || step == s.steps))
            print_thoughts(&qs, tok, 3);
        if (main_rank && !quietstar && tok && s.sample_every > 0 && (step % s.sample_every == 0 || step == s.steps))
            print_sample(&model, tok, inputs, s.seq, s.sample_tokens, (uint64_t)s.seed + (uint64_t)step);
        fflush(stdout);
        steps_this_run++;
        int stopping = s.stop_after > 0 && steps_this_run >= s.stop_after;
        if ((s.save_every > 0 && step % s.save_every == 0) || step == s.steps || stopping) {
            // gather every rank's moments into full host arrays (each rank holds its range, zero elsewhere)
            memset(host_m, 0, sizeof(float) * model.n_params);
            memset(host_v, 0, sizeof(float) * model.n_params);
            moments_download(&model, host_m + model.opt_offset, model.m);
            moments_download(&model, host_v + model.opt_offset, model.v);
            if (s.zero && comm.world > 1) {
                comm_allgather(&comm, host_m, model.n_params, COMM_FP32);
                comm_allgather(&comm, host_v, model.n_params, COMM_FP32);
            }
            // model.safetensors holds the fp32 master weights; under ZeRO-1 in bf16 each rank has its shard
            // of them (model_get_weights lays it over the bf16 copy): gather the shards like the moments
            if (host_w) {
                model_get_weights(&model, host_w);
                comm_allgather(&comm, host_w, model.n_params, COMM_FP32);
            }
            // every rank holds the whole working copy (ZeRO-1 all-gathers it after each step)
            if (host_working) x_download(be, host_working, model.params, model.n_params);
            if (main_rank) {
                DataPosition pos = dataloader_tell(&dl);
                const CheckpointTensors ct = {host_w, host_working, host_m, host_v, !strcmp(s.save_dtype, "bf16")};
                checkpoint_save(s.out, step, &model, &ct, &pos, settings_json, tok);
                printf("saved checkpoint %s/step_%06d\n", s.out, step);
            }
            comm_barrier(&comm);
        }
        if (stopping) break;
    }
    if (metrics) fclose(metrics);
    free(host_m);
    free(host_v);
    free(host_w);
    free(host_working);
    if (grad_reduce.stage) be->free(grad_reduce.stage);
    cJSON_Delete(settings_json);
    free(init_json);
    free(metrics_path);
    free(inputs);
    free(targets);
    if (quietstar) quietstar_destroy(&qs);
    if (tok) tok_free(tok);
    run_state_free(&rs);  // after the last use of the settings' strings, which point into it
    free(ckpt);
    free(tok_path_made);
    dataloader_free(&dl);
    model_destroy(&model);
    comm_finalize(&comm);
    return 0;
}
