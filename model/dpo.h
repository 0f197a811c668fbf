/*
 * Direct preference optimisation (Rafailov et al.), the loss of V-STaR's verifier and of per-step DPO
 * (Setlur et al.; docs/star-family.md §1.3, §4.2, §5):
 *
 *   logπ(y|x) = Σ_{t ∈ response} log π(y_t | x, y_<t)            (a sum over response tokens)
 *   z_p       = β [ (logπ(y+) − logπ_ref(y+)) − (logπ(y−) − logπ_ref(y−)) ]
 *   L         = (1/P) Σ_p w_p · (−log σ(z_p))                     (w_p = 1: standard DPO)
 *
 * A batch holds P pairs as B = 2P rows of T tokens built with sft_make_row (model/sft.h): pair p's
 * chosen response at row 2p, its rejected one at row 2p+1, targets only on response tokens (a
 * rejected response may be a truncated prefix, as per-step DPO's). The reference's log-probabilities
 * are computed once (dpo_sequence_logprobs on the frozen model, or on the policy before its first
 * update: they are the same weights) and passed in as a cache.
 *
 * The gradient needs no new op: logπ(row) = −Σ_t CE_t, so dL/dCE_t = −dL/dlogπ(row) is one weight per
 * token, and the existing cross-entropy backward (kernels/ops.h crossentropy_backward, whose per-row
 * dlosses are exactly per-token weights) carries it through the lm_head and the decoder.
 */
#ifndef QSTAR_DPO_H
#define QSTAR_DPO_H

#include <stdint.h>

#include "model/model.h"

typedef struct {
    double loss;             // L as above
    double reward_chosen;    // mean over pairs of β (logπ(y+) − logπ_ref(y+))
    double reward_rejected;  // mean of β (logπ(y−) − logπ_ref(y−))
    double margin;           // mean of z_p
    double accuracy;         // fraction of pairs with z_p > 0
} DpoStats;

// Sequence log-probabilities of B rows (m's activations must be (B, T)): logp[r] = −Σ_t CE(r, t) over
// the row's targets that are not QSTAR_IGNORE_INDEX, summed in double. Forward only.
void dpo_sequence_logprobs(Model* m, const int32_t* inputs, const int32_t* targets, double* logp);

// The loss and its derivative with respect to each row's log-probability: dlogp[2p] = dL/dlogπ(y+_p),
// dlogp[2p+1] = dL/dlogπ(y−_p). pair_weight NULL: every w_p = 1. Pure arithmetic on host arrays.
DpoStats dpo_loss(const double* policy_logp, const double* ref_logp, const float* pair_weight, int P, float beta,
                  double* dlogp);

// One DPO micro-step over P pairs (m's activations must be (2P, T)): forward, the loss, and the
// backward of loss_scale * L; parameter gradients accumulate. policy_logp (2P) may be NULL; when given
// it receives the policy's sequence log-probabilities.
DpoStats dpo_step(Model* m, const int32_t* inputs, const int32_t* targets, const double* ref_logp,
                  const float* pair_weight, int P, float beta, float loss_scale, double* policy_logp);

// The reference cache on disk, so a resumed run does not recompute it: the log-probabilities of every
// row of a dataset, keyed by a hash of the rows (inputs and targets). Binary, little-endian:
// "QSDPOREF", uint64 count, uint64 key, count doubles; written atomically.
uint64_t dpo_rows_key(const int32_t* inputs, const int32_t* targets, size_t n_tokens);
void dpo_ref_cache_save(const char* path, const double* logp, size_t count, uint64_t key);
// The cached values (malloc'd), or NULL when the file does not exist. A file that is malformed, holds
// another count or was computed for other rows (another key) is a one-line error naming it.
double* dpo_ref_cache_load(const char* path, size_t count, uint64_t key);

#endif
