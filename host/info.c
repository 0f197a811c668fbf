/*
 * `qstar info`: what a model costs before it is run: parameters by kind, and the memory a training
 * step needs at a batch and sequence length (weights, gradients, AdamW moments, activations),
 * computed from the same size tables the model allocates with.
 */
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

int cmd_info(int argc, char** argv) {
    const char *config = NULL, *mode = "lm";
    QuietStarConfig qc = quietstar_reference_config();
    int batch = 4, seq = 256;
    ArgSpec specs[] = {
        {"config", ARG_STR, &config, "model config.json (or a checkpoint directory)"},
        {"batch", ARG_INT, &batch, "sequences per micro-batch"},
        {"seq", ARG_INT, &seq, "tokens per sequence"},
        {"mode", ARG_STR, &mode, "lm or quietstar (activations of every thought step)"},
        {"n-ahead", ARG_INT, &qc.n_ahead, "quietstar: thought length incl. start and end"},
        {"n-ahead-talk", ARG_INT, &qc.n_ahead_talk, "quietstar: true tokens predicted after a thought"},
        {"n-passes", ARG_INT, &qc.n_passes, "quietstar: thoughts per sequence"},
    };
    args_parse(argc, argv, specs, 7,
               "usage: qstar info --config C [--batch B --seq L --mode lm|quietstar]\n\nParameter count and memory.");
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
    // The activation table is affine in the layer count and linear in batch x seq (up to the 256-byte
    // alignment of each buffer): evaluate it for one token at one and two layers and scale, in
    // doubles. When that estimate is far from 2^64 the exact size_t figure is used instead; it cannot
    // wrap then, as every buffer is a product of factors >= 1 and bounded by the total.
    ModelConfig two = one;
    two.num_hidden_layers = 2;
    double unit[2];
    const ModelConfig* cs[2] = {&one, &two};
    for (int k = 0; k < 2; k++)
        unit[k] = quietstar ? (double)quietstar_activation_bytes(cs[k], &qc, 1, 1)
                            : (double)model_activation_bytes(cs[k], 1, 1, ACT_ALL);
    double act = (unit[0] + (unit[1] - unit[0]) * (c.num_hidden_layers - 1)) * batch * seq;
    if (act < 0x1p60 && (double)batch * qc.n_passes <= 2147483647.0)
        act = quietstar ? (double)quietstar_activation_bytes(&c, &qc, batch, seq)
                        : (double)model_activation_bytes(&c, batch, seq, ACT_ALL);
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
    printf("training step memory at batch %d x seq %d (fp32)%s:\n", batch, seq,
           quietstar ? xsprintf(", Quiet-STaR: %d passes, %d forwards of every row kept for the backward", qc.n_passes,
                                qc.n_ahead + qc.n_ahead_talk - 1)
                     : "");
    printf("  weights     %s\n", human(4.0 * total, b1, sizeof b1));
    printf("  gradients   %s\n", human(4.0 * total, b2, sizeof b2));
    printf("  AdamW m, v  %s\n", human(8.0 * total, b3, sizeof b3));
    printf("  activations %s\n", human(act, b4, sizeof b4));
    printf("  total       %s\n", human(16.0 * total + act, b1, sizeof b1));
    return 0;
}
