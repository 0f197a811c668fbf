/*
 * `qstar eval`: mean next-token loss of a checkpoint on held-out shards, reading windows in order
 * without shuffling so two evaluations of the same data are comparable. With --answer-mask (shards
 * of 0/1 aligned token for token with --data, as data/corpus/answer_mask.py writes them) the loss on
 * answer tokens is reported too. A Quiet-STaR checkpoint is scored both without thoughts (its base
 * prediction) and with a thought before every token (the mixed prediction after the end token, as
 * the reference evaluates: one pass, one talk token), over the same tokens. --token-report OUT.html
 * also keeps every scored token's two NLLs and the thought sampled before it, and writes the page of
 * eval/token_report.h (where thinking helps, token by token).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "io/checkpoint.h"
#include "cli/commands.h"
#include "io/dataloader.h"
#include "eval/token_report.h"
#include "text/tokenizer.h"
#include "common/util.h"
#include "model/model.h"
#include "model/quietstar.h"
#include "io/weights.h"

typedef struct {
    double sum[2], count[2];  // [all tokens, answer tokens]
} LossAcc;

static void accumulate(LossAcc* a, const float* losses, const int32_t* valid_targets, const int32_t* mask, int N) {
    for (int n = 0; n < N; n++) {
        if (valid_targets[n] < 0) continue;
        a->sum[0] += losses[n];
        a->count[0] += 1;
        if (mask && mask[n]) {
            a->sum[1] += losses[n];
            a->count[1] += 1;
        }
    }
}

static double mean(const LossAcc* a, int which) { return a->count[which] > 0 ? a->sum[which] / a->count[which] : NAN; }

#include "eval/task_accuracy.h"  // qstar eval --task gsm8k|csqa: benchmark accuracy

int cmd_eval(int argc, char** argv) {
    if (eval_task_requested(argc, argv)) return cmd_eval_task(argc, argv);
    const char *ckpt = NULL, *data = NULL, *mask_path = NULL, *device = "cpu", *json_out = NULL, *report_path = NULL,
               *tok_path = NULL;
    const char* precision = NULL;
    int batch = 4, seq = 256, max_batches = 0, n_ahead = 0, seed = 7, no_thoughts = 0, report_tokens = 2048;
    ArgSpec specs[] = {
        {"ckpt", ARG_STR, &ckpt, "checkpoint directory (config.json + model.safetensors)"},
        {"data", ARG_STR, &data, "token shards to evaluate on (glob)"},
        {"answer-mask", ARG_STR, &mask_path, "0/1 shards aligned with --data: also report the answer tokens' loss"},
        {"batch", ARG_INT, &batch, "sequences per forward"},
        {"seq", ARG_INT, &seq, "tokens per sequence"},
        {"max-batches", ARG_INT, &max_batches, "stop after N batches (0: all windows)"},
        {"n-ahead", ARG_UINT, &n_ahead, "Quiet-STaR thought length (default: the run's, else 12)"},
        {"no-thoughts", ARG_FLAG, &no_thoughts, "score a Quiet-STaR checkpoint without thinking only"},
        {"seed", ARG_INT, &seed, "thought sampling seed"},
        {"json", ARG_STR, &json_out, "also write the results to this JSON file"},
        {"device", ARG_STR, &device, "backend"},
        {"precision", ARG_STR, &precision, "fp32 or bf16 (default: bf16 on cuda, fp32 elsewhere)"},
        {"token-report", ARG_STR, &report_path,
         "Quiet-STaR: write an HTML page of the text, each token coloured by how the thought changed its log-prob"},
        {"report-tokens", ARG_INT, &report_tokens, "tokens of text the --token-report page shows (all are counted)"},
        {"tokenizer", ARG_STR, &tok_path, "tokenizer.json for --token-report (default: the checkpoint's own)"},
    };
    args_parse(argc, argv, specs, (int)(sizeof specs / sizeof specs[0]),
               "usage: qstar eval --ckpt DIR --data 'DIR/*.bin' [options]\n\n"
               "Held-out loss. The other mode, benchmark accuracy on GSM8K or CommonsenseQA, is\n"
               "qstar eval --task gsm8k|csqa (its options: qstar eval --task gsm8k --help).");
    if (!ckpt || !data) fatal("eval: --ckpt and --data are required");
    if (batch <= 0 || seq <= 0) fatal("eval: --batch and --seq must be positive");
    if (report_tokens <= 0) fatal("eval: --report-tokens must be positive");
    const Backend* be = backend_select(device, precision);
    ModelConfig cfg;
    config_load(&cfg, ckpt);
    if (seq > cfg.max_position_embeddings) fatal("eval: --seq %d exceeds max_position_embeddings", seq);
    Model m;
    model_create(&m, &cfg, be);
    model_load_weights(&m, ckpt);
    const int thinking = cfg.start_thought_id >= 0 && !no_thoughts;
    Tokenizer* tok = NULL;
    if (report_path) {  // checked before the evaluation runs, not after it
        if (cfg.start_thought_id < 0)
            fatal("eval: --token-report needs a Quiet-STaR checkpoint (%s has no thought tokens)", ckpt);
        if (no_thoughts) fatal("eval: --token-report compares with and without thoughts; drop --no-thoughts");
        char* own = tok_path ? NULL : xsprintf("%s/tokenizer.json", ckpt);
        if (own && !file_exists(own))
            fatal("eval: --token-report needs a tokenizer: %s has none; give --tokenizer", own);
        tok = tok_load(tok_path ? tok_path : own);
        if (tok_vocab_size(tok) > (uint32_t)cfg.vocab_size)
            fatal("%s: tokenizer has %u tokens but the model's vocabulary is %d", tok_path ? tok_path : own,
                  tok_vocab_size(tok), cfg.vocab_size);
        free(own);
        char* dir = xstrdup(report_path);  // the page's folder now, not after a long evaluation
        char* slash = strrchr(dir, '/');
        if (slash && slash != dir) {
            *slash = 0;
            mkdir_p(dir);
        }
        free(dir);
    }

    DataLoader dl, ml;
    dataloader_init(&dl, data, batch, seq, cfg.vocab_size, 0, 0, 1, 0);
    if (mask_path) {
        dataloader_init(&ml, mask_path, batch, seq, 2, 0, 0, 1, 0);
        if (ml.n_shards != dl.n_shards || ml.total_windows != dl.total_windows)
            fatal("%s: answer-mask shards do not line up with the data shards (%llu vs %llu windows)", mask_path,
                  (unsigned long long)ml.total_windows, (unsigned long long)dl.total_windows);
    }
    uint64_t n_batches = dl.total_windows / (uint64_t)batch;
    if (max_batches > 0 && (uint64_t)max_batches < n_batches) n_batches = (uint64_t)max_batches;
    if (n_batches == 0) fatal("%s: fewer windows than one batch", data);

    QuietStar qs;
    if (thinking) {
        QuietStarConfig qc = quietstar_reference_config();
        // the run's thought length and start/end embedding scale, when the checkpoint records them
        qc.n_ahead = n_ahead > 0 ? n_ahead : (int)checkpoint_setting(ckpt, "n-ahead", qc.n_ahead);
        qc.embed_scale = (float)checkpoint_setting(ckpt, "thought-embed-scale", qc.embed_scale);
        qc.n_ahead_talk = 1;
        qc.n_passes = 1;
        qc.seed = (uint64_t)seed;
        quietstar_create(&qs, &m, &qc, batch, seq);
    } else {
        model_alloc_activations(&m, batch, seq);
    }
    const int N = batch * seq;
    int32_t* in = xmalloc(sizeof(int32_t) * N);
    int32_t* tg = xmalloc(sizeof(int32_t) * N);
    int32_t* mk_in = xmalloc(sizeof(int32_t) * N);
    int32_t* mk = mask_path ? xmalloc(sizeof(int32_t) * N) : NULL;
    float* losses = xmalloc(sizeof(float) * N);
    float* talk_losses = report_path ? xmalloc(sizeof(float) * N) : NULL;
    int* scored = report_path ? xmalloc(sizeof(int) * seq) : NULL;
    int32_t* thoughts = NULL;
    TokenReport* report = NULL;
    if (report_path) {
        const int tl = qs.NA - 3;  // the sampled thought tokens, between the start and end tokens
        thoughts = xmalloc(sizeof(int32_t) * (size_t)seq * (tl > 0 ? tl : 1));
        report = token_report_create(seq, tl);
    }
    LossAcc base = {0}, talk = {0};
    double t0 = now_seconds();
    for (uint64_t b = 0; b < n_batches; b++) {
        dataloader_next(&dl, in, tg);
        if (mk) dataloader_next(&ml, mk_in, mk);
        if (thinking) {
            quietstar_forward(&qs, in, (uint32_t)b);
            for (int n = 0; n < N; n++)
                if (n % seq == seq - 1) tg[n] = QSTAR_IGNORE_INDEX;  // the step scores slots 0..L-2
            be->download(losses, qs.steps[0].losses, sizeof(float) * N);
            accumulate(&base, losses, tg, mk, N);
            if (report) {
                be->download(talk_losses, qs.talk_losses, sizeof(float) * N);
                const int tl = qs.NA - 3;
                const int32_t* step_tokens = quietstar_step_tokens(&qs);
                for (int r = 0; r < batch; r++) {
                    const size_t o = (size_t)r * seq;
                    for (int i = 0; i < seq; i++) {
                        scored[i] = tg[o + i] >= 0;
                        for (int k = 0; k < tl; k++)  // steps 2 … NA−2 fed the sampled tokens
                            thoughts[(size_t)i * tl + k] = step_tokens[(size_t)(k + 2) * N + o + i];
                    }
                    token_report_add_window(report, in + o, losses + o, talk_losses + o, thoughts, scored,
                                            mk_in && mk ? mk_in + o : NULL);
                }
            }
            be->download(losses, qs.talk_losses, sizeof(float) * N);
            accumulate(&talk, losses, tg, mk, N);
        } else {
            model_forward(&m, in, tg, NULL);
            be->download(losses, m.acts.losses, sizeof(float) * N);
            accumulate(&base, losses, tg, mk, N);
        }
        if (stdout_is_tty())
            printf("\reval: batch %llu/%llu", (unsigned long long)b + 1, (unsigned long long)n_batches), fflush(stdout);
    }
    if (stdout_is_tty()) printf("\n");
    printf("eval: %s on %llu x %d x %d tokens (%.1f s)\n", ckpt, (unsigned long long)n_batches, batch, seq,
           now_seconds() - t0);
    printf("  %-26s %10s %10s %14s\n", "", "all tokens", "perplexity", "answer tokens");
    printf("  %-26s %10.4f %10.3f %14.4f\n", thinking ? "without thoughts" : "loss", mean(&base, 0), exp(mean(&base, 0)),
           mean(&base, 1));
    if (thinking)
        printf("  %-26s %10.4f %10.3f %14.4f\n", "with thoughts", mean(&talk, 0), exp(mean(&talk, 0)), mean(&talk, 1));
    printf("  tokens: %.0f scored, %.0f of them answer tokens\n", base.count[0], base.count[1]);
    if (json_out) {  // cJSON writes NaN (a value that does not apply) as null
        cJSON* o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "tokens", base.count[0]);
        cJSON_AddNumberToObject(o, "answer_tokens", base.count[1]);
        cJSON_AddNumberToObject(o, "loss", mean(&base, 0));
        cJSON_AddNumberToObject(o, "answer_loss", mean(&base, 1));
        cJSON_AddNumberToObject(o, "thought_loss", thinking ? mean(&talk, 0) : NAN);
        cJSON_AddNumberToObject(o, "thought_answer_loss", thinking ? mean(&talk, 1) : NAN);
        char* text = cJSON_PrintUnformatted(o);
        char* line = xsprintf("%s\n", text);
        write_file_atomic(json_out, line, strlen(line));
        free(line);
        free(text);
        cJSON_Delete(o);
    }
    if (report) {
        TokenReportInfo info = {.ckpt = ckpt, .data = data, .n_ahead = qs.NA, .seed = seed,
                                .max_text_tokens = report_tokens};
        token_report_write(report, tok, report_path, &info);
        printf("  token report: %s\n", report_path);
        token_report_free(report);
    }
    free(talk_losses);
    free(scored);
    free(thoughts);
    if (tok) tok_free(tok);
    if (thinking) quietstar_destroy(&qs);
    if (mask_path) dataloader_free(&ml);
    free(in);
    free(tg);
    free(mk_in);
    free(mk);
    free(losses);
    dataloader_free(&dl);
    model_destroy(&m);
    return 0;
}
