/*
 * `qstar info`: what a model costs before it is run: parameters by kind, and the device memory a
 * training run needs per GPU at a batch and sequence length: the step (weights, gradients, AdamW
 * moments, activations from the same size tables the model allocates with, and the buffers the CUDA
 * kernels and NCCL allocate for themselves, by their own size formulas); the start of the run holds
 * less (the optimizer state is made sharded, model_create_shard).
 * tests/test_info_memory.sh holds the total to the peak the CUDA emulator's cudaMalloc records.
 * Not counted: the pinned upload stage (host memory), the static __device__ arrays of the kernels
 * (sum_squares' partials: kilobytes), and generation during training (--sample-every: KV caches).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/args.h"
#include "cli/commands.h"
#include "common/util.h"
#include "model/model.h"
#include "model/quietstar.h"

static const char* human(double bytes, char* buf, size_t n) {
    const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int u = 0;
    while (bytes >= 1024 && u < 6) {
        bytes /= 1024;
        u++;
    }
    snprintf(buf, n, bytes < 1e6 ? "%.2f %s" : "%.3g %s", bytes, unit[u]);
    return buf;
}

// A parameter count: exact where a double holds it exactly (below 2^53), else 4 significant digits.
static const char* count(double x, char* buf, size_t n) {
    snprintf(buf, n, x < 0x1p53 ? "%.0f" : "%.4g", x);
    return buf;
}

// Activation bytes of a step. The table is affine in the layer count and linear in batch x seq (up to
// the 256-byte alignment of each buffer): evaluated for one token at one and two layers and scaled, in
// doubles. When that estimate is far from 2^64 the exact size_t figure is used instead; it cannot wrap
// then, as every buffer is a product of factors >= 1 and bounded by the total.
static double activation_bytes(const ModelConfig* c, const ModelConfig* one, int quietstar, const QuietStarConfig* qc,
                               size_t xb, int recompute, int batch, int seq) {
    const int flags = recompute >= 1 ? ACT_MLP_RECOMPUTED : 0;
    ModelConfig two = *one;
    two.num_hidden_layers = 2;
    double unit[2];
    const ModelConfig* cs[2] = {one, &two};
    for (int k = 0; k < 2; k++)
        unit[k] = quietstar ? (double)quietstar_activation_bytes(cs[k], qc, xb, recompute, 1, 1)
                            : (double)model_activation_bytes(cs[k], xb, 1, 1, ACT_ALL | flags);
    double act = (unit[0] + (unit[1] - unit[0]) * (c->num_hidden_layers - 1)) * batch * seq;
    if (act < 0x1p60 && (double)batch * qc->n_passes <= 2147483647.0)
        act = quietstar ? (double)quietstar_activation_bytes(c, qc, xb, recompute, batch, seq)
                        : (double)model_activation_bytes(c, xb, batch, seq, ACT_ALL | flags);
    return act;
}

// Parameters by kind, counted from the parameter table built for one layer: every layer has the same
// tensors, and a table of num_hidden_layers entries would allocate in proportion to a size info only
// reports. Counts are doubles: exact below 2^53, and sizes of 2e9 multiply past 2^64.
typedef struct {
    double embed, head, attn, mlp, norms, thought, total;
} ParamCounts;

static ParamCounts count_params(const ModelConfig* c) {
    ModelConfig one = *c;
    one.num_hidden_layers = 1;
    Model m;
    model_build_table(&m, &one);
    ParamCounts p = {0};
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor* t = &m.tensors[i];
        const int in_layer = !strncmp(t->name, "model.layers.", 13);
        const double n = (double)t->shape[0] * (t->ndim == 2 ? (double)t->shape[1] : 1.0) *
                         (in_layer ? (double)c->num_hidden_layers : 1.0);
        if (!strncmp(t->name, "quietstar.", 10)) p.thought += n;
        else if (t->ndim == 1) p.norms += n;
        else if (strstr(t->name, "embed_tokens")) p.embed += n;
        else if (strstr(t->name, "lm_head")) p.head += n;
        else if (strstr(t->name, "self_attn")) p.attn += n;
        else p.mlp += n;
    }
    model_destroy(&m);
    p.total = p.embed + p.head + p.attn + p.mlp + p.norms + p.thought;
    return p;
}

// The model's own device buffers (model/params.c model_create_shard): the working weights and gradients
// (floatX) of all n parameters, the fp32 master weights (bf16 only, and not in the reference's bf16 mode,
// --bf16-weights) and AdamW moments (fp32, floatX in that mode) of the `opt` parameters this rank
// updates (all of them, or its ZeRO-1 shard), and the one float sum_squares writes.
static double model_state_bytes(double n, double opt, size_t xb, int master, int bf16_moments) {
    return 2.0 * (double)xb * n + (master ? 4.0 * opt : 0.0) + 2.0 * (bf16_moments ? xb : 4) * opt + sizeof(float);
}

// Buffers the CUDA kernels allocate on first use and keep (grow-only), for a step whose layers see
// `rows` sequences of `seq` tokens. The sizes repeat the launchers' formulas; kernels/ops.h does not
// export them, so a change there shows as a disagreement in tests/test_info_memory.sh.
static double kernel_scratch_bytes(const ModelConfig* c, size_t xb, double rows, int seq) {
    const double H = c->hidden_size, N = rows * seq;
    // attention backward's D statistics, (rows, NH, L) floats: attention.cuh attn_scratch_get (fp32
    // kernels) or flash_attention.cuh flash_scratch_get (bf16 tensor-core kernels), one of the two
    const double attention = N * c->num_attention_heads * sizeof(float);
    // rmsnorm.cuh rmsnorm_backward_launch: a float partial row per block and a double row per group of 16
    // blocks; threads = one 16-byte pack of the row each (32..512), blocks = min(N, 64K / threads). The
    // vector path's packs are the fewest, so its block count is the largest (a bound for the scalar path).
    const int W = 16 / (int)xb, packs = c->hidden_size % W == 0 ? c->hidden_size / W : c->hidden_size;
    int threads = (packs + 31) / 32 * 32;
    threads = threads < 32 ? 32 : threads > 512 ? 512 : threads;
    const double blocks = fmin(N, (double)(64 * 1024 / threads));
    const double rmsnorm = blocks * H * sizeof(float) + ceil(blocks / 16) * H * sizeof(double) +
                           256 * sizeof(unsigned);  // + RMSNORM_BWD_MAX_TICKETS tickets
    // embedding.cuh: the sort's positions, segment starts and count for a chunk of 4096 tokens
    const double embedding = sizeof(int32_t) * (2 * 4096 + 2);
    return attention + rmsnorm + embedding;
}

// NCCL's staging buffer (kernels/cuda/comm_nccl.cuh nccl_stage_size): QSTAR_NCCL_STAGE_BYTES, else 64 MiB.
static double nccl_stage_bytes(void) {
    const char* s = getenv("QSTAR_NCCL_STAGE_BYTES");
    const double b = s && atoll(s) > 0 ? (double)atoll(s) : (double)(64 << 20);
    return b < 8 ? 8 : floor(b / 8) * 8;
}

// GiB with at least four significant digits (the test compares totals of a few tens of MiB), and no
// 20-digit figures for sizes nobody could allocate.
static const char* gib(double bytes, char* buf, size_t n) {
    const double g = bytes / 1073741824.0;
    snprintf(buf, n, g >= 1e7 ? "%.4g" : g >= 10 ? "%.2f" : g >= 1 ? "%.3f" : "%.4g", g);
    return buf;
}

// What one GPU holds during a training step at micro-batch `batch`.
typedef struct {
    double weights, master, grads, moments, grad_copy, act, work, scratch, nccl, total;
} StepMemory;

typedef struct {
    const ModelConfig *c, *one;
    const QuietStarConfig* qc;
    int quietstar, recompute, world, zero, seq;
    size_t xb;
    int master;       // an fp32 master copy: bf16 precision without --bf16-weights
    int bf16_moments; // --bf16-weights: the moments are floatX
    double n, shard;  // parameters; those this rank's optimizer holds
    int grad_copy;    // several ranks, bf16 gradients summed in fp32 through an fp32 copy of them
} Plan;

static StepMemory step_memory(const Plan* p, int batch) {
    StepMemory s = {0};
    const double xb = (double)p->xb;
    s.weights = xb * p->n;
    s.grads = xb * p->n;
    s.master = p->master ? 4.0 * p->shard : 0;
    s.moments = 2.0 * (p->bf16_moments ? xb : 4) * p->shard;
    s.grad_copy = p->grad_copy ? 4.0 * p->n : 0;  // cli/cmd_train.c GradReduce.stage
    s.act = activation_bytes(p->c, p->one, p->quietstar, p->qc, p->xb, p->recompute, batch, p->seq);
    s.work = (double)QSTAR_DEVICE_WORKSPACE_BYTES;
    const double rows = (double)batch * (p->quietstar ? p->qc->n_passes : 1);
    s.scratch = kernel_scratch_bytes(p->c, p->xb, rows, p->seq) + sizeof(float);  // + model.scalar
    // several ranks: NCCL's scalar for the loss and norm sums; under ZeRO-1 the checkpoint gathers the
    // moments (and bf16's master weights) in host arrays, which NCCL reaches through its stage
    s.nccl = p->world > 1 ? sizeof(double) + (p->zero ? nccl_stage_bytes() : 0) : 0;
    s.total = model_state_bytes(p->n, p->shard, p->xb, p->master, p->bf16_moments) + s.grad_copy + s.act + s.work + s.scratch + s.nccl;
    return s;
}

int cmd_info(int argc, char** argv) {
    const char *config = NULL, *mode = "lm";
    QuietStarConfig qc = quietstar_reference_config();
    const char *precision = "fp32", *grad_reduce = NULL;
    int batch = 4, seq = 256, zero = 0, world = 1, recompute = 0, bf16_weights = 0;
    float budget_gib = 0;
    ArgSpec specs[] = {
        {"config", ARG_STR, &config, "model config.json (or a checkpoint directory)"},
        {"batch", ARG_INT, &batch, "sequences per micro-batch"},
        {"seq", ARG_INT, &seq, "tokens per sequence"},
        {"mode", ARG_STR, &mode, "lm or quietstar (activations of every thought step)"},
        {"n-ahead", ARG_INT, &qc.n_ahead, "quietstar: thought length incl. start and end"},
        {"n-ahead-talk", ARG_INT, &qc.n_ahead_talk, "quietstar: true tokens predicted after a thought"},
        {"n-passes", ARG_INT, &qc.n_passes, "quietstar: thoughts per sequence"},
        {"precision", ARG_STR, &precision, "fp32 or bf16 (activations, weight copy and gradients in bf16)"},
        {"bf16-weights", ARG_FLAG, &bf16_weights,
         "the reference's bf16 mode: weights and moments held at bf16 values, no fp32 master in bf16 precision"},
        {"zero", ARG_INT, &zero, "1: ZeRO-1 (master weights and AdamW moments sharded over the ranks)"},
        {"world-size", ARG_INT, &world, "data-parallel ranks (GPUs)"},
        {"grad-reduce", ARG_STR, &grad_reduce,
         "several ranks: fp32 or bf16, the type gradients are summed in (default: theirs)"},
        {"recompute", ARG_INT, &recompute,
         "0: keep every activation; 1: recompute each layer's MLP activations; 2: also each Quiet-STaR step's forward"},
        {"gpu-memory", ARG_FLOAT, &budget_gib, "GiB per GPU: also print the largest micro-batch that fits"},
    };
    args_parse(argc, argv, specs, sizeof specs / sizeof *specs,
               "usage: qstar info --config C [--batch B --seq L --mode lm|quietstar --precision fp32|bf16\n"
               "                  --bf16-weights --zero 0|1 --world-size W --grad-reduce fp32|bf16 --recompute 0|1\n"
               "                  --gpu-memory GIB]\n\n"
               "Parameter count and device memory per GPU of a training run (train's options of the same names).");
    if (strcmp(precision, "fp32") && strcmp(precision, "bf16")) fatal("info: --precision must be fp32 or bf16");
    if (zero != 0 && zero != 1) fatal("info: --zero must be 0 or 1");
    if (world < 1) fatal("info: --world-size must be at least 1");
    if (recompute < 0 || recompute > 2) fatal("info: --recompute must be 0, 1 or 2");
    if (!grad_reduce) grad_reduce = precision;
    if (strcmp(grad_reduce, "fp32") && strcmp(grad_reduce, "bf16")) fatal("info: --grad-reduce must be fp32 or bf16");
    if (!strcmp(grad_reduce, "bf16") && !strcmp(precision, "fp32"))
        fatal("info: --grad-reduce bf16 needs --precision bf16 (fp32 gradients are reduced in fp32)");
    if (strcmp(mode, "lm") && strcmp(mode, "quietstar")) fatal("info: --mode must be lm or quietstar");
    const int quietstar = !strcmp(mode, "quietstar");
    if (!config) fatal("info: --config is required");
    if (batch <= 0 || seq <= 0) fatal("info: --batch and --seq must be positive");
    if (quietstar && (qc.n_ahead < 4 || qc.n_ahead > 1 << 20 || qc.n_ahead_talk < 1 || qc.n_ahead_talk > QS_MAX_TALK ||
                      qc.n_passes < 1))
        fatal("info: need 4 <= --n-ahead <= 2^20, 1 <= --n-ahead-talk <= %d and --n-passes >= 1", QS_MAX_TALK);
    ModelConfig c;
    config_load(&c, config);
    // training adds the two thought tokens and the mixing head (vocabulary + 2 at most: ids the
    // tokenizer has room for below vocab_size keep it)
    const int adds_thoughts = quietstar && c.start_thought_id < 0;
    if (adds_thoughts) {
        c.start_thought_id = c.vocab_size;
        c.end_thought_id = c.vocab_size + 1;
        c.vocab_size += 2;
    }
    const ParamCounts pc = count_params(&c);
    ModelConfig one = c;
    one.num_hidden_layers = 1;
    const double total = pc.total;
    const size_t xb = strcmp(precision, "bf16") ? 4 : 2;
    const int sharded = zero && world > 1;
    // Per GPU: the working weights and gradients are whole on every rank; the fp32 master (bf16 only) and
    // the moments are divided by the ranks under ZeRO-1 (the largest shard: common/partition.h's split).
    const Plan plan = {&c, &one, &qc, quietstar, recompute, world, zero, seq, xb, xb == 2 && !bf16_weights, bf16_weights, total,
                       sharded ? ceil(total / world) : total, world > 1 && xb == 2 && !strcmp(grad_reduce, "fp32")};
    const StepMemory s = step_memory(&plan, batch);

    char b1[32];
    printf("config: %s\n", config);
    printf("  layers %d, hidden %d, intermediate %d, heads %d (kv %d, head_dim %d), vocab %d, %s embeddings\n",
           c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads,
           c.head_dim, c.vocab_size, c.tie_word_embeddings ? "tied" : "untied");
    char n1[32], n2[32], n3[32], n4[32], n5[32];
    printf(total < 1e15 ? "parameters: %s (%.2f M)\n" : "parameters: %s (%.4g M)\n", count(total, n1, sizeof n1),
           total / 1e6);
    printf("  embedding %s, lm_head %s, attention %s, mlp %s, norms %s\n", count(pc.embed, n1, sizeof n1),
           count(pc.head, n2, sizeof n2), count(pc.attn, n3, sizeof n3), count(pc.mlp, n4, sizeof n4),
           count(pc.norms, n5, sizeof n5));
    if (pc.thought)
        printf("  Quiet-STaR: start/end thought embeddings and mixing head %s\n", count(pc.thought, n1, sizeof n1));
    printf("training step memory per GPU at micro-batch %d x seq %d, %s%s%s%s:\n", batch, seq, precision,
           sharded ? xsprintf(", ZeRO-1 over %d ranks", world) : world > 1 ? xsprintf(", %d ranks", world) : "",
           recompute ? ", MLP activations recomputed" : "",
           !quietstar ? ""
           : recompute >= 2 ? xsprintf(", Quiet-STaR: %d passes, %d forwards each rerun before its backward (the "
                                       "inputs and K/V kept)", qc.n_passes, qc.n_ahead + qc.n_ahead_talk - 1)
                            : xsprintf(", Quiet-STaR: %d passes, %d forwards of every row kept for the backward",
                                       qc.n_passes, qc.n_ahead + qc.n_ahead_talk - 1));
    printf("  weights     %s%s\n", human(s.weights, b1, sizeof b1),
           xb == 2 && bf16_weights ? " (bf16, no master: --bf16-weights)" : xb == 4 ? "" : " (bf16 working copy)");
    if (s.master) printf("  master      %s (fp32)\n", human(s.master, b1, sizeof b1));
    printf("  gradients   %s\n", human(s.grads, b1, sizeof b1));
    if (s.grad_copy)
        printf("  fp32 grads  %s (--grad-reduce fp32: the sums' fp32 copy)\n", human(s.grad_copy, b1, sizeof b1));
    printf("  AdamW m, v  %s%s\n", human(s.moments, b1, sizeof b1),
           !bf16_weights ? "" : xb == 2 ? " (bf16)" : " (fp32 storage holding bf16 values)");
    printf("  activations %s\n", human(s.act, b1, sizeof b1));
    printf("  workspace   %s (cuBLASLt)\n", human(s.work, b1, sizeof b1));
    printf("  scratch     %s (kernels' own: attention backward statistics, RMSNorm backward partials, embedding "
           "sort)\n", human(s.scratch, b1, sizeof b1));
    if (s.nccl)
        printf("  NCCL        %s (%s)\n", human(s.nccl, b1, sizeof b1),
               plan.zero ? "staging of the host arrays a ZeRO-1 checkpoint gathers, and a scalar" : "a scalar");
    printf("  step        %s GiB\n", gib(s.total, b1, sizeof b1));
    // The start of the run never exceeds the step: the optimizer state is made sharded
    // (model_create_shard), and adding the thought tokens frees the base model's device state before it
    // creates the grown one (cli/cmd_train.c).
    printf("per-GPU total: %s GiB\n", gib(s.total, b1, sizeof b1));
    if (budget_gib > 0) {
        const double budget = budget_gib * 1073741824.0;
        int fit = 0;
        for (int b = 1; b <= 1 << 16; b *= 2)  // doubling, then binary search below the first miss
            if (step_memory(&plan, b).total <= budget) fit = b;
            else break;
        for (int step = fit / 2; fit && step > 0; step /= 2)
            if (step_memory(&plan, fit + step).total <= budget) fit += step;
        printf("largest micro-batch within %.1f GiB: %d\n", budget_gib, fit);
    }
    return 0;
}
