/*
 * `qstar info`: what a model costs before it is run: parameters by kind, and the memory a training
 * step needs at a batch and sequence length (weights, gradients, AdamW moments, activations),
 * computed from the same size tables the model allocates with.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "host/args.h"
#include "host/commands.h"
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

int cmd_info(int argc, char** argv) {
    const char *config = NULL, *mode = "lm";
    QuietStarConfig qc = quietstar_reference_config();
    const char* precision = "fp32";
    int batch = 4, seq = 256, zero = 0, world = 1, recompute = 0;
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
        {"zero", ARG_INT, &zero, "1: ZeRO-1 (master weights and AdamW moments sharded over the ranks)"},
        {"world-size", ARG_INT, &world, "data-parallel ranks (GPUs)"},
        {"recompute", ARG_INT, &recompute, "0: keep every activation; 1: recompute each layer's MLP activations"},
        {"gpu-memory", ARG_FLOAT, &budget_gib, "GiB per GPU: also print the largest micro-batch that fits"},
    };
    args_parse(argc, argv, specs, sizeof specs / sizeof *specs,
               "usage: qstar info --config C [--batch B --seq L --mode lm|quietstar --precision fp32|bf16\n"
               "                  --zero 0|1 --world-size W --recompute 0|1 --gpu-memory GIB]\n\nParameter count and memory per GPU.");
    if (strcmp(precision, "fp32") && strcmp(precision, "bf16")) fatal("info: --precision must be fp32 or bf16");
    if (zero != 0 && zero != 1) fatal("info: --zero must be 0 or 1");
    if (world < 1) fatal("info: --world-size must be at least 1");
    if (recompute != 0 && recompute != 1) fatal("info: --recompute must be 0 or 1");
    if (strcmp(mode, "lm") && strcmp(mode, "quietstar")) fatal("info: --mode must be lm or quietstar");
    const int quietstar = !strcmp(mode, "quietstar");
    if (!config) fatal("info: --config is required");
    if (batch <= 0 || seq <= 0) fatal("info: --batch and --seq must be positive");
    if (quietstar && (qc.n_ahead < 4 || qc.n_ahead > 1 << 20 || qc.n_ahead_talk < 1 || qc.n_ahead_talk > QS_MAX_TALK ||
                      qc.n_passes < 1))
        fatal("info: need 4 <= --n-ahead <= 2^20, 1 <= --n-ahead-talk <= %d and --n-passes >= 1", QS_MAX_TALK);
    ModelConfig c;
    config_load(&c, config);
    if (quietstar && c.start_thought_id < 0) {  // training adds the two thought tokens and the mixing head
        c.start_thought_id = c.vocab_size;
        c.end_thought_id = c.vocab_size + 1;
        c.vocab_size += 2;
    }

    // Count from the parameter table, built for one layer: every layer has the same tensors, and a
    // table of num_hidden_layers entries would allocate in proportion to a size info only reports.
    // Counts are doubles: exact below 2^53, and sizes of 2e9 multiply past 2^64.
    ModelConfig one = c;
    one.num_hidden_layers = 1;
    Model m;
    model_build_table(&m, &one);
    double embed = 0, head = 0, attn = 0, mlp = 0, norms = 0, thought = 0;
    for (int i = 0; i < m.n_tensors; i++) {
        const ParamTensor* t = &m.tensors[i];
        const int in_layer = !strncmp(t->name, "model.layers.", 13);
        const double n = (double)t->shape[0] * (t->ndim == 2 ? (double)t->shape[1] : 1.0) *
                         (in_layer ? (double)c.num_hidden_layers : 1.0);
        if (!strncmp(t->name, "quietstar.", 10)) thought += n;
        else if (t->ndim == 1) norms += n;
        else if (strstr(t->name, "embed_tokens")) embed += n;
        else if (strstr(t->name, "lm_head")) head += n;
        else if (strstr(t->name, "self_attn")) attn += n;
        else mlp += n;
    }
    model_destroy(&m);
    const double total = embed + head + attn + mlp + norms + thought;
    const size_t xb = strcmp(precision, "bf16") ? 4 : 2;
    const double act = activation_bytes(&c, &one, quietstar, &qc, xb, recompute, batch, seq);
    char b1[32], b2[32], b3[32], b4[32];
    printf("config: %s\n", config);
    printf("  layers %d, hidden %d, intermediate %d, heads %d (kv %d, head_dim %d), vocab %d, %s embeddings\n",
           c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads, c.num_key_value_heads,
           c.head_dim, c.vocab_size, c.tie_word_embeddings ? "tied" : "untied");
    char n1[32], n2[32], n3[32], n4[32], n5[32];
    printf(total < 1e15 ? "parameters: %s (%.2f M)\n" : "parameters: %s (%.4g M)\n", count(total, n1, sizeof n1),
           total / 1e6);
    printf("  embedding %s, lm_head %s, attention %s, mlp %s, norms %s\n", count(embed, n1, sizeof n1),
           count(head, n2, sizeof n2), count(attn, n3, sizeof n3), count(mlp, n4, sizeof n4), count(norms, n5, sizeof n5));
    if (thought) printf("  Quiet-STaR: start/end thought embeddings and mixing head %s\n", count(thought, n1, sizeof n1));
    // Per GPU: the working weights and gradients are whole on every rank; the fp32 master (bf16 only) and
    // the moments are divided by the ranks under ZeRO-1 (the largest shard: common/partition.h's split).
    const double shard = zero && world > 1 ? ceil(total / world) : total;
    const double weights = (double)xb * total, grads = (double)xb * total, master = xb == 4 ? 0 : 4.0 * shard;
    const double moments = 8.0 * shard, work = (double)QSTAR_DEVICE_WORKSPACE_BYTES;
    const double fixed = weights + grads + master + moments + work;
    printf("training step memory per GPU at micro-batch %d x seq %d, %s%s%s:\n", batch, seq, precision,
           zero && world > 1 ? xsprintf(", ZeRO-1 over %d ranks", world) : world > 1 ? xsprintf(", %d ranks", world) : "",
           quietstar ? xsprintf(", Quiet-STaR: %d passes, %d forwards of every row kept for the backward", qc.n_passes,
                                qc.n_ahead + qc.n_ahead_talk - 1)
                     : "");
    printf("  weights     %s%s\n", human(weights, b1, sizeof b1), xb == 4 ? "" : " (bf16 working copy)");
    if (master) printf("  master      %s (fp32)\n", human(master, b1, sizeof b1));
    printf("  gradients   %s\n", human(grads, b2, sizeof b2));
    printf("  AdamW m, v  %s\n", human(moments, b3, sizeof b3));
    printf("  activations %s\n", human(act, b4, sizeof b4));
    printf("  workspace   %s (cuBLASLt)\n", human(work, b1, sizeof b1));
    printf("per-GPU total: %.2f GiB\n", (fixed + act) / 1073741824.0);
    if (budget_gib > 0) {
        int fit = 0;
        for (int b = 1; b <= 1 << 16; b *= 2)  // doubling, then binary search below the first miss
            if (fixed + activation_bytes(&c, &one, quietstar, &qc, xb, recompute, b, seq) <= budget_gib * 1073741824.0) fit = b;
            else break;
        for (int step = fit / 2; fit && step > 0; step /= 2)
            if (fixed + activation_bytes(&c, &one, quietstar, &qc, xb, recompute, fit + step, seq) <= budget_gib * 1073741824.0)
                fit += step;
        printf("largest micro-batch within %.1f GiB: %d\n", budget_gib, fit);
    }
    return 0;
}
