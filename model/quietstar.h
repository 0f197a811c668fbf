/*
 * Quiet-STaR (Zelikman et al. 2024): after every token the model thinks a short thought in parallel
 * and a mixing head blends the prediction made after the thought with the one made without it; the
 * thoughts are trained by REINFORCE on how much they help predict the next T true tokens.
 *
 * One training step, exactly as the reference (docs/quietstar.md §1-§10):
 *   rows R = B·P (the P passes of a sequence adjacent); S = N + T − 1 forwards over all L slots;
 *   step 0 the text itself (base NLL), step 1 the start token (×100 embedding), steps 2..N−2 the
 *   sampled thought tokens, step N−1 the end token, steps N..N+T−2 the true next tokens; each at
 *   RoPE position i + k, with thought attention (causal over the text + the slot's own thought).
 *   Thoughts are sampled at steps 1..N−3 from the step's own logits with the thought tokens masked;
 *   talk steps mix normed hidden states with the mixing head and predict x_{i+s+1}.
 *   loss = base_w·NLL_base + talk_w·mean_s NLL_talk_s + policy_w·mean_k mean(−A·log π_k(τ = 3)).
 * Backward runs the steps in reverse so every step's keys and values have collected the gradients
 * of all later steps before its own layers are differentiated.
 */
#ifndef QSTAR_QUIETSTAR_H
#define QSTAR_QUIETSTAR_H

#include <stdint.h>

#include "model/model.h"

#define QS_MAX_TALK 16

typedef struct {
    int n_ahead;                 // N: thought length with its start and end tokens (reference 12)
    int n_ahead_talk;            // T: true tokens predicted after the thought (reference 4)
    int n_passes;                // P: thoughts sampled per sequence (reference 2)
    float policy_weight;         // weight of the REINFORCE loss (reference 1e6)
    float base_weight;           // weight of the base NLL (reference 0.5)
    float talk_weight;           // weight of the mean talk NLL (reference 0.5)
    float reinforce_temperature; // temperature of log π in the policy loss (reference 3)
    float embed_scale;           // start/end embeddings are stored /scale and used ×scale (reference 100)
    int mask_thoughts_in_talk;   // qstar option: hide the thought tokens from the talk logits (reference: no)
    uint64_t seed;               // Philox key of the thought sampler
} QuietStarConfig;

QuietStarConfig quietstar_reference_config(void);

typedef struct {
    double loss, base_nll, talk_nll[QS_MAX_TALK], policy_loss;
    double mean_reward, mean_advantage, frac_positive, mean_mix_weight;
} QuietStarStats;

typedef struct {
    Model* m;
    QuietStarConfig qc;
    int B, P, R, L, S, N, T, NA;  // N = R*L rows; NA = n_ahead; T = n_ahead_talk
    Activations* steps;           // (S) saved tensors of every forward
    Activations scratch;          // backward scratch shared by all steps
    // --recompute 2: the steps keep only their head (logits, losses, tokens) and qkv in the stack; one
    // set of saved tensors (work) serves the step being computed, each step's decoder input (resid0,
    // (S, N, H)) is kept and its forward rerun before its backward; lnf0 keeps step 0's final states for
    // the mixing head. work.memory is NULL otherwise.
    Activations work;
    floatX *resid0, *lnf0;
    floatX* qkv;                  // (S, layers, N, C3) stack that thought attention reads
    floatX* dqkv;
    size_t step_stride;
    // mixing head, per talk step: hb (rolled base state), cat, a1, a2, w, hmix
    floatX *hb, *cat, *a1, *a2, *w, *hmix;
    // head backward scratch
    floatX *dlnf, *dlnf0, *dhb, *dhmix, *da1, *da2, *dcat, *dw;
    float *talk_losses, *reward, *advantage, *policy_dl;  // device
    float *base_dl, *talk_dl;     // device (N), (T, N): loss weights, built once per loss scale
    float *policy_losses;         // device (N−3, N): −log π of each sampled step's token
    double* stats_dev;            // device (2T + 5): the step's sums (ops.h quietstar_stats)
    float weights_scale;          // the loss scale base_dl and talk_dl were built for (0: not built)
    int32_t* tokens;              // device (S, N): the token fed at each step; steps[k].tokens points
                                  // into it and a sampling step's targets are the next step's tokens
    int32_t* step_tokens;         // (S, N) host copy of tokens, filled by quietstar_step_tokens()
    const int32_t* forced;        // (N−3, N) forced thought tokens for tests; NULL: sample
    const float* fixed_advantage; // (N) host: use these advantages (finite-difference tests hold them, as
                                  // autograd's detach does); NULL: computed from the rewards
    QuietStarStats stats;
} QuietStar;

void quietstar_create(QuietStar* qs, Model* m, const QuietStarConfig* qc, int B, int L);
void quietstar_destroy(QuietStar* qs);
// Memory a step needs beyond the model's parameters, for `qstar info`.
size_t quietstar_activation_bytes(const ModelConfig* cfg, const QuietStarConfig* qc, size_t x_bytes, int recompute, int B,
                                  int L);
// Forward of one step over ids (B, L) (host); sample_step keys the thought sampler. Returns the
// total loss; qs->stats holds its parts.
double quietstar_forward(QuietStar* qs, const int32_t* ids, uint32_t sample_step);
// Backward of loss_scale × the last forward's loss; parameter gradients accumulate.
void quietstar_backward(QuietStar* qs, float loss_scale);
// The tokens fed at every step of the last forward, (S, N): downloaded on demand (one host sync), since
// the step itself keeps the sampled thoughts on the device.
const int32_t* quietstar_step_tokens(QuietStar* qs);
// Sets the start/end thought embeddings to the embedding of token init_id, stored / embed_scale.
void quietstar_init_thought_embeddings(Model* m, int init_id, float embed_scale);

#endif
