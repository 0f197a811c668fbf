/*
 * The token report of `qstar eval --token-report OUT.html`: one self-contained HTML page (inline CSS
 * and SVG, no script, nothing fetched) that shows where a Quiet-STaR model's thoughts help. Held-out
 * text with each token coloured by the change of its log-probability with the thought before it
 * against without (green: the thought helped; red: it hurt), the sampled thought and both
 * probabilities on hover (the title attribute), a histogram of the per-token changes, a summary, and
 * tables of the token occurrences and token types helped most. Every piece of text on the page comes
 * from the data or the tokenizer and is HTML-escaped; invalid UTF-8 becomes U+FFFD.
 */
#ifndef QSTAR_TOKEN_REPORT_H
#define QSTAR_TOKEN_REPORT_H

#include <stdint.h>

#include "text/tokenizer.h"

typedef struct TokenReport TokenReport;

// seq: tokens per window; thought_len: sampled thought tokens before each prediction (n_ahead − 3).
TokenReport* token_report_create(int seq, int thought_len);
void token_report_free(TokenReport* r);

// One window of held-out text: ids (seq) are its tokens; slot i (0 … seq−2) predicts ids[i+1] with
// NLL base_nll[i] without a thought and talk_nll[i] with the thought thoughts[i*thought_len …]
// sampled after ids[i]; scored[i] == 0 leaves slot i out. answer (seq, may be NULL) marks the
// answer tokens among ids.
void token_report_add_window(TokenReport* r, const int32_t* ids, const float* base_nll, const float* talk_nll,
                             const int32_t* thoughts, const int* scored, const int32_t* answer);

typedef struct {
    const char* ckpt;
    const char* data;
    int n_ahead;
    int seed;
    int max_text_tokens;  // tokens of text shown (the histogram and tables use every scored token)
} TokenReportInfo;

// Writes the page atomically; the tokenizer decodes tokens and thoughts.
void token_report_write(const TokenReport* r, const Tokenizer* tok, const char* path, const TokenReportInfo* info);

#endif
