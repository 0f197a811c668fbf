/*
 * Supervised fine-tuning on (prompt, completion) pairs with the loss on the completion only, the
 * training step of STaR, RFT and V-STaR's generator, and the row layout DPO shares (model/dpo.h).
 *
 * One example per row, padded, not packed: the attention op (kernels/ops.h attention_forward) is
 * causal over a whole row and has no document mask, so two documents packed into one row would see
 * each other (a cross-document leak). A padded row leaks nothing: padding comes after the text, and
 * a causal query never looks right; the padding's own targets are ignored.
 */
#ifndef QSTAR_SFT_H
#define QSTAR_SFT_H

#include <stdint.h>

#include "model/model.h"

// Writes one row of T inputs and targets for the sequence prompt ++ completion (n tokens):
// inputs[t] = seq[t] for t < min(n, T), pad after; targets[t] = seq[t+1] where seq[t+1] is a completion
// token (QSTAR_IGNORE_INDEX on prompt tokens and padding). A sequence fits when n - 1 <= T (its last
// token is only a target); a longer one loses the end of its completion. Returns the number of
// completion tokens that got a target (0: the row teaches nothing — an empty completion, or a prompt
// of T tokens or more).
int sft_make_row(const int32_t* prompt, int n_prompt, const int32_t* completion, int n_completion, int T, int32_t pad,
                 int32_t* inputs,    // (T) out
                 int32_t* targets);  // (T) out

// One fine-tuning micro-step over B rows (m's activations must be (B, T)): forward, then the backward
// of loss_scale * (mean cross-entropy over the batch's completion tokens); gradients accumulate.
// Returns the mean loss (0 when no row has a target).
float sft_step(Model* m, const int32_t* inputs, const int32_t* targets, float loss_scale);

#endif
