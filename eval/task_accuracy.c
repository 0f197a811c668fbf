/*
 * `qstar eval --task gsm8k|csqa`: accuracy on a benchmark file, by the Quiet-STaR reference's two
 * protocols (docs/quietstar.md §12, §13; the reference's eval_helpers.py and
 * zero-shotcot-eval.py).
 *
 * --metric soft (zero-shot, no generation): each question becomes "Q: {question}\nA:{answer}\n"
 * (GSM8K: the text after the last "####", so " 72"; CSQA: the choices as "(A) …" lines after the
 * question, the answer " X"), encoded with the tokenizer's special tokens, at most --seq tokens (the
 * last ones are kept, so the answer always is: the reference crops a random window, which on these
 * short questions never happens). The answer's tokens are those after the token that completes the
 * last "\nA:" (found as the reference does, by decoding prefixes). Each answer token in the valid set
 * (digits and newline for GSM8K, A–E and newline for CSQA) contributes its probability renormalised
 * over the valid set; a token outside it is skipped; the question's score is the product and the
 * accuracy the mean. The reference hard-codes Mistral's ids; here a valid string's ids are the last
 * token of "A: s" (and, for digits, of "A: 1s": a digit after a digit) under the checkpoint's own
 * tokenizer, when that token spells s (with at most a leading space). For Mistral's tokenizer this
 * gives exactly the reference's lists. One difference: the reference always skips the first token
 * of a numeric answer (Mistral's "▁" before the digits); here it is skipped because it is not a
 * valid token, so a tokenizer with a "▁7"-like token keeps it.
 * A Quiet-STaR checkpoint is scored without thoughts (step 0 of the Quiet-STaR forward) and with
 * them (the mixed prediction after the end token: one pass, one talk token), as `qstar eval` does.
 *
 * --metric cot-maj (GSM8K): "Q: {question}\nA: Let's think step by step." is sampled up to
 * --max-tokens (stopping at EOS, or at a "Q:" or "\n\n\n" in the completion, which is cut there);
 * the text, right-stripped, gets "\nTherefore, the answer (arabic numerals) is" and --answer-tokens
 * more tokens; the vote is the first integer of that answer (commas removed); the question is right
 * when the most frequent vote equals the first integer after "####". --votes samples per question,
 * all through generate_batch (model/generate.h), with thoughts before every token on --thoughts.
 */
#include "eval/task_accuracy.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/args.h"
#include "io/checkpoint.h"
#include "io/jsonl.h"
#include "text/tokenizer.h"
#include "common/util.h"
#include "model/generate.h"
#include "model/model.h"
#include "model/quietstar.h"
#include "io/weights.h"

#define ANSWER_MARKER "\nA:"
#define COT_PROMPT "\nA: Let's think step by step."
#define COT_FINAL "\nTherefore, the answer (arabic numerals) is"

enum { TASK_GSM8K, TASK_CSQA };

typedef struct {
    int line;        // 1-based line in the input file
    char* question;  // GSM8K: the question; CSQA: the stem and the "(A) …" choice lines
    char* answer;    // what follows "\nA:" in the soft prompt (without the final newline)
    char gold[64];   // GSM8K: the gold number's digits (cot-maj); CSQA: the answer letter
} Item;

// ---- answers and votes ----------------------------------------------------------------------------

int eval_first_integer(const char* s, char* out, size_t cap) {
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s)) continue;
        size_t n = 0;
        int leading = 1;
        for (; *s && (isdigit((unsigned char)*s) || *s == ','); s++) {
            if (*s == ',') continue;  // commas are removed before the search
            if (leading && *s == '0') continue;
            leading = 0;
            if (n + 1 < cap) out[n++] = *s;
        }
        if (n == 0 && cap > 1) out[n++] = '0';  // all zeros
        if (cap) out[n] = 0;
        return 1;
    }
    if (cap) out[0] = 0;
    return 0;
}

int eval_majority(const char* const* answers, int n) {
    int best = 0, best_count = 0;
    for (int i = 0; i < n; i++) {
        int seen_before = 0, count = 0;
        for (int j = 0; j < n; j++) {
            const int same = (!answers[i] && !answers[j]) || (answers[i] && answers[j] && !strcmp(answers[i], answers[j]));
            if (!same) continue;
            if (j < i) seen_before = 1;
            count++;
        }
        if (!seen_before && count > best_count) best = i, best_count = count;
    }
    return best;
}

// ---- input files ----------------------------------------------------------------------------------

static const char* json_string(const cJSON* o, const char* key, const char* path, int line, const char* what) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) fatal("%s:%d: no \"%s\" field (%s)", path, line, key, what);
    if (!cJSON_IsString(v)) fatal("%s:%d: \"%s\" is not a string", path, line, key);
    size_t n = strlen(v->valuestring);
    if (tok_utf8_check(v->valuestring, n) != n) fatal("%s:%d: \"%s\" is not valid UTF-8", path, line, key);
    return v->valuestring;
}

static void parse_gsm8k(const cJSON* o, Item* it, const char* path, int line) {
    const char* q = json_string(o, "question", path, line, "GSM8K: question, answer");
    const char* a = json_string(o, "answer", path, line, "GSM8K: question, answer");
    const char* hash = NULL;
    for (const char* p = strstr(a, "####"); p; p = strstr(p + 1, "####")) hash = p;
    if (!hash) fatal("%s:%d: the answer has no \"#### N\" final line", path, line);
    if (!eval_first_integer(hash + 4, it->gold, sizeof it->gold))
        fatal("%s:%d: no number after \"####\" in the answer", path, line);
    it->question = xstrdup(q);
    it->answer = xstrdup(hash + 4);  // the reference's a.split("####")[-1]: " 72"
    size_t n = strlen(it->answer);
    while (n && (it->answer[n - 1] == '\n' || it->answer[n - 1] == '\r')) it->answer[--n] = 0;
}

// CommonsenseQA: the official layout {"answerKey", "question": {"stem", "choices": [{"label", "text"}]}}
// or the flattened one {"answerKey", "question", "choices": {"label": [], "text": []}}.
static void parse_csqa(const cJSON* o, Item* it, const char* path, int line) {
    const cJSON* q = cJSON_GetObjectItemCaseSensitive(o, "question");
    if (!q) fatal("%s:%d: no \"question\" field (CommonsenseQA: question, choices, answerKey)", path, line);
    const char* stem;
    int n_choices;
    const char *labels[26], *texts[26];
    if (cJSON_IsObject(q)) {  // official
        stem = json_string(q, "stem", path, line, "question.stem");
        const cJSON* ch = cJSON_GetObjectItemCaseSensitive(q, "choices");
        if (!ch) fatal("%s:%d: no \"question.choices\" field", path, line);
        if (!cJSON_IsArray(ch)) fatal("%s:%d: \"question.choices\" is not a list", path, line);
        n_choices = cJSON_GetArraySize(ch);
        if (n_choices < 1 || n_choices > 5) fatal("%s:%d: %d choices (expected 1 to 5)", path, line, n_choices);
        for (int i = 0; i < n_choices; i++) {
            const cJSON* c = cJSON_GetArrayItem(ch, i);
            if (!cJSON_IsObject(c)) fatal("%s:%d: question.choices[%d] is not an object", path, line, i);
            labels[i] = json_string(c, "label", path, line, "question.choices[].label");
            texts[i] = json_string(c, "text", path, line, "question.choices[].text");
        }
    } else if (cJSON_IsString(q)) {  // flattened
        stem = json_string(o, "question", path, line, "question");
        const cJSON* ch = cJSON_GetObjectItemCaseSensitive(o, "choices");
        if (!ch) fatal("%s:%d: no \"choices\" field", path, line);
        if (!cJSON_IsObject(ch)) fatal("%s:%d: \"choices\" is not an object with label and text lists", path, line);
        const cJSON* l = cJSON_GetObjectItemCaseSensitive(ch, "label");
        const cJSON* t = cJSON_GetObjectItemCaseSensitive(ch, "text");
        if (!cJSON_IsArray(l) || !cJSON_IsArray(t))
            fatal("%s:%d: \"choices.label\" and \"choices.text\" must be lists", path, line);
        n_choices = cJSON_GetArraySize(l);
        if (cJSON_GetArraySize(t) != n_choices)
            fatal("%s:%d: %d choice labels but %d choice texts", path, line, n_choices, cJSON_GetArraySize(t));
        if (n_choices < 1 || n_choices > 5) fatal("%s:%d: %d choices (expected 1 to 5)", path, line, n_choices);
        for (int i = 0; i < n_choices; i++) {
            const cJSON* a = cJSON_GetArrayItem(l, i);
            const cJSON* b = cJSON_GetArrayItem(t, i);
            if (!cJSON_IsString(a) || !cJSON_IsString(b))
                fatal("%s:%d: choice %d: label and text must be strings", path, line, i);
            labels[i] = a->valuestring;
            texts[i] = b->valuestring;
            size_t n = strlen(texts[i]);
            if (tok_utf8_check(texts[i], n) != n) fatal("%s:%d: choice %d is not valid UTF-8", path, line, i);
        }
    } else {
        fatal("%s:%d: \"question\" is neither an object (official layout) nor a string (flattened)", path, line);
    }
    const char* key = json_string(o, "answerKey", path, line, "the answer's label");
    if (!*key) fatal("%s:%d: \"answerKey\" is empty (an unlabelled split, such as CommonsenseQA's test set?)", path, line);
    int found = 0;
    size_t qlen = strlen(stem) + 1;
    for (int i = 0; i < n_choices; i++) {
        if (strlen(labels[i]) != 1 || labels[i][0] < 'A' || labels[i][0] > 'E')
            fatal("%s:%d: choice label \"%s\" is not one of A-E (the letters the soft metric scores)", path, line,
                  labels[i]);
        for (int j = 0; j < i; j++)
            if (!strcmp(labels[i], labels[j])) fatal("%s:%d: choice label \"%s\" appears twice", path, line, labels[i]);
        if (!strcmp(labels[i], key)) found = 1;
        qlen += strlen(texts[i]) + 6;
    }
    if (!found) fatal("%s:%d: \"answerKey\" \"%s\" is not one of the choices' labels", path, line, key);
    char* s = xmalloc(qlen + 1);
    char* p = s + sprintf(s, "%s", stem);
    for (int i = 0; i < n_choices; i++) p += sprintf(p, "\n(%s) %s", labels[i], texts[i]);
    it->question = s;
    it->answer = xsprintf(" %s", key);
    snprintf(it->gold, sizeof it->gold, "%s", key);
}

static Item* read_items(const char* path, int task, int limit, int* n_out) {
    Jsonl r;
    if (!jsonl_open(&r, path)) fatal("%s: cannot open: %s", path, strerror(errno));
    Item* items = NULL;
    int n = 0, cap = 0;
    while ((limit <= 0 || n < limit) && jsonl_next(&r)) {
        if (!cJSON_IsObject(r.value)) fatal("%s:%d: %s", path, r.line, jsonl_not_object(&r));
        if (n == cap) items = xrealloc(items, (size_t)(cap = cap ? 2 * cap : 256), sizeof(Item));
        Item* it = &items[n++];
        memset(it, 0, sizeof *it);
        it->line = r.line;
        if (task == TASK_GSM8K)
            parse_gsm8k(r.value, it, path, r.line);
        else
            parse_csqa(r.value, it, path, r.line);
    }
    jsonl_close(&r);
    if (n == 0) fatal("%s: no questions", path);
    *n_out = n;
    return items;
}

// ---- progress -------------------------------------------------------------------------------------

typedef struct {
    const char* label;
    int total, done, tty;
    double t0, last;
    int last_done;
} Progress;

static void progress_update(Progress* p, int done, double acc, double thought_acc) {
    p->done = done;
    const double now = now_seconds(), secs = now - p->t0;
    const int final = done == p->total;
    // not a terminal (a log file): a line per ~10% or per 30 s, and the last one
    if (!p->tty && !final && done - p->last_done < (p->total + 9) / 10 && now - p->last < 30) return;
    char extra[64] = "";
    if (!isnan(thought_acc)) snprintf(extra, sizeof extra, ", with thoughts %.4f", thought_acc);
    fprintf(stderr, "%s%s: %d/%d questions, %.2f questions/s, accuracy %.4f%s%s", p->tty ? "\r" : "", p->label, done,
            p->total, secs > 0 ? done / secs : 0.0, acc, extra, p->tty && !final ? "" : "\n");
    fflush(stderr);
    p->last = now;
    p->last_done = done;
}

// ---- soft accuracy --------------------------------------------------------------------------------

typedef struct {
    int32_t* ids;
    int n;
    int* rows;      // positions whose logits predict a scored token
    int32_t* targets;
    int n_scored;
} SoftQuestion;

static size_t count_marker(const char* s) {
    size_t c = 0;
    for (const char* p = strstr(s, ANSWER_MARKER); p; p = strstr(p + strlen(ANSWER_MARKER), ANSWER_MARKER)) c++;
    return c;
}

static int last_token_spelling(const Tokenizer* tok, const char* context, const char* s) {
    TokIds ids = {0};
    tok_encode(tok, context, strlen(context), 0, &ids);
    int id = -1;
    if (ids.n > 0) {
        const uint32_t last = ids.ids[ids.n - 1];
        char* text = tok_decode(tok, &last, 1, 0, NULL);
        const char* t = text;
        if (t[0] == ' ' && strcmp(s, "\n")) t++;  // a leading space belongs to the token ("ĠA")
        if (!strcmp(t, s)) id = (int)last;
        free(text);
    }
    free(ids.ids);
    return id;
}

// The valid answer tokens of the task under this tokenizer (the header comment says how they are found).
static int valid_token_ids(const Tokenizer* tok, int task, int vocab, int* ids, const char* tok_path) {
    int n = 0;
    const char* strs = task == TASK_GSM8K ? "1234567890" : "ABCDE";
    for (const char* c = strs; *c; c++) {
        char s[2] = {*c, 0}, ctx[16];
        int found = 0;
        for (int variant = 0; variant < (task == TASK_GSM8K ? 2 : 1); variant++) {
            snprintf(ctx, sizeof ctx, variant ? "A: 1%s" : "A: %s", s);
            const int id = last_token_spelling(tok, ctx, s);
            if (id < 0) continue;
            found = 1;
            int dup = 0;
            for (int i = 0; i < n; i++) dup |= ids[i] == id;
            if (!dup) ids[n++] = id;
        }
        if (!found) fatal("%s: no token spells \"%s\" after \"A: \" (the soft metric scores it as one token)", tok_path, s);
    }
    const int nl = last_token_spelling(tok, task == TASK_GSM8K ? "A: 1\n" : "A: A\n", "\n");
    if (nl < 0) fatal("%s: no token spells a newline after an answer (the soft metric scores it)", tok_path);
    ids[n++] = nl;
    for (int i = 0; i < n; i++)
        if (ids[i] >= vocab) fatal("%s: answer token %d is outside the model's vocabulary (%d)", tok_path, ids[i], vocab);
    return n;
}

static void soft_prepare(SoftQuestion* sq, const Item* it, const Tokenizer* tok, const int* valid, int n_valid,
                         int seq, int vocab, const char* path) {
    char* text = xsprintf("Q: %s" ANSWER_MARKER "%s\n", it->question, it->answer);
    TokIds ids = {0};
    tok_encode(tok, text, strlen(text), 1, &ids);
    free(text);
    const size_t skip = ids.n > (size_t)seq ? ids.n - (size_t)seq : 0;  // keep the last --seq tokens
    sq->n = (int)(ids.n - skip);
    sq->ids = xmalloc(sizeof(int32_t) * (sq->n > 0 ? sq->n : 1));
    for (int i = 0; i < sq->n; i++) {
        sq->ids[i] = (int32_t)ids.ids[skip + i];
        if (sq->ids[i] >= vocab) fatal("%s:%d: token %d is outside the model's vocabulary", path, it->line, sq->ids[i]);
    }
    char* full = tok_decode(tok, ids.ids + skip, (size_t)sq->n, 0, NULL);
    const size_t c = count_marker(full);
    free(full);
    if (c == 0) fatal("%s:%d: the question is too long: \"\\nA:\" is not in its last %d tokens", path, it->line, seq);
    // as the reference: the largest prefix that lacks the last marker; the token after it completes it
    int i = sq->n - 1;
    for (; i > 0; i--) {
        char* pre = tok_decode(tok, ids.ids + skip, (size_t)i, 0, NULL);
        const size_t ci = count_marker(pre);
        free(pre);
        if (ci < c) break;
    }
    sq->rows = xmalloc(sizeof(int) * (sq->n > 0 ? sq->n : 1));
    sq->targets = xmalloc(sizeof(int32_t) * (sq->n > 0 ? sq->n : 1));
    sq->n_scored = 0;
    for (int j = i; j + 1 < sq->n; j++) {  // logits at j predict token j + 1
        int ok = 0;
        for (int v = 0; v < n_valid; v++) ok |= sq->ids[j + 1] == valid[v];
        if (!ok) continue;
        sq->rows[sq->n_scored] = j;
        sq->targets[sq->n_scored++] = sq->ids[j + 1];
    }
    free(ids.ids);
}

// The question's score from the logits of its rows (V real columns, rows Vp apart): Π p(target)
// renormalised over the valid ids.
static double soft_score(const Backend* be, const floatX* logits, size_t row0, int V, int Vp, const SoftQuestion* sq,
                         const int* valid, int n_valid, float* rowbuf) {
    double prob = 1.0;
    for (int s = 0; s < sq->n_scored; s++) {
        x_download(be, rowbuf, xat(be, logits, (row0 + (size_t)sq->rows[s]) * Vp), V);
        double mx = -INFINITY;
        for (int v = 0; v < n_valid; v++) mx = fmax(mx, rowbuf[valid[v]]);
        double sum = 0;
        for (int v = 0; v < n_valid; v++) sum += exp(rowbuf[valid[v]] - mx);
        prob *= exp(rowbuf[sq->targets[s]] - mx) / sum;
    }
    return prob;
}

// ---- the command ----------------------------------------------------------------------------------

static void remove_temp(void* path) { remove((const char*)path); }

int eval_task_requested(int argc, char** argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--task") || !strncmp(argv[i], "--task=", 7)) return 1;
    return 0;
}

typedef struct {
    const Tokenizer* tok;
    GenRequest* reqs;
} CotStop;

// Phase 1 ends a request at a "Q:" (the model starting the next question) or a "\n\n\n".
static int cot_on_token(void* user, int r, int kind, int32_t token) {
    if (kind != GEN_TEXT) return 0;
    const CotStop* s = user;
    const GenRequest* q = &s->reqs[r];
    const int from = q->n_out > 16 ? q->n_out - 16 : 0;  // the stop strings are short: decode the tail only
    char* text = tok_decode(s->tok, (const uint32_t*)q->out + from, (size_t)(q->n_out - from), 1, NULL);
    const int stop = strstr(text, "Q:") || strstr(text, "\n\n\n");
    free(text);
    return stop;
}

static char* decode_completion(const Tokenizer* tok, const GenRequest* q) {
    return tok_decode(tok, (const uint32_t*)q->out, (size_t)q->n_out, 1, NULL);
}

static TokIds encode_prompt(const Tokenizer* tok, const char* text, int vocab, const char* path, int line) {
    TokIds ids = {0};
    tok_encode(tok, text, strlen(text), 1, &ids);
    if (ids.n == 0) fatal("%s:%d: the prompt is empty (no tokens)", path, line);
    for (size_t i = 0; i < ids.n; i++)
        if (ids.ids[i] >= (uint32_t)vocab) fatal("%s:%d: token %u is outside the model's vocabulary", path, line, ids.ids[i]);
    return ids;
}

int cmd_eval_task(int argc, char** argv) {
    const char *task_name = NULL, *data = NULL, *ckpt = NULL, *metric = "soft", *json_out = NULL, *details_out = NULL,
               *tok_path = NULL, *device = "cpu";
    const char* precision = NULL;
    int limit = 0, seq = 256, batch = 4, seed = 7, n_ahead = 0, no_thoughts = 0, votes = 8, max_tokens = 384,
        answer_tokens = 12, thoughts = 0;
    float temperature = 0.9f, embed_scale = 0;
    ArgSpec specs[] = {
        {"task", ARG_STR, &task_name, "gsm8k or csqa"},
        {"data", ARG_STR, &data, "the task's JSONL (GSM8K; CommonsenseQA official or flattened layout)"},
        {"ckpt", ARG_STR, &ckpt, "checkpoint directory (config.json, model.safetensors, tokenizer.json)"},
        {"metric", ARG_STR, &metric, "soft (zero-shot answer probability) or cot-maj (GSM8K: chain of thought, majority vote)"},
        {"limit", ARG_INT, &limit, "the first N questions only (0: all)"},
        {"json", ARG_STR, &json_out, "also write the results and settings to this JSON file"},
        {"details", ARG_STR, &details_out, "write one JSON line per question (scores, votes) to this file"},
        {"seq", ARG_INT, &seq, "soft: most tokens per question (the last ones are kept)"},
        {"batch", ARG_INT, &batch, "soft: questions per forward; cot-maj: requests in flight"},
        {"seed", ARG_INT, &seed, "seed of the thought and vote sampling"},
        {"n-ahead", ARG_UINT, &n_ahead, "Quiet-STaR thought length (default: the run's, else 12)"},
        {"no-thoughts", ARG_FLAG, &no_thoughts, "soft: score a Quiet-STaR checkpoint without thinking only"},
        {"votes", ARG_INT, &votes, "cot-maj: samples per question"},
        {"temperature", ARG_FLOAT, &temperature, "cot-maj: sampling temperature (0: greedy)"},
        {"max-tokens", ARG_INT, &max_tokens, "cot-maj: most tokens of reasoning"},
        {"answer-tokens", ARG_INT, &answer_tokens, "cot-maj: most tokens of the final answer"},
        {"thoughts", ARG_FLAG, &thoughts, "cot-maj: think before every token (Quiet-STaR checkpoints)"},
        {"thought-embed-scale", ARG_UFLOAT, &embed_scale, "scale of the start/end embeddings (default: the run's)"},
        {"tokenizer", ARG_STR, &tok_path, "tokenizer.json (default: the checkpoint's)"},
        {"device", ARG_STR, &device, "backend"},
        {"precision", ARG_STR, &precision, "fp32 or bf16 (default: bf16 on cuda, fp32 elsewhere)"},
    };
    const int n_specs = (int)(sizeof specs / sizeof specs[0]);
    args_parse(argc, argv, specs, n_specs,
               "usage: qstar eval --task gsm8k|csqa --data FILE.jsonl --ckpt DIR [--metric soft|cot-maj] [options]\n\n"
               "Benchmark accuracy by the Quiet-STaR reference's protocols (docs/usage.md, GSM8K and CommonsenseQA).");
    if (!task_name || !data || !ckpt) fatal("eval: --task, --data and --ckpt are required");
    int task;
    if (!strcmp(task_name, "gsm8k")) task = TASK_GSM8K;
    else if (!strcmp(task_name, "csqa")) task = TASK_CSQA;
    else fatal("eval: unknown --task \"%s\" (gsm8k or csqa)", task_name);
    const int cot = !strcmp(metric, "cot-maj");
    if (!cot && strcmp(metric, "soft")) fatal("eval: unknown --metric \"%s\" (soft or cot-maj)", metric);
    if (cot && task != TASK_GSM8K) fatal("eval: --metric cot-maj is for gsm8k (its answers are numbers)");
    if (limit < 0 || seq <= 1 || batch <= 0) fatal("eval: need --limit >= 0, --seq > 1 and --batch > 0");
    if (cot && (votes <= 0 || max_tokens <= 0 || answer_tokens <= 0 || !(temperature >= 0)))
        fatal("eval: need --votes, --max-tokens, --answer-tokens > 0 and --temperature >= 0");
    const Backend* be = backend_select(device, precision);
    char* own_tok = xsprintf("%s/tokenizer.json", ckpt);
    if (!tok_path) {
        if (!file_exists(own_tok)) fatal("eval: %s has no tokenizer.json; give --tokenizer", ckpt);
        tok_path = own_tok;
    }
    Tokenizer* tok = tok_load(tok_path);
    ModelConfig cfg;
    config_load(&cfg, ckpt);
    if (tok_vocab_size(tok) > (uint32_t)cfg.vocab_size)
        fatal("%s: tokenizer has %u tokens but the model's vocabulary is %d", tok_path, tok_vocab_size(tok),
              cfg.vocab_size);
    const int is_qs = cfg.start_thought_id >= 0;
    if (thoughts && !is_qs) fatal("eval: --thoughts needs a Quiet-STaR checkpoint (%s has no thought tokens)", ckpt);
    int n_items;
    Item* items = read_items(data, task, limit, &n_items);
    Model m;
    model_create(&m, &cfg, be);
    model_load_weights(&m, ckpt);
    const int qs_n_ahead = n_ahead > 0 ? n_ahead : (int)checkpoint_setting(ckpt, "n-ahead", 12);
    const float qs_scale = embed_scale > 0 ? embed_scale : (float)checkpoint_setting(ckpt, "thought-embed-scale", 100);

    Progress prog = {.label = NULL, .total = n_items, .tty = isatty(STDERR_FILENO), .t0 = now_seconds()};
    char label[64];
    snprintf(label, sizeof label, "eval %s %s", task_name, metric);
    prog.label = label;
    prog.last = prog.t0;
    FILE* details = NULL;
    char* details_tmp = NULL;
    if (details_out) {
        details_tmp = xsprintf("%s.tmp.%d", details_out, (int)getpid());
        details = fopen(details_tmp, "w");
        if (!details) fatal("%s: cannot write", details_out);
        fatal_set_cleanup(remove_temp, details_tmp);  // an error later leaves no half-written file
    }
    double acc = 0, thought_acc = NAN;
    int valid[32], n_valid = 0;

    if (!cot) {
        const int thinking = is_qs && !no_thoughts;
        n_valid = valid_token_ids(tok, task, cfg.vocab_size, valid, tok_path);
        SoftQuestion* sq = xcalloc((size_t)n_items, sizeof(SoftQuestion));
        int L = 2;
        for (int i = 0; i < n_items; i++) {
            soft_prepare(&sq[i], &items[i], tok, valid, n_valid, seq, cfg.vocab_size, data);
            if (sq[i].n > L) L = sq[i].n;
        }
        if (L > cfg.max_position_embeddings)
            fatal("eval: questions of %d tokens exceed max_position_embeddings (%d); lower --seq", L,
                  cfg.max_position_embeddings);
        // Questions go through in order of length, each batch padded to a multiple of 32 tokens (the
        // buffers are remade when that length changes): GSM8K's lengths vary ~3x, and a forward's cost
        // is its padded length. Padding sits after each question, so causal attention never sees it.
        const int B = batch < n_items ? batch : n_items;
        int* order = xmalloc(sizeof(int) * n_items);
        for (int i = 0; i < n_items; i++) order[i] = i;
        for (int i = 1; i < n_items; i++)  // insertion sort: stable, and n is small
            for (int j = i; j > 0 && sq[order[j - 1]].n > sq[order[j]].n; j--) {
                const int t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
        QuietStar qs;
        int cur_L = 0;
        QuietStarConfig qc = quietstar_reference_config();
        qc.n_ahead = qs_n_ahead;
        qc.embed_scale = qs_scale;
        qc.n_ahead_talk = 1;
        qc.n_passes = 1;
        qc.seed = (uint64_t)seed;
        const int pad = cfg.eos_token_id >= 0 && cfg.eos_token_id < cfg.vocab_size ? cfg.eos_token_id : 0;
        int32_t* in = xmalloc(sizeof(int32_t) * (size_t)B * L);
        float* rowbuf = xmalloc(sizeof(float) * (size_t)cfg.vocab_size);
        double* scores = xmalloc(sizeof(double) * n_items);
        double* tscores = xmalloc(sizeof(double) * n_items);
        double sum = 0, tsum = 0;
        for (int b0 = 0; b0 < n_items; b0 += B) {
            const int nb = n_items - b0 < B ? n_items - b0 : B;
            int Lb = (sq[order[b0 + nb - 1]].n + 31) / 32 * 32;
            if (Lb > L) Lb = L;
            if (Lb != cur_L) {
                if (thinking) {
                    if (cur_L) quietstar_destroy(&qs);
                    quietstar_create(&qs, &m, &qc, B, Lb);
                } else {
                    model_alloc_activations(&m, B, Lb);
                }
                cur_L = Lb;
            }
            for (int r = 0; r < B; r++)
                for (int t = 0; t < Lb; t++)
                    in[(size_t)r * Lb + t] = r < nb && t < sq[order[b0 + r]].n ? sq[order[b0 + r]].ids[t] : pad;
            const floatX *base_logits, *talk_logits = NULL;
            if (thinking) {
                quietstar_forward(&qs, in, (uint32_t)(b0 / B));
                base_logits = qs.steps[0].logits;
                talk_logits = qs.steps[qs.NA - 1].logits;  // the mixed prediction after the end token
            } else {
                model_forward(&m, in, NULL, NULL);
                base_logits = m.acts.logits;
            }
            const int V = cfg.vocab_size, Vp = vocab_padded(&cfg);
            for (int r = 0; r < nb; r++) {
                const int i = order[b0 + r];
                scores[i] = soft_score(be, base_logits, (size_t)r * Lb, V, Vp, &sq[i], valid, n_valid, rowbuf);
                tscores[i] = thinking ? soft_score(be, talk_logits, (size_t)r * Lb, V, Vp, &sq[i], valid, n_valid, rowbuf)
                                      : NAN;
                sum += scores[i];
                if (thinking) tsum += tscores[i];
            }
            const int done = b0 + nb;
            progress_update(&prog, done, sum / done, thinking ? tsum / done : NAN);
        }
        for (int i = 0; details && i < n_items; i++) {  // in input order
            cJSON* o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "index", i);
            cJSON_AddNumberToObject(o, "line", items[i].line);
            cJSON_AddNumberToObject(o, "score", scores[i]);
            if (thinking) cJSON_AddNumberToObject(o, "thought_score", tscores[i]);
            cJSON_AddNumberToObject(o, "tokens", sq[i].n);
            cJSON_AddNumberToObject(o, "scored_tokens", sq[i].n_scored);
            char* line = cJSON_PrintUnformatted(o);
            fprintf(details, "%s\n", line);
            free(line);
            cJSON_Delete(o);
        }
        // the accuracy summed in input order, so it does not depend on --batch's grouping
        sum = tsum = 0;
        for (int i = 0; i < n_items; i++) sum += scores[i], tsum += thinking ? tscores[i] : 0;
        free(order);
        free(scores);
        free(tscores);
        acc = sum / n_items;
        if (thinking) thought_acc = tsum / n_items;
        free(in);
        free(rowbuf);
        for (int i = 0; i < n_items; i++) free(sq[i].ids), free(sq[i].rows), free(sq[i].targets);
        free(sq);
        if (thinking && cur_L) quietstar_destroy(&qs);
    } else {
        GenConfig gc = {.temperature = temperature, .top_p = 1.0f, .max_tokens = max_tokens, .seed = (uint64_t)seed,
                        .thoughts = thoughts, .n_ahead = qs_n_ahead, .embed_scale = qs_scale,
                        .stop_token = (int)tok_eos_id(tok)};
        // each generation's prompt + tokens fit the context (checked again by generate_batch, but only
        // after the buffers below are sized by --max-tokens and --answer-tokens)
        if (max_tokens >= cfg.max_position_embeddings || answer_tokens >= cfg.max_position_embeddings)
            fatal("eval: --max-tokens %d / --answer-tokens %d: more than the model's context of %d positions holds "
                  "after a question",
                  max_tokens, answer_tokens, cfg.max_position_embeddings);
        const int chunk = batch / votes > 1 ? batch / votes : 1;  // questions per generate_batch call
        GenRequest* reqs = xcalloc((size_t)chunk * votes, sizeof(GenRequest));
        int32_t* out1 = xmalloc(sizeof(int32_t) * (size_t)chunk * votes * max_tokens);
        int32_t* out2 = xmalloc(sizeof(int32_t) * (size_t)chunk * votes * answer_tokens);
        char** texts1 = xcalloc((size_t)chunk * votes, sizeof(char*));
        char** finals = xcalloc((size_t)chunk * votes, sizeof(char*));
        char(*nums)[64] = xmalloc(sizeof(char[64]) * (size_t)chunk * votes);
        const char** answers = xmalloc(sizeof(char*) * votes);
        int correct = 0;
        for (int q0 = 0; q0 < n_items; q0 += chunk) {
            const int nq = n_items - q0 < chunk ? n_items - q0 : chunk, nr = nq * votes;
            // phase 1: the reasoning
            TokIds* prompts = xcalloc((size_t)nq, sizeof(TokIds));
            int32_t** p32 = xcalloc((size_t)nr, sizeof(int32_t*));
            char** ptext = xcalloc((size_t)nq, sizeof(char*));
            for (int i = 0; i < nq; i++) {
                ptext[i] = xsprintf("Q: %s" COT_PROMPT, items[q0 + i].question);
                prompts[i] = encode_prompt(tok, ptext[i], cfg.vocab_size, data, items[q0 + i].line);
                p32[i] = xmalloc(sizeof(int32_t) * prompts[i].n);
                for (size_t t = 0; t < prompts[i].n; t++) p32[i][t] = (int32_t)prompts[i].ids[t];
            }
            for (int r = 0; r < nr; r++) {
                const int i = r / votes;
                reqs[r] = (GenRequest){.prompt = p32[i], .n_prompt = (int)prompts[i].n, .sample = (uint32_t)(r % votes),
                                       .out = out1 + (size_t)r * max_tokens};
            }
            CotStop st = {.tok = tok, .reqs = reqs};
            gc.max_tokens = max_tokens;
            gc.seed = (uint64_t)seed;
            generate_batch(&m, &gc, reqs, nr, batch, cot_on_token, &st);
            // phase 2: the final answer after the reasoning, cut at a stop string and right-stripped
            TokIds* prompts2 = xcalloc((size_t)nr, sizeof(TokIds));
            int32_t** q32 = xcalloc((size_t)nr, sizeof(int32_t*));
            for (int r = 0; r < nr; r++) {
                char* c = decode_completion(tok, &reqs[r]);
                char* cut = strstr(c, "Q:");
                char* cut2 = strstr(c, "\n\n\n");
                if (cut2 && (!cut || cut2 < cut)) cut = cut2;
                if (cut) *cut = 0;
                texts1[r] = c;
                char* whole = xsprintf("%s%s", ptext[r / votes], c);
                size_t n = strlen(whole);
                while (n && isspace((unsigned char)whole[n - 1])) whole[--n] = 0;
                char* p2 = xsprintf("%s" COT_FINAL, whole);
                free(whole);
                prompts2[r] = encode_prompt(tok, p2, cfg.vocab_size, data, items[q0 + r / votes].line);
                free(p2);
                q32[r] = xmalloc(sizeof(int32_t) * prompts2[r].n);
                for (size_t t = 0; t < prompts2[r].n; t++) q32[r][t] = (int32_t)prompts2[r].ids[t];
                reqs[r] = (GenRequest){.prompt = q32[r], .n_prompt = (int)prompts2[r].n, .sample = (uint32_t)(r % votes),
                                       .out = out2 + (size_t)r * answer_tokens};
            }
            gc.max_tokens = answer_tokens;
            gc.seed = (uint64_t)seed + 0x9e3779b9u;  // other noise than the reasoning's
            generate_batch(&m, &gc, reqs, nr, batch, NULL, NULL);
            for (int i = 0; i < nq; i++) {
                for (int v = 0; v < votes; v++) {
                    const int r = i * votes + v;
                    finals[r] = decode_completion(tok, &reqs[r]);
                    answers[v] = eval_first_integer(finals[r], nums[r], sizeof nums[r]) ? nums[r] : NULL;
                }
                const int w = eval_majority(answers, votes);
                const int right = answers[w] && !strcmp(answers[w], items[q0 + i].gold);
                correct += right;
                if (details) {
                    cJSON* o = cJSON_CreateObject();
                    cJSON_AddNumberToObject(o, "index", q0 + i);
                    cJSON_AddNumberToObject(o, "line", items[q0 + i].line);
                    cJSON_AddStringToObject(o, "gold", items[q0 + i].gold);
                    cJSON* va = cJSON_AddArrayToObject(o, "votes");
                    for (int v = 0; v < votes; v++) {
                        const int r = i * votes + v;
                        cJSON* e = cJSON_CreateObject();
                        cJSON_AddStringToObject(e, "reasoning", texts1[r]);
                        cJSON_AddStringToObject(e, "answer", finals[r]);
                        if (answers[v]) cJSON_AddStringToObject(e, "extracted", answers[v]);
                        else cJSON_AddNullToObject(e, "extracted");
                        cJSON_AddItemToArray(va, e);
                    }
                    if (answers[w]) cJSON_AddStringToObject(o, "majority", answers[w]);
                    else cJSON_AddNullToObject(o, "majority");
                    cJSON_AddBoolToObject(o, "correct", right);
                    char* line = cJSON_PrintUnformatted(o);
                    fprintf(details, "%s\n", line);
                    free(line);
                    cJSON_Delete(o);
                }
            }
            for (int r = 0; r < nr; r++) {
                free(texts1[r]), free(finals[r]), free(prompts2[r].ids), free(q32[r]);
                texts1[r] = finals[r] = NULL;
            }
            for (int i = 0; i < nq; i++) free(prompts[i].ids), free(p32[i]), free(ptext[i]);
            free(prompts), free(p32), free(ptext), free(prompts2), free(q32);
            progress_update(&prog, q0 + nq, (double)correct / (q0 + nq), NAN);
        }
        acc = (double)correct / n_items;
        free(reqs), free(out1), free(out2), free(texts1), free(finals), free(nums), free(answers);
    }
    if (details) {
        fatal_set_cleanup(NULL, NULL);
        if (fflush(details) || ferror(details) || fclose(details)) fatal("%s: write failed", details_out);
        if (rename(details_tmp, details_out)) fatal("%s: cannot rename into place", details_out);
        free(details_tmp);
    }

    const double secs = now_seconds() - prog.t0;
    printf("eval: %s %s on %d questions of %s (%.1f s)\n", task_name, metric, n_items, data, secs);
    if (isnan(thought_acc))
        printf("  accuracy %.6f\n", acc);
    else
        printf("  accuracy without thoughts %.6f\n  accuracy with thoughts    %.6f\n", acc, thought_acc);
    if (json_out) {  // cJSON writes NaN (a value that does not apply) as null
        cJSON* o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "task", task_name);
        cJSON_AddStringToObject(o, "metric", metric);
        cJSON_AddNumberToObject(o, "n", n_items);
        cJSON_AddNumberToObject(o, "accuracy", acc);
        cJSON_AddNumberToObject(o, "thought_accuracy", thought_acc);
        cJSON* s = cJSON_AddObjectToObject(o, "settings");
        cJSON_AddStringToObject(s, "ckpt", ckpt);
        cJSON_AddStringToObject(s, "data", data);
        cJSON_AddStringToObject(s, "tokenizer", tok_path);
        cJSON_AddStringToObject(s, "device", device);
        cJSON_AddNumberToObject(s, "limit", limit);
        cJSON_AddNumberToObject(s, "seed", seed);
        if (is_qs) cJSON_AddNumberToObject(s, "n_ahead", qs_n_ahead);
        if (!cot) {
            cJSON_AddNumberToObject(s, "seq", seq);
            cJSON* v = cJSON_AddArrayToObject(s, "valid_tokens");
            for (int i = 0; i < n_valid; i++) cJSON_AddItemToArray(v, cJSON_CreateNumber(valid[i]));
        } else {
            cJSON_AddNumberToObject(s, "votes", votes);
            cJSON_AddNumberToObject(s, "temperature", round(temperature * 1e6) / 1e6);  // 0.9, not 0.899999976
            cJSON_AddNumberToObject(s, "max_tokens", max_tokens);
            cJSON_AddNumberToObject(s, "answer_tokens", answer_tokens);
            cJSON_AddBoolToObject(s, "thoughts", thoughts);
        }
        cJSON_AddNumberToObject(o, "seconds", secs);
        char* text = cJSON_PrintUnformatted(o);
        char* line = xsprintf("%s\n", text);
        write_file_atomic(json_out, line, strlen(line));
        free(line);
        free(text);
        cJSON_Delete(o);
    }
    for (int i = 0; i < n_items; i++) free(items[i].question), free(items[i].answer);
    free(items);
    tok_free(tok);
    free(own_tok);
    model_destroy(&m);
    return 0;
}
