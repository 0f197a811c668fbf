/*
 * The network: a Mistral/Llama decoder whose state lives in a few large allocations carved into
 * named tensors by size tables, as in llm.c. Parameters, gradients and the two AdamW moments are
 * four flat buffers of n_params floats laid out by one parameter table (Hugging Face names, shapes,
 * weight-decay and learning-rate groups); activations for a (B, T) batch are one more allocation.
 * Nothing here knows which backend runs it: every computation is a call through `be`.
 *
 * Parameter layout (per layer, contiguous): input_layernorm, q_proj, k_proj, v_proj, o_proj,
 * post_attention_layernorm, gate_proj, up_proj, down_proj. Because q/k/v and gate/up are adjacent,
 * each pair of projections runs as one fused GEMM with the weights used in place.
 */
#ifndef QSTAR_MODEL_H
#define QSTAR_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"
#include "model/config.h"

typedef struct {
    char name[96];     // Hugging Face tensor name
    int ndim;
    int64_t shape[2];
    size_t offset;     // in floats, into params/grads/m/v
    size_t numel;
    int decay;         // 1: AdamW weight decay applies (matrices); 0: norms
    float lr_mult;     // learning-rate multiplier of the tensor's group
} ParamTensor;

typedef struct {
    size_t ln1, qkv, o, ln2, gate_up, down;  // offsets (floats) of each layer's tensors
} LayerOffsets;

// One forward/backward's worth of activations for B sequences of T tokens (N = B*T rows).
typedef struct {
    int B, T;
    floatX* resid;      // (L+1, N, H) residual stream entering each layer; resid[L] is the last output
    floatX* ln1;        // (L, N, H)
    float* ln1_rstd;    // (L, N)
    floatX* qkv;        // (L, N, (NH+2NKV)*HD) after RoPE
    floatX* att;        // (L, N, NH*HD)
    float* lse;         // (L, B, NH, T)
    floatX* resid_mid;  // (L, N, H) after the attention residual
    floatX* ln2;        // (L, N, H)
    float* ln2_rstd;    // (L, N)
    floatX* gate_up;    // (L, N, 2*IM)
    floatX* mlp;        // (L, N, IM)
    floatX* lnf;        // (N, H)
    float* lnf_rstd;    // (N)
    floatX* logits;     // (N, V); holds dlogits after the backward of the loss
    float* losses;      // (N) per-token cross-entropy
    float* dlosses;     // (N) upstream gradient of each token's loss
    floatX* tmp;        // (N, H) projection output before a residual add
    // backward scratch, reused by every layer
    floatX* dresid;     // (N, H)
    floatX* dln;        // (N, H)
    floatX* dqkv;       // (N, (NH+2NKV)*HD)
    floatX* datt;       // (N, NH*HD)
    floatX* dgate_up;   // (N, 2*IM)
    floatX* dmlp;       // (N, IM)
    int32_t* tokens;    // (N)
    int32_t* targets;   // (N)
    int32_t* pos;       // (N)
    void* memory;
    size_t bytes;
    int mlp_recomputed;  // gate_up and mlp hold one layer (in the scratch group): the backward recomputes them
} Activations;

typedef struct {
    ModelConfig cfg;
    const Backend* be;
    ParamTensor* tensors;
    int n_tensors;
    size_t n_params;
    size_t off_embed, off_norm, off_lm_head;  // off_lm_head == off_embed when tied
    // Quiet-STaR parameters (when cfg.start_thought_id >= 0): start/end thought embeddings (H) and
    // the mixing head Linear(2H->H) ReLU Linear(H->H) ReLU Linear(H->1, no bias)
    size_t off_start, off_end, off_mix_w0, off_mix_b0, off_mix_w2, off_mix_b2, off_mix_w4;
    LayerOffsets* layers;
    floatX* params;  // backend memory, n_params each: the weights the ops read (floatX: be->x_bytes each)
    floatX* grads;
    // fp32 master weights, AdamW moments, of the range [opt_offset, opt_offset + opt_count) of the
    // parameters: all of them, or this rank's shard under ZeRO-1. master is NULL in fp32 (params are
    // the master) and in the reference's bf16 mode (model_create_shard's bf16_weights: the bf16 params
    // are the weights, updated in place); otherwise in bf16 the optimizer updates it and writes params
    // from it in the same pass. The moments are fp32, or floatX in the bf16 mode (2 bytes each in bf16
    // precision; fp32 storage holding bf16 values in fp32): moment_bytes each, addressed by byte offsets.
    float* master;
    void* m;
    void* v;
    size_t moment_bytes;
    int bf16_state;  // made for the reference's bf16 mode (model_create_shard's bf16_weights)
    size_t opt_offset, opt_count;
    int shard_rank, shard_world;  // the ZeRO-1 shard the optimizer state was made for (0 of 1: all of it)
    float* scalar;  // backend memory: one float, the result of sum_squares
    Activations acts;
    // Activation memory against recomputation, set before activations are allocated (--recompute):
    // 0 keeps every layer's activations; 1 keeps no MLP activations (gate_up, mlp: 3·IM per token and
    // layer), recomputing each layer's from its saved ln2 in the backward (one GEMM and one SwiGLU per
    // layer, and gradients bitwise the same); 2 (Quiet-STaR) also keeps only each thought step's input
    // and its K/V in the stack, rerunning the step's forward before its backward (model/quietstar.h).
    int recompute;
    int n_valid;    // targets that count in the last forward's loss
    // Called by the backward as soon as a layer's gradients are final (data parallelism starts their
    // reduction while the layers below are differentiated); NULL: nobody listens.
    void (*grad_ready)(void* ctx, size_t offset, size_t count);
    void* grad_ready_ctx;
} Model;

typedef struct {
    float beta1, beta2, eps, weight_decay;
    int decay_norms;   // also decay the RMSNorm weights (the Quiet-STaR reference's Trainer does)
    // The Quiet-STaR reference's precision: weights and moments are bf16 values after every step (ops.h
    // adamw_update's bf16_state). In bf16 precision the model must be made for it, with
    // model_create_shard(..., bf16_weights = 1): no fp32 master, floatX moments (model_adamw_step asserts it).
    int bf16_weights;
    uint64_t stochastic_seed;  // bf16 copies: stochastic rounding keyed by (seed, step) when nonzero
} AdamWConfig;

// Builds only the parameter table (names, shapes, offsets, n_params): nothing is allocated.
void model_build_table(Model* m, const ModelConfig* cfg);
// Builds the parameter table for cfg and allocates parameters, gradients and moments (zeroed).
void model_create(Model* m, const ModelConfig* cfg, const Backend* be);
// The same for rank `rank` of `world` under ZeRO-1: the optimizer state (fp32 master, moments) is
// allocated for this rank's shard of the parameters only (common/partition.h), never whole.
// bf16_weights: the reference's bf16 mode (AdamWConfig.bf16_weights): no fp32 master in bf16 precision.
void model_create_shard(Model* m, const ModelConfig* cfg, const Backend* be, int rank, int world, int bf16_weights);
void model_destroy(Model* m);
// Normal(0, initializer_range) for matrices and embeddings, ones for norms; Philox keyed by seed.
void model_init_random(Model* m, uint64_t seed);
const ParamTensor* model_find_tensor(const Model* m, const char* name);
// The parameters a checkpoint holds (n_params less the vocabulary's padding rows).
size_t model_count_params(const Model* m);
// All n_params weights from / to a host fp32 array (the master weights where there are some: this rank's
// shard of them, the working copy elsewhere).
void model_set_weights(Model* m, const float* host);
void model_get_weights(const Model* m, float* host);
// Copies every tensor of src (its table: model_build_table is enough; its weights src_weights, host fp32,
// n_params of src) into the same-named tensor of dst; where dst has more rows (a grown
// vocabulary) the leading rows are copied and the rest keep dst's values. Tensors src lacks are kept.
void model_copy_matching(Model* dst, const Model* src, const float* src_weights);

// Activation groups, so a Quiet-STaR step can keep many forwards' saved tensors but one scratch:
enum {
    ACT_SAVED = 1,    // resid .. lnf_rstd: what the backward of one forward reads
    ACT_QKV = 2,      // own qkv storage (off: the caller points qkv into a shared per-step stack)
    ACT_HEAD = 4,     // logits, losses, dlosses, tokens, targets, pos
    ACT_SCRATCH = 8,  // tmp and the backward scratch (dresid, dln, dqkv, datt, dgate_up, dmlp)
    ACT_ALL = 15,
    ACT_MLP_RECOMPUTED = 16,  // layout flag: gate_up and mlp for one layer, in the scratch group (recompute >= 1)
};
// Activation memory for (B, T) and the given groups; model_forward/backward need ACT_ALL.
size_t model_activation_bytes(const ModelConfig* cfg, size_t x_bytes, int B, int T, int groups);
void activations_alloc(const Backend* be, const ModelConfig* cfg, Activations* a, int B, int T, int groups);
void activations_free(const Backend* be, Activations* a);
void model_alloc_activations(Model* m, int B, int T);

// The decoder stack on its own, for callers that build inputs and heads themselves (Quiet-STaR).
// Thought attention instead of causal attention when ta is given: step k's queries over the qkv
// stack of steps 0..k (ops.h); its backward accumulates into the dqkv stack.
typedef struct {
    floatX* qkv;     // step 0, layer 0 of the stack; layer l of step j at qkv + j*step_stride + l*N*C3
    floatX* dqkv;    // same layout, gradients (accumulated by every step's backward)
    size_t step_stride;
    int k;
} ThoughtAttn;
// Layers and final norm over a->resid[0] (filled by the caller) at positions a->pos.
void decoder_forward(Model* m, Activations* a, Activations* scratch, const ThoughtAttn* ta);
// Backward from dlnf = d(loss)/d(final norm output) (N, H) to d(resid[0]), left in scratch->dresid.
void decoder_backward(Model* m, Activations* a, Activations* scratch, const floatX* dlnf, const ThoughtAttn* ta);

// logits (N, vocab_padded) = h (N, H) · lm_headᵀ, the padding columns set to VOCAB_PAD_LOGIT (config.h).
// Every logits the model makes come from here; consumers read vocab_size columns at a vocab_padded stride.
void model_lm_head(const Model* m, floatX* logits, const floatX* h, int N);
// N rows of logits (device, vocab_padded apart) to host fp32 (N, vocab_size), the padding left out.
void model_download_logits(const Model* m, float* host, const floatX* logits, int N);
// Forward over B*T tokens (host arrays). targets may be NULL (no loss); returns the mean loss over
// targets that are not QSTAR_IGNORE_INDEX (0 if none). pos NULL means positions 0..T-1 in each row.
float model_forward(Model* m, const int32_t* tokens, const int32_t* targets, const int32_t* pos);
// Cross-entropy of a->logits against targets (host); sets m->n_valid; returns the mean over valid.
float model_loss(Model* m, Activations* a, const int32_t* targets);
// Backward of loss_scale * (mean loss of the last forward); parameter gradients accumulate.
void model_backward(Model* m, float loss_scale);
// The backward below the loss: from d(loss)/d(logits) left in m->acts.logits to every parameter gradient.
void model_backward_dlogits(Model* m);
void model_zero_grad(Model* m);
// The contiguous parameter range [*offset, *offset + *count) of layer l's tensors.
void model_layer_range(const Model* m, int l, size_t* offset, size_t* count);
// Global L2 norm of the gradients.
float model_grad_norm(Model* m);
// One AdamW step over every tensor group within the optimizer range; grad_scale multiplies
// gradients (clipping), t is 1-based.
void model_adamw_step(Model* m, const AdamWConfig* opt, float lr, float grad_scale, int t);
// Squared L2 norm of gradients [offset, offset + count).
double model_grad_sum_squares(Model* m, size_t offset, size_t count);

// FLOPs of one training step (forward + backward) over B sequences of T tokens, counted exactly for
// the work the step must do: 6·N per linear weight (lm_head included; embedding lookups and
// elementwise ops excluded) and causal attention's 12·HD per visible (query, key) pair and head.
// Recomputation is not counted: this is the numerator of MFU.
double model_step_flops(const Model* m, int B, int T);

// Generates up to n_new tokens after prompt into out (temperature 0: greedy; else Gumbel-max with
// Philox noise keyed by (seed, position)); stops after stop_token (-1: never). Returns the count.
// Uses its own activations, leaving the training ones untouched.
int model_generate(Model* m, const int32_t* prompt, int n_prompt, int n_new, float temperature, uint64_t seed,
                   int stop_token, int32_t* out);

#endif
