/*
 * The pieces `qstar selftrain` shares between its methods (STaR, RFT, V-STaR, per-step DPO): the
 * settings, text <-> tokens, batched generation with the completion cut (greedy or sampled, optionally
 * continuing a text prefix), the few-shot context, fine-tuning (its epoch order and fresh AdamW state
 * shared with DPO), greedy test accuracy, the DPO training loop over preference pairs with its cached
 * reference, and the run directory's files (state.json, metrics.jsonl, kept examples, checkpoints; the
 * .jsonl lines through io/jsonl.h). cmd_selftrain.c parses the command and runs STaR/RFT
 * and V-STaR's generator iterations; selftrain_vstar.c and selftrain_stepdpo.c hold what is theirs.
 */
#ifndef QSTAR_SELFTRAIN_H
#define QSTAR_SELFTRAIN_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "common/util.h"
#include "tasks/star_tasks.h"
#include "text/tokenizer.h"
#include "model/model.h"

enum { METHOD_STAR, METHOD_RFT, METHOD_VSTAR, METHOD_STEPDPO };

typedef struct {
    const char *method, *model, *task, *train, *test, *out, *resume, *device, *make_arith, *digits;
    int make_n, iterations, start_steps, batch, seq, warmup, shots, max_tokens, gen_batch, seed, no_rationalize, gold, keep_all,
        n_train, n_test;
    float grow, lr, grad_clip;
    // RFT, V-STaR, per-step DPO
    int samples, test_samples, dpo_steps, dpo_batch, dpo_warmup, pairs_per_problem, rollouts, negatives;
    float temperature, beta, dpo_lr, pit_threshold;
    const char *q_estimator, *pair_weight;
} Settings;

typedef struct {
    int32_t* ids;
    int n;
} Toks;

typedef struct {
    Toks prompt, completion;
} Example;

// A DPO preference pair: the same prompt, a chosen and a rejected response (token ids), a weight.
typedef struct {
    Toks prompt, chosen, rejected;
    float weight;
} Pair;

Toks st_encode(const Tokenizer* tok, const char* s, int add_special);
Toks st_toks_copy(const int32_t* ids, int n);

// Where a completion ends: a blank line, or the end of the answer line (gsm8k: the first line with
// "####"; arith: the line after "</scratch>"). Returns the end (after its '\n'), or NULL.
const char* st_completion_end(int task, const char* text);

// Completions of n requests: prompts[i] (tokens), sampled as sample[i] (NULL: all 0) at temperature
// (0: greedy). prefixes (NULL: none) are texts the prompt already ends with — a completion's end is
// judged on prefix ++ continuation (a rollout from the middle of a solution). texts[i] gets the
// continuation cut at st_completion_end, tokens[i] the generated tokens up to the one that completed
// it. stage names the progress line; *tok_per_s gets the generation speed.
void st_generate(Model* m, const Tokenizer* tok, const Settings* s, int task, const Toks* prompts, const uint32_t* sample,
                 const char* const* prefixes, int n, float temperature, char** texts, Toks* tokens, const char* stage,
                 double* tok_per_s);

// The few-shot context (the first `shots` training problems with their reference solutions), hinted
// or not; a problem's reference completion and rationalization hint.
char* st_few_shot(int task, const StarItem* items, int shots, int hinted);
char* st_exemplar_completion(int task, const StarItem* it);
char* st_hint_of(int task, const StarItem* it);

// The items 0 .. n-1 epoch after epoch, each epoch in a new order (a Fisher-Yates shuffle driven by an
// LCG from state); free .order when done.
typedef struct {
    int* order;
    int n, pos;
    uint64_t state;
} Epochs;
Epochs st_epochs(int n, uint64_t state);
int st_epochs_next(Epochs* e);
// Zeroed AdamW moments (training starts afresh from m's weights) and the settings STaR's and DPO's
// loops share: betas 0.9 / 0.999, eps 1e-8, no weight decay.
AdamWConfig st_adamw_fresh(Model* m);

// `steps` SFT steps of --batch rows from m's current weights (fresh Adam moments); returns the mean loss.
double st_finetune(Model* m, const Settings* s, Example* ex, int n_ex, int steps, int pad, uint64_t seed,
                   double* tok_per_s);
// Greedy test accuracy of M_iter (per digit count into by_digits on arith); each problem's completion,
// gold answer and verdict go to s->out/test_NNN.jsonl (NNN = iter, written atomically).
double st_evaluate(Model* m, const Tokenizer* tok, const Settings* s, int task, const char* ctx, const StarItem* test,
                   int n_test, int iter, cJSON* by_digits, double* tok_per_s);

// The DPO loop: from m's current weights (also the frozen reference: its log-probabilities are
// computed before the first update, or read from cache_path when it holds them for these rows),
// `steps` AdamW steps of --dpo-batch pairs (weighted by pair.weight), --beta, --dpo-lr. Returns the
// last step's statistics (loss, accuracy, margin: its batch, scored before its update); first_loss the
// first step's loss; final_*: the same statistics over every pair with the trained weights (one more
// forward over all of them); tok_per_s the training speed.
typedef struct {
    double loss, first_loss, accuracy, margin, tok_per_s;
    double final_loss, final_accuracy, final_margin;
    int steps;
} DpoRun;
DpoRun st_dpo_train(Model* m, const Settings* s, const Pair* pairs, int n_pairs, int steps, int pad, const char* cache_path,
                    uint64_t seed, const char* stage);
// run's statistics as fields of a metrics record: first_loss, loss, pair_accuracy, margin, final_loss,
// final_pair_accuracy, final_margin, dpo_tokens_per_s.
void st_record_dpo(cJSON* rec, const DpoRun* run);
// Sequence log-probabilities of n (prompt, response) rows under m (rows of --seq, --dpo-batch * 2 at once).
void st_score(Model* m, const Settings* s, const Example* ex, int n, int pad, double* logp, const char* stage);

// ---- run directory -------------------------------------------------------------------------------------
// state.json: the last finished iteration, the settings, how far the next one got (stage, may be NULL),
// and how many metrics.jsonl lines belong to that point (a resumed run drops the ones after).
void st_write_state(const char* out, int finished, cJSON* stage, const cJSON* settings);
// On resume: keep the metrics lines the state counted (older states: the records of iterations < iter).
void st_metrics_rewind(const char* out, const cJSON* state, int iter);
void st_metrics_append(const char* out, const cJSON* rec);  // and print it on stdout
double st_json_num(const cJSON* o, const char* key);
void st_write_examples(const char* path, const Example* ex, int n);
Example* st_read_examples(const char* path, int vocab, int* n_out);
// A JSON list of token ids (a record's "prompt", "completion", ...), each an integer in [0, vocab):
// an id out of range would index past the embedding table. path:line name it in the error.
Toks st_json_ids(const cJSON* a, int vocab, const char* path, int line);
void st_free_examples(Example* ex, int n);
// RUN_DIR/<name>/ as a complete checkpoint (weights, config, tokenizer), written atomically and marked as
// a run directory (common/fs.h): selftrain removes it later (iter_NNN without --keep-all).
void st_save_checkpoint(const char* out, const char* name, const Model* m, const Tokenizer* tok);
// One generation record {"line", "stage", "completion", "correct"} (+ "sample" when >= 0).
void st_write_generation(AtomicFile* f, int line, const char* stage, const char* text, int correct, int sample);
AtomicFile st_open_generations(const char* out, const char* what, int iter);

// ---- the methods' own parts ----------------------------------------------------------------------------
typedef struct {
    const Settings* s;
    int task, n_prob, n_test;
    const StarItem *probs, *test;
    const char *ctx, *hctx;  // few-shot contexts: plain and hinted
    const Tokenizer* tok;
    int pad;
    int64_t eos;
    const cJSON* settings;
    int vocab;  // the model's vocabulary size: token ids read back from the run directory are below it
} RunCtx;
// V-STaR after its generator iterations: the verifier (DPO), then the test-time candidates (stage
// "verifier" and "test" records). saved_stage: the resumed state's stage (NULL: none).
void vstar_final(Model* m, const RunCtx* rc, const cJSON* saved_stage);
// Per-step DPO, every iteration (generate, rollouts, dpo, evaluate) from first_iter on.
void stepdpo_run(Model* m, const RunCtx* rc, int first_iter, const cJSON* saved_stage);
// The majority answer of n completions (task's extraction; unextractable ones do not vote; ties: the
// first to reach the count). Returns 1 when it is the gold answer.
int st_majority_correct(int task, const char* const* texts, int n, const char* gold);

#endif
