/*
 * Per-token log-probabilities of a checkpoint on a token sequence, for comparisons with other
 * implementations (tests/test_smollm2.sh sets them beside transformers'). Reads whitespace-separated
 * token ids and prints, for each token after the first, log p(token | the tokens before it) from one
 * causal forward on the CPU backend, twice on one line: as qstar's loss computes it (the fused
 * cross-entropy op, which sums exponentials in fp32 with a fast exp) and as an exact log-softmax of
 * the same fp32 logits in double precision, which isolates the model's numerics from the loss op's.
 *
 *   tool_logprobs CKPT_DIR TOKENS.txt
 */
// Backend buffers are read and written here as fp32 arrays: this file runs on fp32 tables (floatX =
// float, kernels/ops.h); the bf16 tables have their own tests (tests/test_bf16.c).
#define QSTAR_FLOATX float
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/util.h"
#include "model/model.h"
#include "io/weights.h"

int main(int argc, char** argv) {
    if (argc != 3) fatal("usage: tool_logprobs CKPT_DIR TOKENS.txt");
    size_t len;
    char* text = read_file_or_die(argv[2], &len);
    int n = 0, cap = 256;
    int32_t* tokens = xmalloc(sizeof(int32_t) * cap);
    for (char *p = text, *end; *p; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p) {
            while (*end == ' ' || *end == '\n' || *end == '\t' || *end == '\r') end++;
            if (end == p) fatal("%s: not a token id at byte %zu", argv[2], (size_t)(p - text));
            continue;
        }
        if (n == cap) tokens = xrealloc(tokens, (size_t)(cap *= 2), sizeof(int32_t));
        tokens[n++] = (int32_t)v;
    }
    if (n < 2) fatal("%s: need at least two tokens", argv[2]);
    ModelConfig cfg;
    config_load(&cfg, argv[1]);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= cfg.vocab_size) fatal("%s: token %d is outside the vocabulary", argv[2], tokens[i]);
    Model m;
    model_create(&m, &cfg, backend_get("cpu"));
    model_load_weights(&m, argv[1]);
    int32_t* targets = xmalloc(sizeof(int32_t) * n);
    for (int i = 0; i < n; i++) targets[i] = i + 1 < n ? tokens[i + 1] : QSTAR_IGNORE_INDEX;
    model_alloc_activations(&m, 1, n);
    model_forward(&m, tokens, targets, NULL);
    float* losses = xmalloc(sizeof(float) * n);
    m.be->download(losses, m.acts.losses, sizeof(float) * n);
    const int V = cfg.vocab_size;
    float* row = xmalloc(sizeof(float) * V);
    for (int i = 0; i + 1 < n; i++) {
        m.be->download(row, m.acts.logits + (size_t)i * vocab_padded(&cfg), sizeof(float) * V);
        double mx = row[0], sum = 0;
        for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < V; v++) sum += exp((double)row[v] - mx);
        printf("%.9g %.9g\n", -losses[i], (double)row[targets[i]] - mx - log(sum));
    }
    free(row);
    free(losses);
    free(targets);
    free(tokens);
    free(text);
    model_destroy(&m);
    return 0;
}
