/*
 * Checkpoints. RUN_DIR/step_NNNNNN/ holds:
 *   model.safetensors      weights under transformers' names (loads in MistralForCausalLM): fp32, or
 *                          bf16 (rounded to nearest even) with --save-dtype bf16
 *   config.json            transformers-compatible config (torch_dtype "float32" or "bfloat16")
 *   optimizer.safetensors  AdamW moments "adam_m", "adam_v" as flat (n_params) F32 tensors; "master"
 *                          (F32) when model.safetensors is bf16 and the weights are not all bf16 values;
 *                          "working_bf16" (BF16) when the bf16 working copy is not the weights rounded
 *                          to nearest (stochastic rounding). Resuming restores all of them, so a resumed
 *                          run is bitwise the continuous one whatever the save dtype.
 *   state.json             step, data-loader position and the run's settings
 *   tokenizer.json         when the run has a tokenizer (Quiet-STaR adds the thought tokens to it)
 * A checkpoint is assembled in RUN_DIR/.tmp.step_NNNNNN and renamed into place as a whole, so a
 * crash leaves either the previous checkpoints or a complete new one, never a partial directory.
 */
#ifndef QSTAR_CHECKPOINT_H
#define QSTAR_CHECKPOINT_H

#include <cjson/cJSON.h>

#include "io/dataloader.h"
#include "text/tokenizer.h"
#include "model/model.h"

// What a checkpoint's state.json holds.
typedef struct {
    int step;
    DataPosition data;
    cJSON* settings;  // owned: the run's options by name (as args_to_json writes them); NULL if absent
} RunState;

// What a checkpoint holds besides the run state; every array is on the host, n_params long.
typedef struct {
    const float* weights;  // the weights (the fp32 master gathered across ranks under ZeRO-1), or NULL: m's own
                           // (model_get_weights)
    const float* working;  // the bf16 working copy (as fp32 values) when it cannot be derived from the
                           // weights (stochastic rounding), or NULL
    const float* adam_m;   // the moments of all parameters (gathered across ranks)
    const float* adam_v;
    int bf16;              // model.safetensors in BF16 (--save-dtype bf16)
} CheckpointTensors;

void checkpoint_save(const char* run_dir, int step, const Model* m, const CheckpointTensors* t,
                     const DataPosition* data, const cJSON* settings, const Tokenizer* tok);
// Newest complete step_* directory of run_dir (malloc'd), or NULL if there is none.
char* checkpoint_latest(const char* run_dir);
// Restores weights into a model created from the checkpoint's config.json (from "master" where the
// optimizer file has it, and the working copy from "working_bf16" where it has that and m keeps a
// master), and reads the moments of all parameters into *adam_m, *adam_v (malloc'd host arrays); the
// caller uploads its optimizer range.
void checkpoint_load(const char* ckpt_dir, Model* m, float** adam_m, float** adam_v);

// The one reader of state.json. Returns 1 with *st filled, or 0 with *st zeroed when the directory
// has no state.json (a Hugging Face checkpoint) and required is 0. Malformed content is fatal.
int run_state_read(const char* ckpt_dir, RunState* st, int required);
void run_state_free(RunState* st);
// A numeric setting the checkpoint's run used (its state.json), or def when absent.
double checkpoint_setting(const char* ckpt_dir, const char* key, double def);

#endif
