/*
 * Task logic of the STaR family (star_tasks.h): problem generation, answer extraction and checking,
 * hints, task files, RFT's equation keys and path selection, stepdpo's steps and Monte-Carlo values,
 * V-STaR's best-of-k. Pure functions over text and numbers; the only I/O is star_load_tasks and
 * star_arith_write_file. The formats follow the official code the notes cite (STaR's gen_sums.py and
 * device_inference.py, RFT's collect_rejection_sampling.py); tests/ref/star_reference.py re-derives
 * the numeric parts in Python.
 */
#include "tasks/star_tasks.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "common/util.h"
#include "io/jsonl.h"

int star_task_from_name(const char* name) {
    if (!strcmp(name, "arith")) return STAR_TASK_ARITH;
    if (!strcmp(name, "gsm8k")) return STAR_TASK_GSM8K;
    return -1;
}

static void set_err(char* err, size_t cap, const char* fmt, ...) {
    if (!err || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

// ---- arith ------------------------------------------------------------------------------------------

static uint64_t splitmix64(uint64_t* x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t pow10u(int d) {
    uint64_t p = 1;
    while (d-- > 0) p *= 10;
    return p;
}

// Uniform in [0, n) without modulo bias (rejection).
static uint64_t uniform_below(uint64_t* state, uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
        uint64_t r = splitmix64(state);
        if (r < limit) return r % n;
    }
}

void star_arith_problem(uint64_t seed, uint64_t index, int digits, StarArith* p) {
    QSTAR_ASSERT(digits >= 1 && digits <= STAR_ARITH_MAX_DIGITS);
    uint64_t state = seed * 0x2545F4914F6CDD1Dull ^ (index + 1) * 0x9E3779B97F4A7C15ull;
    splitmix64(&state);
    const uint64_t lo = digits == 1 ? 1 : pow10u(digits - 1), hi = pow10u(digits);
    // gen_sums.py draws from [10^(d-1), 10^d): one-digit operands are 1..9
    p->a = lo + uniform_below(&state, hi - lo);
    p->b = lo + uniform_below(&state, hi - lo);
    p->digits = digits;
}

// "6 2 4" for 624
static void put_spaced(StrBuf* b, uint64_t x) {
    char d[24];
    snprintf(d, sizeof d, "%llu", (unsigned long long)x);
    for (size_t i = 0; d[i]; i++) {
        if (i) sb_putc(b, ' ');
        sb_putc(b, d[i]);
    }
}

char* star_arith_question(const StarArith* p) {
    StrBuf b = {0};
    put_spaced(&b, p->a);
    sb_puts(&b, " + ");
    put_spaced(&b, p->b);
    return sb_take(&b);
}

char* star_arith_answer(const StarArith* p) {
    StrBuf b = {0};
    put_spaced(&b, p->a + p->b);
    return sb_take(&b);
}

// The scratchpad exactly as gen_sums.py writes it (operands of equal length).
char* star_arith_target(const StarArith* p) {
    char da[24], db[24];
    snprintf(da, sizeof da, "%llu", (unsigned long long)p->a);
    snprintf(db, sizeof db, "%llu", (unsigned long long)p->b);
    const int n = (int)strlen(da) < (int)strlen(db) ? (int)strlen(da) : (int)strlen(db);
    StrBuf b = {0}, running = {0};
    sb_puts(&running, "");
    sb_puts(&b, "\n<scratch>\n");
    char* q = star_arith_question(p);
    sb_puts(&b, q);
    free(q);
    sb_puts(&b, " , C: 0\n");
    int carry = 0;
    // zip() pairs the leading digits; reversed() walks them from the last pair
    for (int i = n - 1; i >= 0; i--) {
        const int x = da[i] - '0', y = db[i] - '0', s = x + y + carry;
        if (i != n - 1) {
            char line[64];
            snprintf(line, sizeof line, "%c + %c , %sC: %d\n", da[i], db[i], running.s, carry);
            sb_puts(&b, line);
        }
        carry = s >= 10;
        char* r = xsprintf("%d %s", s % 10, running.s);
        free(running.s);
        running = (StrBuf){0};
        sb_puts(&running, r);
        free(r);
    }
    char* line = xsprintf(", %sC: %d\n", running.s, carry);
    sb_puts(&b, line);
    free(line);
    line = xsprintf("%d %s", carry, running.s);
    size_t len = strlen(line);
    while (len && line[len - 1] == ' ') line[--len] = 0;  // .strip()
    sb_puts(&b, line);
    free(line);
    sb_puts(&b, "\n</scratch>\n");
    char* ans = star_arith_answer(p);
    sb_puts(&b, ans);
    free(ans);
    sb_puts(&b, "\n");
    free(running.s);
    return sb_take(&b);
}

char* star_arith_hint(const StarArith* p) {
    StrBuf b = {0};
    const uint64_t s = p->a + p->b, top = pow10u(p->digits);
    // the carry out of the top column, then the sum's low `digits` digits (leading zeros kept)
    sb_putc(&b, s >= top ? '1' : '0');
    char d[24];
    snprintf(d, sizeof d, "%0*llu", p->digits, (unsigned long long)(s % top));
    for (size_t i = 0; d[i]; i++) {
        sb_putc(&b, ' ');
        sb_putc(&b, d[i]);
    }
    return sb_take(&b);
}

// One operand "6 2 4": returns characters consumed, 0 on a malformed operand.
static int parse_spaced(const char* s, uint64_t* x, int* digits) {
    int n = 0, i = 0;
    uint64_t v = 0;
    while (isdigit((unsigned char)s[i])) {
        if (++n > STAR_ARITH_MAX_DIGITS) return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
        i++;
        if (s[i] == ' ' && isdigit((unsigned char)s[i + 1])) i++;
        else break;
    }
    if (!n) return 0;
    if (n > 1 && s[0] == '0') return 0;
    *x = v;
    *digits = n;
    return i;
}

int star_arith_parse_question(const char* q, StarArith* p, char* err, size_t errcap) {
    int da, db;
    int i = parse_spaced(q, &p->a, &da);
    if (!i) return set_err(err, errcap, "\"%s\" does not start with a space-separated number (\"6 2 4 + 2 5 9\")", q), -1;
    if (strncmp(q + i, " + ", 3)) return set_err(err, errcap, "\"%s\": expected \" + \" after the first number", q), -1;
    int j = parse_spaced(q + i + 3, &p->b, &db);
    if (!j) return set_err(err, errcap, "\"%s\": no space-separated number after \"+\"", q), -1;
    if (q[i + 3 + j]) return set_err(err, errcap, "\"%s\": unexpected text after the second number", q), -1;
    if (da != db) return set_err(err, errcap, "\"%s\": operands of %d and %d digits (must be equal)", q, da, db), -1;
    p->digits = da;
    return 0;
}

// Copies [s, e) trimmed of trailing spaces and '\r' into out.
static int copy_trimmed(const char* s, const char* e, char* out, size_t cap) {
    while (e > s && (e[-1] == ' ' || e[-1] == '\r' || e[-1] == '\t')) e--;
    size_t n = (size_t)(e - s);
    if (n + 1 > cap) n = cap - 1;
    memcpy(out, s, n);
    out[n] = 0;
    return 1;
}

int star_arith_extract(const char* c, char* out, size_t cap) {
    for (const char* line = c; line && *line;) {
        const char* nl = strchr(line, '\n');
        const char* end = nl ? nl : line + strlen(line);
        const char* s = line;
        while (s < end && (*s == ' ' || *s == '\t')) s++;
        if (!strncmp(s, "</scratch>", 10)) {
            const char* rest = s + 10;
            while (rest < end && (*rest == ' ' || *rest == '\r' || *rest == '\t')) rest++;
            if (rest != end || !nl) return 0;  // not a line of its own, or nothing after it
            const char* a = nl + 1;
            const char* ae = strchr(a, '\n');
            if (!ae) ae = a + strlen(a);
            while (a < ae && *a == ' ') a++;
            if (a == ae || (ae - a == 1 && *a == '\r')) return 0;
            return copy_trimmed(a, ae, out, cap);
        }
        line = nl ? nl + 1 : NULL;
    }
    return 0;
}

// ---- gsm8k ------------------------------------------------------------------------------------------

int star_number_normalize(const char* s, char* out, size_t cap) {
    while (*s == ' ' || *s == '\t') s++;
    int neg = 0;
    if (*s == '$') s++;
    if (*s == '+' || *s == '-') neg = *s++ == '-';
    if (*s == '$') s++;
    char digits[128];
    size_t n = 0;
    int seen_digit = 0, seen_point = 0;
    size_t point_at = 0;
    for (;; s++) {
        if (isdigit((unsigned char)*s)) {
            if (n + 2 >= sizeof digits) return 0;
            digits[n++] = *s;
            seen_digit = 1;
        } else if (*s == ',' && seen_digit && !seen_point && isdigit((unsigned char)s[1])) {
            continue;  // thousands separator
        } else if (*s == '.' && !seen_point) {
            seen_point = 1;
            point_at = n;
        } else {
            break;
        }
    }
    if (!seen_digit) return 0;
    // what follows must end the number: space, end, or sentence punctuation that is not '.'-then-digit
    if (*s && !(*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t' || *s == ',' || *s == ';' || *s == ')' ||
                *s == '!' || *s == '?' || *s == ':'))
        return 0;
    if (!seen_point) point_at = n;
    // integer part without leading zeros, fraction without trailing zeros
    size_t i0 = 0;
    while (i0 + 1 < point_at && digits[i0] == '0') i0++;
    size_t f1 = n;
    while (f1 > point_at && digits[f1 - 1] == '0') f1--;
    char res[160];
    size_t r = 0;
    if (point_at == 0) res[r++] = '0';
    for (size_t i = i0; i < point_at; i++) res[r++] = digits[i];
    if (f1 > point_at) {
        res[r++] = '.';
        for (size_t i = point_at; i < f1; i++) res[r++] = digits[i];
    }
    res[r] = 0;
    int zero = !strcmp(res, "0");
    if (snprintf(out, cap, "%s%s", neg && !zero ? "-" : "", res) >= (int)cap) return 0;
    return 1;
}

int star_gsm8k_extract(const char* c, char* out, size_t cap) {
    const char* h = strstr(c, "####");
    if (!h) return 0;
    const char* eol = strchr(h, '\n');
    if (!eol) eol = h + strlen(h);
    const char* last = h;
    for (const char* p = strstr(h + 4, "####"); p && p < eol; p = strstr(p + 4, "####")) last = p;
    size_t n = (size_t)(eol - (last + 4));
    char* tail = xmalloc(n + 1);
    memcpy(tail, last + 4, n);
    tail[n] = 0;
    int ok = star_number_normalize(tail, out, cap);
    free(tail);
    return ok;
}

int star_is_correct(int task, const char* completion, const char* gold) {
    char pred[160], g[160];
    if (task == STAR_TASK_ARITH) {
        if (!star_arith_extract(completion, pred, sizeof pred)) return 0;
        return !strcmp(pred, gold);
    }
    if (!star_gsm8k_extract(completion, pred, sizeof pred)) return 0;
    if (!star_number_normalize(gold, g, sizeof g)) return 0;
    return !strcmp(pred, g);
}

char* star_prompt(int task, const char* question, const char* hint) {
    if (task == STAR_TASK_ARITH)
        return hint ? xsprintf("Input:\n%s\nTarget: %s", question, hint) : xsprintf("Input:\n%s\nTarget:", question);
    return hint ? xsprintf("Q: %s (%s)\nA:", question, hint) : xsprintf("Q: %s\nA:", question);
}

char* star_remove_hint(int task, const char* hinted, const char* hint) {
    const size_t n = strlen(hinted);
    char* tail = task == STAR_TASK_ARITH ? xsprintf(" %s", hint) : xsprintf(" (%s)\nA:", hint);
    const size_t t = strlen(tail);
    char* res = NULL;
    if (n >= t && !strcmp(hinted + n - t, tail)) {
        if (task == STAR_TASK_ARITH) {
            if (n - t >= 7 && !strncmp(hinted + n - t - 7, "Target:", 7)) res = xsprintf("%.*s", (int)(n - t), hinted);
        } else {
            res = xsprintf("%.*s\nA:", (int)(n - t), hinted);
        }
    }
    free(tail);
    return res;
}

// ---- task files -----------------------------------------------------------------------------------

static const char* field(const cJSON* o, const char* key) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int parse_item(const cJSON* o, int task, StarItem* it, const char* name, int line, char* err, size_t cap) {
    const char* q = field(o, "question");
    const char* a = field(o, "answer");
    if (!q) return set_err(err, cap, "%s:%d: no string \"question\" field", name, line), -1;
    if (!a) return set_err(err, cap, "%s:%d: no string \"answer\" field", name, line), -1;
    if (!*q) return set_err(err, cap, "%s:%d: empty \"question\"", name, line), -1;
    char g[160];
    if (task == STAR_TASK_GSM8K) {
        const char* last = NULL;
        for (const char* p = strstr(a, "####"); p; p = strstr(p + 4, "####")) last = p;
        if (!last) return set_err(err, cap, "%s:%d: the answer has no \"#### N\" final line", name, line), -1;
        if (!star_number_normalize(last + 4, g, sizeof g))
            return set_err(err, cap, "%s:%d: no number after \"####\" in the answer", name, line), -1;
        it->solution = xstrdup(a);
        it->digits = 0;
    } else {
        StarArith p;
        char why[256];
        if (star_arith_parse_question(q, &p, why, sizeof why))
            return set_err(err, cap, "%s:%d: question %s", name, line, why), -1;
        char* want = star_arith_answer(&p);
        if (strcmp(a, want)) {
            set_err(err, cap, "%s:%d: answer \"%s\" is not the sum \"%s\"", name, line, a, want);
            free(want);
            return -1;
        }
        snprintf(g, sizeof g, "%s", want);
        free(want);
        it->solution = star_arith_target(&p);
        it->digits = p.digits;
    }
    it->question = xstrdup(q);
    it->gold = xstrdup(g);
    it->line = line;
    return 0;
}

StarItem* star_parse_tasks(const char* text, size_t len, const char* name, int task, int* n_out, char* err,
                           size_t errcap) {
    StarItem* items = NULL;
    int n = 0, cap = 0;
    *n_out = 0;
    Jsonl r;
    jsonl_from_text(&r, text, len);
    while (jsonl_next(&r)) {
        if (!cJSON_IsObject(r.value)) {
            set_err(err, errcap, "%s:%d: %s", name, r.line, jsonl_not_object(&r));
            goto fail;
        }
        if (n == cap) items = xrealloc(items, (size_t)(cap = cap ? 2 * cap : 64), sizeof(StarItem));
        memset(&items[n], 0, sizeof items[n]);
        if (parse_item(r.value, task, &items[n], name, r.line, err, errcap)) goto fail;
        n++;
    }
    if (!n) {
        set_err(err, errcap, "%s: no problems", name);
        goto fail;
    }
    *n_out = n;
    return items;
fail:
    jsonl_close(&r);
    star_free_tasks(items, n);
    return NULL;
}

StarItem* star_load_tasks(const char* path, int task, int* n) {
    size_t len;
    char* text = read_file_maybe(path, &len);
    if (!text) fatal("%s: cannot read the task file", path);
    char err[512];
    StarItem* items = star_parse_tasks(text, len, path, task, n, err, sizeof err);
    free(text);
    if (!items) fatal("%s", err);
    return items;
}

void star_free_tasks(StarItem* items, int n) {
    for (int i = 0; i < n; i++) {
        free(items[i].question);
        free(items[i].gold);
        free(items[i].solution);
    }
    free(items);
}

void star_arith_write_file(const char* path, uint64_t seed, int n, int lo, int hi) {
    if (lo < 1 || hi > STAR_ARITH_MAX_DIGITS || lo > hi) fatal("arith digits %d..%d outside 1..%d", lo, hi, STAR_ARITH_MAX_DIGITS);
    StrBuf b = {0};
    for (int i = 0; i < n; i++) {
        StarArith p;
        star_arith_problem(seed, (uint64_t)i, lo + i % (hi - lo + 1), &p);
        char* q = star_arith_question(&p);
        char* a = star_arith_answer(&p);
        char* line = xsprintf("{\"question\": \"%s\", \"answer\": \"%s\", \"digits\": %d}\n", q, a, p.digits);
        sb_puts(&b, line);
        free(line);
        free(q);
        free(a);
    }
    write_file_atomic(path, b.s ? b.s : "", b.n);
    free(b.s);
}

// ---- expressions ---------------------------------------------------------------------------------
// Recursive descent: sum := prod (('+'|'-') prod)* ; prod := power (('*'|'/'|'%'|'x'|'×') power)* ;
// power := unary ('**' power)? ; unary := ('+'|'-') unary | atom ; atom := number | '(' sum ')'.
// Python's precedence: -2**2 = -4 (the power binds tighter than the sign on its left).

typedef struct {
    const char* s;
    int bad;
} Expr;

static void skip_ws(Expr* e) {
    while (*e->s == ' ' || *e->s == '\t') e->s++;
}
static double parse_sum(Expr* e);
static double parse_unary(Expr* e);

static double parse_atom(Expr* e) {
    skip_ws(e);
    if (*e->s == '(') {
        e->s++;
        double v = parse_sum(e);
        skip_ws(e);
        if (*e->s != ')') e->bad = 1;
        else e->s++;
        return v;
    }
    char num[128];
    size_t n = 0;
    int digits = 0, point = 0;
    while (n + 1 < sizeof num) {
        char c = *e->s;
        if (isdigit((unsigned char)c)) digits = 1, num[n++] = c;
        else if (c == '.' && !point) point = 1, num[n++] = c;
        else if (c == ',' && digits && !point && isdigit((unsigned char)e->s[1])) {  // thousands comma
        } else break;
        e->s++;
    }
    num[n] = 0;
    if (!digits) {
        e->bad = 1;
        return 0;
    }
    return strtod(num, NULL);
}

static double parse_power(Expr* e) {
    double b = parse_atom(e);
    skip_ws(e);
    if (e->s[0] == '*' && e->s[1] == '*') {
        e->s += 2;
        double x = parse_unary(e);  // right-associative; the exponent may carry a sign
        return pow(b, x);
    }
    return b;
}

static double parse_unary(Expr* e) {
    skip_ws(e);
    if (*e->s == '-') return e->s++, -parse_unary(e);
    if (*e->s == '+') return e->s++, parse_unary(e);
    return parse_power(e);
}

static double parse_prod(Expr* e) {
    double v = parse_unary(e);
    for (;;) {
        skip_ws(e);
        const unsigned char* s = (const unsigned char*)e->s;
        int op = 0, w = 1;
        if (s[0] == '*' && s[1] != '*') op = '*';
        else if (s[0] == 'x' || s[0] == 'X') op = '*';
        else if (s[0] == 0xC3 && s[1] == 0x97) op = '*', w = 2;  // ×
        else if (s[0] == 0xC3 && s[1] == 0xB7) op = '/', w = 2;  // ÷
        else if (s[0] == '/') op = '/';
        else if (s[0] == '%') op = '%';
        if (!op) return v;
        e->s += w;
        double r = parse_unary(e);
        if (op == '*') v *= r;
        else if (r == 0) e->bad = 1;
        else if (op == '/') v /= r;
        else v = v - r * floor(v / r);  // Python's modulo: the sign of the divisor
    }
}

static double parse_sum(Expr* e) {
    double v = parse_prod(e);
    for (;;) {
        skip_ws(e);
        if (*e->s == '+') e->s++, v += parse_prod(e);
        else if (*e->s == '-') e->s++, v -= parse_prod(e);
        else return v;
    }
}

int star_eval_expr(const char* s, double* out) {
    Expr e = {s, 0};
    double v = parse_sum(&e);
    skip_ws(&e);
    if (e.bad || *e.s || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

int star_annotations_ok(const char* text) {
    for (const char* p = strstr(text, "<<"); p; p = strstr(p, "<<")) {
        const char* q = strstr(p + 2, ">>");
        if (!q) return 0;  // an unterminated annotation
        const char* body = p + 2;
        // RFT's regex <<([^>]*)>> : a '>' inside (a comparison) is not an annotation it can check
        if (memchr(body, '>', (size_t)(q - body))) return 0;
        const char* eq = NULL;
        for (const char* c = body; c < q; c++)
            if (*c == '=') eq = c;  // lhs=rhs split at the last '='
        if (!eq) return 0;
        char* lhs = xsprintf("%.*s", (int)(eq - body), body);
        char* rhs = xsprintf("%.*s", (int)(q - eq - 1), eq + 1);
        double l, r;
        int ok = star_eval_expr(lhs, &l) && star_eval_expr(rhs, &r) && fabs(l - r) < 1e-3;
        free(lhs);
        free(rhs);
        if (!ok) return 0;
        p = q + 2;
    }
    return 1;
}

// ---- equation keys ------------------------------------------------------------------------------------

static int is_op(char c) { return c == '+' || c == '-' || c == '*' || c == '/' || c == 'x' || c == '%'; }

// Equations written in prose: maximal runs over digits, '.', thousands commas, operators, parentheses,
// '=', '$', '%' and spaces ('x' only between numbers); a run counts when it has '=' with a digit (or
// ')') on both sides and an operator after a number left of the first '='. Spaces, '$' and thousands
// commas are dropped, trailing punctuation trimmed.
static int run_char(const char* s, const char* p) {
    if (isdigit((unsigned char)*p) || (*p && strchr(".+-*/()=$% ", *p))) return 1;
    if (*p == ',') return p > s && isdigit((unsigned char)p[-1]) && isdigit((unsigned char)p[1]);
    if (*p == 'x') return p > s && (p[-1] == ' ' || isdigit((unsigned char)p[-1])) && (p[1] == ' ' || isdigit((unsigned char)p[1]));
    return 0;
}

static int operand_end(char c) { return isdigit((unsigned char)c) || c == ')' || c == '%'; }

static void text_equations(const char* text, StrBuf* key) {
    const char* p = text;
    while (*p) {
        if (!isdigit((unsigned char)*p) && *p != '(' && *p != '$') {
            p++;
            continue;
        }
        const char* s = p;
        while (*p && run_char(s, p)) p++;
        StrBuf eq = {0};
        for (const char* c = s; c < p; c++)
            if (*c != ' ' && *c != '$' && *c != ',') sb_putc(&eq, *c);
        if (!eq.s) continue;
        size_t n = eq.n;
        while (n && !operand_end(eq.s[n - 1])) n--;
        eq.s[n] = 0;
        char* first_eq = strchr(eq.s, '=');
        int has_op = 0;
        if (first_eq)
            for (char* c = eq.s + 1; c < first_eq; c++)
                if (is_op(*c) && operand_end(c[-1])) has_op = 1;
        if (has_op && operand_end(first_eq[-1]) && (isdigit((unsigned char)first_eq[1]) || first_eq[1] == '(')) {
            if (key->n) sb_putc(key, '|');
            sb_puts(key, eq.s);
        }
        free(eq.s);
    }
}

char* star_equation_key(const char* text) {
    StrBuf key = {0};
    int any = 0;
    for (const char* p = strstr(text, "<<"); p; p = strstr(p + 2, "<<")) {
        const char* q = p + 2;
        while (*q && *q != '>') q++;  // <<([^>]*)>>
        if (q[0] != '>' || q[1] != '>') continue;
        if (any) sb_putc(&key, '|');
        any = 1;
        for (const char* c = p + 2; c < q; c++)
            if (*c != ' ') sb_putc(&key, *c);
        p = q;
    }
    if (!any) text_equations(text, &key);
    return sb_take(&key);
}

int star_levenshtein(const char* a, const char* b) {
    const size_t n = strlen(a), m = strlen(b);
    int* row = xmalloc(sizeof(int) * (m + 1));
    for (size_t j = 0; j <= m; j++) row[j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= m; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    int d = row[m];
    free(row);
    return d;
}

int star_dedup_paths(const char* const* paths, int n, int* kept) {
    char** keys = xmalloc(sizeof(char*) * (size_t)(n ? n : 1));
    int nk = 0;
    for (int r = 0; r < n; r++) {
        char* e = star_equation_key(paths[r]);
        int s = -1;
        for (int i = 0; i < nk; i++)
            if (!strcmp(keys[i], e)) s = i;
        if (s < 0) {
            kept[nk] = r;
            keys[nk++] = e;
            continue;
        }
        free(e);
        long dr = 0, ds = 0;
        for (int i = 0; i < nk; i++) {
            if (i == s) continue;
            dr += star_levenshtein(paths[r], paths[kept[i]]);
            ds += star_levenshtein(paths[kept[s]], paths[kept[i]]);
        }
        if (dr > ds) kept[s] = r;
    }
    for (int i = 0; i < nk; i++) free(keys[i]);
    free(keys);
    return nk;
}

int star_rft_select(int task, const char* const* completions, int n, const char* gold, int* kept, int* n_correct) {
    const char** ok = xmalloc(sizeof(char*) * (size_t)(n ? n : 1));
    int* index = xmalloc(sizeof(int) * (size_t)(n ? n : 1));
    int c = 0;
    for (int i = 0; i < n; i++)
        if (star_is_correct(task, completions[i], gold) &&
            (task != STAR_TASK_GSM8K || star_annotations_ok(completions[i]))) {
            ok[c] = completions[i];
            index[c++] = i;
        }
    if (n_correct) *n_correct = c;
    int nk = star_dedup_paths(ok, c, kept);
    for (int i = 0; i < nk; i++) kept[i] = index[kept[i]];
    free(ok);
    free(index);
    return nk;
}

// ---- steps and values -------------------------------------------------------------------------------------

static int blank_line(const char* s, const char* e) {
    for (; s < e; s++)
        if (!isspace((unsigned char)*s)) return 0;
    return 1;
}

int star_split_steps(const char* text, int** starts_out) {
    const int len = (int)strlen(text);
    int* st = xmalloc(sizeof(int) * (size_t)(len + 2));
    int n = 0;
    for (int p = 0; p < len;) {
        const char* nl = strchr(text + p, '\n');
        int end = nl ? (int)(nl - text) + 1 : len;
        if (!blank_line(text + p, text + end)) st[n++] = p;
        p = end;
    }
    if (n) st[0] = 0;  // leading blank lines belong to the first step
    st[n] = len;
    *starts_out = st;
    return n;
}

char* star_step_prefix(const char* text, const int* starts, int i) {
    return xsprintf("%.*s", i > 0 ? starts[i] : 0, text);
}

void star_q_values(const int* successes, int n_prefix, int M, int estimator, double* q) {
    QSTAR_ASSERT(M > 0);
    for (int i = 0; i < n_prefix; i++)
        q[i] = estimator == STAR_Q_ANY ? (successes[i] > 0 ? 1.0 : 0.0) : (double)successes[i] / M;
}

int star_critical_step(const double* q, int n_prefix, double threshold, double* adv) {
    if (adv) adv[0] = 0;
    int c = -1;
    for (int i = 1; i < n_prefix; i++) {
        if (adv) adv[i] = q[i] - q[i - 1];
        if (c < 0 || q[i] < q[c]) c = i;
    }
    if (c < 0) return -1;
    return q[c] - q[c - 1] < -threshold ? c : -1;
}

int star_preference_pairs(const int* correct, int n, int (*pairs)[2]) {
    int k = 0;
    for (int i = 0; i < n; i++)
        if (correct[i])
            for (int j = 0; j < n; j++)
                if (!correct[j]) pairs[k][0] = i, pairs[k][1] = j, k++;
    return k;
}

// ---- best-of-k ----------------------------------------------------------------------------------------------

static double log_choose(int n, int k) { return lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0); }

double star_best_of_k(const double* scores, const int* correct, int N, int k) {
    if (k < 1 || k > N) return -1;
    int* order = xmalloc(sizeof(int) * (size_t)N);
    for (int i = 0; i < N; i++) order[i] = i;
    for (int i = 1; i < N; i++) {  // insertion sort, descending, stable
        int x = order[i], j = i;
        while (j > 0 && scores[order[j - 1]] < scores[x]) order[j] = order[j - 1], j--;
        order[j] = x;
    }
    double total = 0;
    const double denom = log_choose(N, k);
    for (int i = 0; i <= N - k; i++)
        if (correct[order[i]]) total += exp(log_choose(N - i - 1, k - 1) - denom);
    free(order);
    return total;
}

double star_pass_at_k(int N, int c, int k) {
    if (k < 1 || k > N || c < 0 || c > N) return -1;
    if (N - c < k) return 1.0;
    return 1.0 - exp(log_choose(N - c, k) - log_choose(N, k));
}
