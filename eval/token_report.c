/*
 * `qstar eval --token-report OUT.html`: the page that shows where a Quiet-STaR model's thoughts help
 * (token_report.h describes what it holds). eval hands over each evaluated window: its tokens, each
 * slot's NLL without and with the thought, and the thought sampled at that slot; this file keeps
 * them, turns tokens into the text pieces they cover (decoding growing prefixes, so that decoders
 * that strip or merge at the start, and byte-fallback characters split over several tokens, come out
 * as in the decoded text), and writes one HTML file with nothing to fetch. The change of a token's
 * log-probability is Δ = log p_with − log p_without = NLL_without − NLL_with, in nats.
 */
#include "eval/token_report.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "common/util.h"

// Changes smaller than this are float rounding, not the thought: counted as unchanged.
#define UNCHANGED_NATS 1e-4f
// The colour and histogram scales never go below this, so an untrained mixing head (w near 0, all
// changes tiny) reads as "no effect" instead of its rounding noise drawn at full colour.
#define MIN_SCALE_NATS 0.005f

struct TokenReport {
    int seq, thought_len, n_windows, cap;
    int32_t* ids;      // (n_windows, seq)
    int32_t* answer;   // (n_windows, seq): 0/1
    int has_answer;
    float *base, *talk;  // (n_windows, seq): slot i predicts ids[i+1]
    int* scored;         // (n_windows, seq)
    int32_t* thoughts;   // (n_windows, seq, thought_len)
};

TokenReport* token_report_create(int seq, int thought_len) {
    TokenReport* r = xcalloc(1, sizeof *r);
    r->seq = seq;
    r->thought_len = thought_len > 0 ? thought_len : 0;
    return r;
}

void token_report_free(TokenReport* r) {
    if (!r) return;
    free(r->ids);
    free(r->answer);
    free(r->base);
    free(r->talk);
    free(r->scored);
    free(r->thoughts);
    free(r);
}

void token_report_add_window(TokenReport* r, const int32_t* ids, const float* base_nll, const float* talk_nll,
                             const int32_t* thoughts, const int* scored, const int32_t* answer) {
    if (r->n_windows == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        size_t n = (size_t)r->cap * r->seq;
        r->ids = xrealloc(r->ids, n, sizeof(int32_t));
        r->answer = xrealloc(r->answer, n, sizeof(int32_t));
        r->base = xrealloc(r->base, n, sizeof(float));
        r->talk = xrealloc(r->talk, n, sizeof(float));
        r->scored = xrealloc(r->scored, n, sizeof(int));
        r->thoughts = xrealloc(r->thoughts, n * (r->thought_len ? r->thought_len : 1), sizeof(int32_t));
    }
    const size_t o = (size_t)r->n_windows * r->seq, S = (size_t)r->seq;
    memcpy(r->ids + o, ids, S * sizeof(int32_t));
    if (answer) {
        memcpy(r->answer + o, answer, S * sizeof(int32_t));
        r->has_answer = 1;
    } else {
        memset(r->answer + o, 0, S * sizeof(int32_t));
    }
    memcpy(r->base + o, base_nll, S * sizeof(float));
    memcpy(r->talk + o, talk_nll, S * sizeof(float));
    for (size_t i = 0; i < S; i++)  // the last slot predicts past the window: never scored
        r->scored[o + i] = scored[i] && i + 1 < S && isfinite(base_nll[i]) && isfinite(talk_nll[i]);
    memcpy(r->thoughts + o * r->thought_len, thoughts, S * r->thought_len * sizeof(int32_t));
    r->n_windows++;
}

// ---------------------------------------------------------------------------------------------
// HTML escaping.
// Length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there are not one.
static int utf8_len(const unsigned char* s, size_t n) {
    unsigned c = s[0];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || (size_t)len > n) return 0;
    for (int k = 1; k < len; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    unsigned cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; k++) cp = (cp << 6) | (s[k] & 0x3F);
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;  // overlong, out of range or a surrogate
    return len;
}

enum { WS_KEEP, WS_SHOW_NEWLINE, WS_SHOW_ALL };

// Text as HTML element or attribute content: &, <, >, " and ' escaped, other control characters
// and invalid UTF-8 as U+FFFD. ws: WS_SHOW_NEWLINE marks a newline with a faint ↵ before it (so a
// line break stays visible and hoverable); WS_SHOW_ALL draws space, newline and tab as ␣ ↵ →.
static void esc(StrBuf* b, const char* text, size_t n, int ws) {
    const unsigned char* s = (const unsigned char*)text;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c == '&') sb_puts(b, "&amp;");
        else if (c == '<') sb_puts(b, "&lt;");
        else if (c == '>') sb_puts(b, "&gt;");
        else if (c == '"') sb_puts(b, "&quot;");
        else if (c == '\'') sb_puts(b, "&#39;");
        else if (c == '\n' && ws == WS_SHOW_NEWLINE) sb_puts(b, "<span class=\"nl\">\xe2\x86\xb5</span>\n");
        else if (c == '\n' && ws == WS_SHOW_ALL) sb_puts(b, "\xe2\x86\xb5");
        else if (c == ' ' && ws == WS_SHOW_ALL) sb_puts(b, "\xe2\x90\xa3");
        else if (c == '\t' && ws == WS_SHOW_ALL) sb_puts(b, "\xe2\x86\x92");
        else if (c == '\n' || c == '\t') sb_putn(b, (const char*)s + i, 1);
        else if (c < 0x20 || c == 0x7F) sb_puts(b, "\xef\xbf\xbd");
        else {
            int len = utf8_len(s + i, n - i);
            if (len == 0) {
                sb_puts(b, "\xef\xbf\xbd");
                i++;
                continue;
            }
            sb_putn(b, (const char*)s + i, (size_t)len);
            i += (size_t)len;
            continue;
        }
        i++;
    }
}
static void esc_str(StrBuf* b, const char* s, int ws) { esc(b, s, strlen(s), ws); }

// ---------------------------------------------------------------------------------------------
// Decoding.
static char* decode_ids(const Tokenizer* tok, const int32_t* ids, int n, size_t* len) {
    uint32_t* u = xmalloc(sizeof(uint32_t) * (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < n; i++) u[i] = (uint32_t)ids[i];
    char* text = tok_decode(tok, u, (size_t)n, 0, len);
    free(u);
    return text;
}

// The text piece of each token of a window: what decoding ids[0..j] adds to decoding ids[0..j-1].
static void window_pieces(const Tokenizer* tok, const int32_t* ids, int seq, char** pieces) {
    char* prev = xstrdup("");
    size_t prev_len = 0;
    for (int j = 0; j < seq; j++) {
        size_t len;
        char* cur = decode_ids(tok, ids, j + 1, &len);
        size_t common = 0;
        while (common < prev_len && common < len && prev[common] == cur[common]) common++;
        // a byte-fallback character completes here: the earlier pieces showed its bytes as U+FFFD;
        // this piece then holds the whole character (the page repeats at most a few bytes)
        pieces[j] = xmalloc(len - common + 1);
        memcpy(pieces[j], cur + common, len - common);
        pieces[j][len - common] = 0;
        free(prev);
        prev = cur;
        prev_len = len;
    }
    free(prev);
}

// ---------------------------------------------------------------------------------------------
// The page.
typedef struct {
    float d;
    size_t at;  // window * seq + slot
} Occ;

static int occ_desc(const void* a, const void* b) {
    const Occ *x = a, *y = b;
    if (x->d != y->d) return x->d < y->d ? 1 : -1;
    return x->at < y->at ? -1 : x->at > y->at;
}

static int float_asc(const void* a, const void* b) {
    float x = *(const float*)a, y = *(const float*)b;
    return (x > y) - (x < y);
}

typedef struct {
    int32_t id;
    int count;
    double sum_d, sum_pb, sum_pt;
} TypeAgg;

typedef struct {
    int32_t id;
    size_t at;
} IdAt;

static int id_asc(const void* a, const void* b) {
    const IdAt *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

static int type_desc(const void* a, const void* b) {
    const TypeAgg *x = a, *y = b;
    double mx = x->sum_d / x->count, my = y->sum_d / y->count;
    if (mx != my) return mx < my ? 1 : -1;
    return x->id - y->id;
}

static const char* CSS =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1100px;"
    "color:#1a1a1a;padding:0 16px}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}"
    ".meta{color:#555;margin:0 0 12px}table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;"
    "border-bottom:1px solid #e3e3e3;text-align:left;vertical-align:top}th{background:#f4f4f4}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}code{font:13px/1.3 ui-monospace,Menlo,Consolas,monospace;"
    "background:#f3f3f3;padding:0 3px;border-radius:3px}.text{font:14px/1.9 ui-monospace,Menlo,Consolas,monospace;"
    "white-space:pre-wrap;word-break:break-word;border:1px solid #ddd;border-radius:6px;padding:12px;background:#fff}"
    ".t{border-radius:2px;cursor:default}.t:hover{outline:2px solid #222}.u{color:#999}"
    ".a{text-decoration:underline;text-decoration-color:#1f77b4;text-decoration-thickness:2px}"
    ".nl{color:#bbb}.w{display:block;color:#888;font:11px system-ui,sans-serif;margin:10px 0 2px;"
    "border-top:1px dashed #ccc;padding-top:4px}.w:first-child{margin-top:0;border-top:0;padding-top:0}"
    ".ctx{color:#777}.th{color:#6a3d9a}.legend span{display:inline-block;padding:1px 8px;margin-right:4px;"
    "border-radius:2px}\n";

// Background of a token whose log-probability changed by d (scale: the change drawn at full colour).
static void token_colour(StrBuf* b, float d, float scale) {
    float a = fabsf(d) / scale;
    if (a > 1) a = 1;
    a *= 0.85f;
    if (d >= 0) sb_printf(b, "background:rgba(44,160,44,%.3f)", a);
    else sb_printf(b, "background:rgba(214,39,40,%.3f)", a);
}

static void histogram_svg(StrBuf* b, const float* d, size_t n, float range) {
    enum { NB = 41 };
    int counts[NB] = {0};
    for (size_t i = 0; i < n; i++) {
        int k = (int)floorf((d[i] + range) / (2 * range) * NB);
        counts[k < 0 ? 0 : k >= NB ? NB - 1 : k]++;
    }
    int cmax = 1;
    for (int k = 0; k < NB; k++) cmax = counts[k] > cmax ? counts[k] : cmax;
    const int W = 760, H = 250, x0 = 60, y0 = 20, pw = W - x0 - 20, ph = H - y0 - 50;
    sb_printf(b, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "role=\"img\" aria-label=\"histogram of per-token log-probability changes\" "
            "font-family=\"system-ui,sans-serif\" font-size=\"11\">\n", W, H, W, H);
    sb_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" stroke=\"#ccc\"/>\n", x0, y0, pw, ph);
    for (int k = 0; k < NB; k++) {
        double bh = (double)counts[k] / cmax * (ph - 4);
        double bx = x0 + (double)k * pw / NB;
        double centre = -range + (k + 0.5) * 2 * range / NB;
        const char* fill = k == NB / 2 ? "#999999" : centre > 0 ? "#2ca02c" : "#d62728";
        sb_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>%d tokens</title></rect>\n",
             bx + 0.5, y0 + ph - bh, (double)pw / NB - 1, bh, fill, counts[k]);
    }
    for (int t = -2; t <= 2; t++) {
        double x = x0 + pw / 2.0 + t * pw / 4.0;
        sb_printf(b, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#555\"/>", x, y0 + ph, x, y0 + ph + 5);
        sb_printf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%+.3g</text>\n", x, y0 + ph + 18, t * range / 2);
    }
    sb_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">change of log-probability with the thought, nats "
            "(left: the thought hurt, right: it helped; the edge bars also count what lies beyond)</text>\n",
         x0 + pw / 2, H - 8);
    sb_printf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">0</text>\n",
         x0 - 6, y0 + 10, cmax, x0 - 6, y0 + ph);
    sb_printf(b, "<text x=\"14\" y=\"%d\" transform=\"rotate(-90 14 %d)\" text-anchor=\"middle\">tokens</text>\n",
         y0 + ph / 2, y0 + ph / 2);
    sb_puts(b, "</svg>\n");
}

static void thought_text(StrBuf* b, const TokenReport* r, const Tokenizer* tok, size_t at, int ws) {
    if (r->thought_len == 0) return;
    size_t len;
    char* t = decode_ids(tok, r->thoughts + at * r->thought_len, r->thought_len, &len);
    esc(b, t, len, ws);
    free(t);
}

static void occurrence_table(StrBuf* b, const TokenReport* r, const Tokenizer* tok, char** pieces, const Occ* occ,
                             size_t n) {
    sb_puts(b, "<table><tr><th>#</th><th>context</th><th>token</th><th>thought before it</th>"
             "<th>p without</th><th>p with</th><th>&Delta; log p</th></tr>\n");
    for (size_t k = 0; k < n; k++) {
        const size_t at = occ[k].at, w = at / r->seq, i = at % r->seq;
        sb_printf(b, "<tr><td class=\"n\">%zu</td><td><code class=\"ctx\">", k + 1);
        for (size_t j = i >= 7 ? i - 7 : 0; j <= i; j++) esc_str(b, pieces[w * r->seq + j], WS_SHOW_ALL);
        sb_puts(b, "</code></td><td><code>");
        esc_str(b, pieces[at + 1], WS_SHOW_ALL);
        sb_puts(b, "</code></td><td><code class=\"th\">");
        thought_text(b, r, tok, at, WS_SHOW_ALL);
        sb_printf(b, "</code></td><td class=\"n\">%.3f</td><td class=\"n\">%.3f</td><td class=\"n\">%+.3f</td></tr>\n",
             exp(-r->base[at]), exp(-r->talk[at]), occ[k].d);
    }
    sb_puts(b, "</table>\n");
}

void token_report_write(const TokenReport* r, const Tokenizer* tok, const char* path, const TokenReportInfo* info) {
    const size_t total = (size_t)r->n_windows * r->seq;
    char** pieces = xcalloc(total ? total : 1, sizeof(char*));
    for (int w = 0; w < r->n_windows; w++) window_pieces(tok, r->ids + (size_t)w * r->seq, r->seq, pieces + (size_t)w * r->seq);

    // every scored slot: its change, and the summary numbers
    Occ* occ = xmalloc(sizeof(Occ) * (total ? total : 1));
    float* absd = xmalloc(sizeof(float) * (total ? total : 1));
    float* dvals = xmalloc(sizeof(float) * (total ? total : 1));
    size_t n = 0, helped = 0, hurt = 0, n_ans = 0;
    double sum_b = 0, sum_t = 0, sum_ans = 0;
    for (size_t at = 0; at < total; at++) {
        if (!r->scored[at]) continue;
        float d = r->base[at] - r->talk[at];
        occ[n] = (Occ){d, at};
        absd[n] = fabsf(d);
        dvals[n] = d;
        n++;
        sum_b += r->base[at];
        sum_t += r->talk[at];
        helped += d > UNCHANGED_NATS;
        hurt += d < -UNCHANGED_NATS;
        if (r->answer[at + 1]) {
            n_ans++;
            sum_ans += d;
        }
    }
    qsort(absd, n, sizeof(float), float_asc);
    float scale = n ? absd[(size_t)(0.95 * (double)(n - 1))] : 1.0f;
    float range = n ? absd[(size_t)(0.995 * (double)(n - 1))] : 1.0f;
    if (!(scale > MIN_SCALE_NATS)) scale = MIN_SCALE_NATS;
    if (!(range > MIN_SCALE_NATS)) range = MIN_SCALE_NATS;

    StrBuf b = {0};
    sb_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
              "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>qstar token report: ");
    esc_str(&b, info->ckpt, WS_KEEP);
    sb_printf(&b, "</title>\n<style>%s</style>\n</head>\n<body>\n", CSS);
    sb_puts(&b, "<h1>Where thinking helps</h1>\n<p class=\"meta\">checkpoint <code>");
    esc_str(&b, info->ckpt, WS_KEEP);
    sb_puts(&b, "</code> on <code>");
    esc_str(&b, info->data, WS_KEEP);
    sb_printf(&b, "</code>: %zu tokens scored in %d windows of %d; before each token the model thinks %d sampled tokens "
             "(n_ahead %d, seed %d) and a mixing head blends the prediction after the thought with the one "
             "without it. &Delta; = log p(token | with thought) &minus; log p(token | without), in nats.</p>\n",
         n, r->n_windows, r->seq, r->thought_len, info->n_ahead, info->seed);

    sb_puts(&b, "<table>\n");
    sb_printf(&b, "<tr><td>mean NLL without thoughts</td><td class=\"n\">%.4f</td></tr>\n", n ? sum_b / n : NAN);
    sb_printf(&b, "<tr><td>mean NLL with thoughts</td><td class=\"n\">%.4f</td></tr>\n", n ? sum_t / n : NAN);
    sb_printf(&b, "<tr><td>mean &Delta; (positive: thoughts help)</td><td class=\"n\">%+.4f</td></tr>\n",
         n ? (sum_b - sum_t) / n : NAN);
    sb_printf(&b, "<tr><td>tokens helped / hurt / unchanged (|&Delta;| &lt; %g)</td>", UNCHANGED_NATS);
    sb_printf(&b, "<td class=\"n\">%.1f%% / %.1f%% / %.1f%%</td></tr>\n",
         n ? 100.0 * helped / n : 0.0, n ? 100.0 * hurt / n : 0.0, n ? 100.0 * (n - helped - hurt) / n : 0.0);
    if (r->has_answer)
        sb_printf(&b, "<tr><td>mean &Delta; on the %zu answer tokens (underlined below)</td><td class=\"n\">%+.4f</td></tr>\n",
             n_ans, n_ans ? sum_ans / n_ans : NAN);
    sb_puts(&b, "</table>\n");

    sb_puts(&b, "<h2>Distribution of the change per token</h2>\n");
    histogram_svg(&b, dvals, n, range);

    // the text
    const int max_tokens = info->max_text_tokens > 0 ? info->max_text_tokens : 2048;
    int shown = 0, windows_shown = 0;
    sb_puts(&b, "<h2>Held-out text</h2>\n<p class=\"legend\">");
    sb_printf(&b, "<span style=\"background:rgba(214,39,40,0.85)\">thought hurt (&Delta; &le; &minus;%.3g)</span>", scale);
    sb_puts(&b, "<span style=\"background:rgba(214,39,40,0.3)\">&nbsp;</span><span style=\"border:1px solid #ddd\">"
              "unchanged</span><span style=\"background:rgba(44,160,44,0.3)\">&nbsp;</span>");
    sb_printf(&b, "<span style=\"background:rgba(44,160,44,0.85)\">thought helped (&Delta; &ge; +%.3g)</span>", scale);
    sb_puts(&b, " Hover a token for the thought sampled before it.</p>\n<div class=\"text\">");
    for (int w = 0; w < r->n_windows && shown < max_tokens; w++, windows_shown++) {
        sb_printf(&b, "<span class=\"w\">window %d</span>", w + 1);
        for (int j = 0; j < r->seq && shown < max_tokens; j++, shown++) {
            const size_t at = (size_t)w * r->seq + j;
            const int ans = r->answer[at] != 0;
            if (j == 0 || !r->scored[at - 1]) {
                sb_printf(&b, "<span class=\"t u%s\" title=\"not scored (no prediction inside the window)\">",
                     ans ? " a" : "");
                esc_str(&b, pieces[at], WS_SHOW_NEWLINE);
                sb_puts(&b, "</span>");
                continue;
            }
            const size_t s = at - 1;  // the slot that predicts this token
            const float d = r->base[s] - r->talk[s];
            sb_printf(&b, "<span class=\"t%s\" style=\"", ans ? " a" : "");
            token_colour(&b, d, scale);
            sb_printf(&b, "\" title=\"&#916; log p %+.3f (p %.3f without, %.3f with)&#10;thought: ", d, exp(-r->base[s]),
                 exp(-r->talk[s]));
            thought_text(&b, r, tok, s, WS_KEEP);
            sb_puts(&b, "\">");
            esc_str(&b, pieces[at], WS_SHOW_NEWLINE);
            sb_puts(&b, "</span>");
        }
    }
    sb_puts(&b, "</div>\n");
    if (windows_shown < r->n_windows || shown < r->n_windows * r->seq)
        sb_printf(&b, "<p class=\"meta\">The first %d tokens are shown (--report-tokens); the histogram and the tables "
                 "use all %zu scored tokens.</p>\n", shown, n);

    // tables
    qsort(occ, n, sizeof(Occ), occ_desc);
    const size_t top = n < 25 ? n : 25;
    sb_puts(&b, "<h2>Tokens helped most</h2>\n");
    occurrence_table(&b, r, tok, pieces, occ, top);
    sb_puts(&b, "<h2>Tokens hurt most</h2>\n");
    {
        const size_t k = n < 10 ? n : 10;
        Occ* worst = xmalloc(sizeof(Occ) * (k ? k : 1));
        for (size_t i = 0; i < k; i++) worst[i] = occ[n - 1 - i];
        occurrence_table(&b, r, tok, pieces, worst, k);
        free(worst);
    }

    // token types, by mean change over their occurrences
    TypeAgg* types = xcalloc(n ? n : 1, sizeof(TypeAgg));
    size_t n_types = 0;
    {
        IdAt* by_id = xmalloc(sizeof(IdAt) * (n ? n : 1));
        for (size_t i = 0; i < n; i++) by_id[i] = (IdAt){r->ids[occ[i].at + 1], occ[i].at};
        qsort(by_id, n, sizeof(IdAt), id_asc);
        for (size_t i = 0; i < n; i++) {
            if (i == 0 || by_id[i].id != by_id[i - 1].id) types[n_types++] = (TypeAgg){by_id[i].id, 0, 0, 0, 0};
            TypeAgg* t = &types[n_types - 1];
            const size_t at = by_id[i].at;
            t->count++;
            t->sum_d += r->base[at] - r->talk[at];
            t->sum_pb += exp(-r->base[at]);
            t->sum_pt += exp(-r->talk[at]);
        }
        free(by_id);
    }
    size_t kept = 0;
    for (size_t t = 0; t < n_types; t++)
        if (types[t].count >= 3) types[kept++] = types[t];
    qsort(types, kept, sizeof(TypeAgg), type_desc);
    sb_puts(&b, "<h2>Token types helped most on average</h2>\n<p class=\"meta\">Tokens that occur at least 3 times "
              "among the scored ones, by mean &Delta;.</p>\n<table><tr><th>token</th><th>occurrences</th>"
              "<th>mean p without</th><th>mean p with</th><th>mean &Delta; log p</th></tr>\n");
    for (size_t t = 0; t < kept && t < 20; t++) {
        size_t len;
        char* s = decode_ids(tok, &types[t].id, 1, &len);
        sb_puts(&b, "<tr><td><code>");
        esc(&b, s, len, WS_SHOW_ALL);
        free(s);
        sb_printf(&b, "</code></td><td class=\"n\">%d</td><td class=\"n\">%.3f</td><td class=\"n\">%.3f</td>"
                 "<td class=\"n\">%+.3f</td></tr>\n", types[t].count, types[t].sum_pb / types[t].count,
             types[t].sum_pt / types[t].count, types[t].sum_d / types[t].count);
    }
    sb_puts(&b, "</table>\n</body>\n</html>\n");

    write_file_atomic(path, b.s, b.n);
    free(b.s);
    free(types);
    free(occ);
    free(absd);
    free(dvals);
    for (size_t i = 0; i < total; i++) free(pieces[i]);
    free(pieces);
}
