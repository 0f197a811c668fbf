/*
 * The STaR family's task logic (tasks/star_tasks.c): arith problems and the exact scratchpad format,
 * answer extraction and normalisation on well-formed and malformed completions, hints and their
 * removal, task files and their one-line FILE:LINE errors, calculator annotations, equation keys,
 * path deduplication, step splitting, Monte-Carlo Q-values / advantages / critical steps and the
 * best-of-k estimator — the numeric parts also against tests/ref/star_reference.py on seeded inputs.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/proc.h"
#include "tasks/star_tasks.h"
#include "common/util.h"
#include "tests/check.h"

static void check_norm(const char* in, const char* want) {
    char out[160] = "";
    int ok = star_number_normalize(in, out, sizeof out);
    if (want) CHECK(ok && !strcmp(out, want), "normalize(\"%s\") = %s \"%s\", want \"%s\"", in, ok ? "ok" : "fail", out, want);
    else CHECK(!ok, "normalize(\"%s\") accepted as \"%s\"", in, out);
}

static void check_gsm(const char* completion, const char* want) {
    char out[160] = "";
    int ok = star_gsm8k_extract(completion, out, sizeof out);
    if (want) CHECK(ok && !strcmp(out, want), "gsm8k_extract(%s) = \"%s\", want \"%s\"", completion, out, want);
    else CHECK(!ok, "gsm8k_extract(%s) gave \"%s\", want none", completion, out);
}

static void check_arith_extract(const char* completion, const char* want) {
    char out[160] = "";
    int ok = star_arith_extract(completion, out, sizeof out);
    if (want) CHECK(ok && !strcmp(out, want), "arith_extract(%s) = \"%s\", want \"%s\"", completion, out, want);
    else CHECK(!ok, "arith_extract(%s) gave \"%s\", want none", completion, out);
}

static void check_key(const char* text, const char* want) {
    char* k = star_equation_key(text);
    CHECK(!strcmp(k, want), "equation_key(%s) = \"%s\", want \"%s\"", text, k, want);
    free(k);
}

static void check_expr(const char* s, int ok_want, double want) {
    double v = 0;
    int ok = star_eval_expr(s, &v);
    CHECK(ok == ok_want && (!ok || fabs(v - want) < 1e-9), "eval(\"%s\") = %d %.17g, want %d %.17g", s, ok, v, ok_want, want);
}

static void check_parse_error(int task, const char* text, const char* want_substr) {
    char err[512] = "";
    int n = -1;
    StarItem* it = star_parse_tasks(text, strlen(text), "t.jsonl", task, &n, err, sizeof err);
    CHECK(!it && n == 0, "parse of [%s] should fail", text);
    CHECK(strstr(err, want_substr) != NULL && !strchr(err, '\n'), "error for [%s] is \"%s\", want \"%s\"", text, err,
          want_substr);
    if (it) star_free_tasks(it, n);
}

static void test_arith(void) {
    StarArith p = {624, 259, 3};
    char* q = star_arith_question(&p);
    CHECK(!strcmp(q, "6 2 4 + 2 5 9"), "question %s", q);
    char* t = star_arith_target(&p);
    const char* want =
        "\n<scratch>\n6 2 4 + 2 5 9 , C: 0\n2 + 5 , 3 C: 1\n6 + 2 , 8 3 C: 0\n, 8 8 3 C: 0\n0 8 8 3\n</scratch>\n8 8 3\n";
    CHECK(!strcmp(t, want), "target of 624+259:\n%s", t);
    char* h = star_arith_hint(&p);
    CHECK(!strcmp(h, "0 8 8 3"), "hint %s", h);
    CHECK(star_is_correct(STAR_TASK_ARITH, t, "8 8 3"), "own target is correct");
    CHECK(!star_is_correct(STAR_TASK_ARITH, t, "8 8 4"), "wrong gold accepted");
    free(q), free(t), free(h);
    StarArith c = {95, 17, 2};  // carry out of the top column
    t = star_arith_target(&c);
    h = star_arith_hint(&c);
    CHECK(!strcmp(t, "\n<scratch>\n9 5 + 1 7 , C: 0\n9 + 1 , 2 C: 1\n, 1 2 C: 1\n1 1 2\n</scratch>\n1 1 2\n"), "95+17: %s", t);
    CHECK(!strcmp(h, "1 1 2"), "hint %s", h);
    free(t), free(h);
    StarArith one = {3, 4, 1};
    t = star_arith_target(&one);
    CHECK(!strcmp(t, "\n<scratch>\n3 + 4 , C: 0\n, 7 C: 0\n0 7\n</scratch>\n7\n"), "3+4: %s", t);
    free(t);
    // the generator: digits respected, deterministic, seed- and index-dependent
    int same = 1, differ = 0;
    for (int d = 1; d <= STAR_ARITH_MAX_DIGITS; d++)
        for (int i = 0; i < 50; i++) {
            StarArith x, y, z;
            star_arith_problem(7, (uint64_t)i, d, &x);
            star_arith_problem(7, (uint64_t)i, d, &y);
            star_arith_problem(8, (uint64_t)i, d, &z);
            char* qs = star_arith_question(&x);
            StarArith back;
            char err[256];
            int rc = star_arith_parse_question(qs, &back, err, sizeof err);
            CHECK(rc == 0 && back.a == x.a && back.b == x.b && back.digits == d, "round trip of %s: %s", qs, err);
            free(qs);
            same &= x.a == y.a && x.b == y.b;
            differ += x.a != z.a;
        }
    CHECK(same, "the generator is not deterministic");
    CHECK(differ > 800, "seeds 7 and 8 give the same problems too often (%d of 900 differ)", differ);
    // malformed questions
    StarArith bad;
    char err[256];
    const char* bads[] = {"624 + 259", "6 2 4 + 2 5", "6 2 4+2 5 9", "6 2 4 + 2 5 9 ", "0 1 + 2 3", "", "6  2 + 1 1",
                          "1 2 3 4 5 6 7 8 9 1 2 3 4 5 6 7 8 9 1 + 1 2 3 4 5 6 7 8 9 1 2 3 4 5 6 7 8 9 1", "a + b"};
    for (size_t i = 0; i < sizeof bads / sizeof *bads; i++)
        CHECK(star_arith_parse_question(bads[i], &bad, err, sizeof err) != 0 && *err, "\"%s\" parsed", bads[i]);
    // extraction on good and malformed completions
    check_arith_extract("\n<scratch>\n1 + 2 , C: 0\n, 3 C: 0\n0 3\n</scratch>\n3\n", "3");
    check_arith_extract("<scratch>\n</scratch>\n1 0 2 3  \r\nInput:\n", "1 0 2 3");
    check_arith_extract("<scratch>\n</scratch>", NULL);      // nothing after it
    check_arith_extract("<scratch>\n</scratch>\n", NULL);    // an empty line after it
    check_arith_extract("<scratch>\n</scratch>\n\n3\n", NULL);  // the answer must be the next line
    check_arith_extract("<scratch>\n1 2 3\n", NULL);          // unfinished
    check_arith_extract("", NULL);
    check_arith_extract("</scratch> 3\n4\n", NULL);           // not a line of its own
    check_arith_extract("a\n</scratch>\n5 5\n</scratch>\n6\n", "5 5");  // the first one
    CHECK(!star_is_correct(STAR_TASK_ARITH, "<scratch>\n</scratch>\n8 8 3 \n", "8 8"), "prefix accepted");
    CHECK(star_is_correct(STAR_TASK_ARITH, "<scratch>\n</scratch>\n8 8 3 \n", "8 8 3"), "trailing space rejected");
    CHECK(!star_is_correct(STAR_TASK_ARITH, "<scratch>\n</scratch>\n883\n", "8 8 3"), "unspaced accepted");
}

static void test_gsm8k(void) {
    check_norm("72", "72");
    check_norm(" 72\n", "72");
    check_norm("72.0", "72");
    check_norm("72.00", "72");
    check_norm("+72", "72");
    check_norm("$72", "72");
    check_norm("-$5", "-5");
    check_norm("$-5", "-5");
    check_norm("1,234", "1234");
    check_norm("$1,234.50", "1234.5");
    check_norm("0.5", "0.5");
    check_norm(".5", "0.5");
    check_norm("5.", "5");
    check_norm("072", "72");
    check_norm("-0", "0");
    check_norm("-0.0", "0");
    check_norm("0", "0");
    check_norm("72 dollars", "72");
    check_norm("72.", "72");
    check_norm("72, so", "72");
    check_norm("3/4", NULL);
    check_norm("2x", NULL);
    check_norm("1e5", NULL);
    check_norm("1.2.3", NULL);
    check_norm("", NULL);
    check_norm("  ", NULL);
    check_norm("five", NULL);
    check_norm("$", NULL);
    check_norm("-", NULL);
    check_norm("--5", NULL);
    check_norm("12345678901234567890123456789012345678901234567890123456789012345678901234567890"
               "12345678901234567890123456789012345678901234567890",
               NULL);
    check_gsm("She sold 72.\n#### 72", "72");
    check_gsm("#### 1,000\n#### 5", "1000");      // the first #### line
    check_gsm("a #### b #### 9\n", "9");          // the last #### of that line
    check_gsm("#### $18.00<|endoftext|>", NULL);  // the end-of-text marker is not stripped here
    check_gsm("#### $18.00 ", "18");
    check_gsm("####\n72", NULL);                  // nothing on the #### line
    check_gsm("no answer line", NULL);
    check_gsm("", NULL);
    check_gsm("#### seventy", NULL);
    check_gsm("### 72", NULL);
    CHECK(star_is_correct(STAR_TASK_GSM8K, "x\n#### 72.0", "72"), "72.0 vs 72");
    CHECK(star_is_correct(STAR_TASK_GSM8K, "#### +72", " 72"), "+72");
    CHECK(!star_is_correct(STAR_TASK_GSM8K, "#### 7.2", "72"), "7.2 vs 72");
    CHECK(!star_is_correct(STAR_TASK_GSM8K, "#### 72", "bad gold"), "bad gold");
}

static void test_hints(void) {
    char* p = star_prompt(STAR_TASK_GSM8K, "How many?", NULL);
    CHECK(!strcmp(p, "Q: How many?\nA:"), "gsm8k prompt %s", p);
    char* h = star_prompt(STAR_TASK_GSM8K, "How many?", "72");
    CHECK(!strcmp(h, "Q: How many? (72)\nA:"), "gsm8k hinted prompt %s", h);
    char* r = star_remove_hint(STAR_TASK_GSM8K, h, "72");
    CHECK(r && !strcmp(r, p), "gsm8k hint removal: %s", r ? r : "(null)");
    free(r);
    r = star_remove_hint(STAR_TASK_GSM8K, h, "73");
    CHECK(!r, "removed a hint that is not there");
    free(r);
    r = star_remove_hint(STAR_TASK_GSM8K, p, "72");
    CHECK(!r, "removed a hint from an unhinted prompt");
    free(r);
    free(p), free(h);
    p = star_prompt(STAR_TASK_ARITH, "6 2 4 + 2 5 9", NULL);
    CHECK(!strcmp(p, "Input:\n6 2 4 + 2 5 9\nTarget:"), "arith prompt %s", p);
    h = star_prompt(STAR_TASK_ARITH, "6 2 4 + 2 5 9", "0 8 8 3");
    CHECK(!strcmp(h, "Input:\n6 2 4 + 2 5 9\nTarget: 0 8 8 3"), "arith hinted prompt %s", h);
    r = star_remove_hint(STAR_TASK_ARITH, h, "0 8 8 3");
    CHECK(r && !strcmp(r, p), "arith hint removal: %s", r ? r : "(null)");
    free(r);
    r = star_remove_hint(STAR_TASK_ARITH, "Input:\n1 + 2\nTarget:x 0 3", "0 3");
    CHECK(!r, "removed a hint not right after Target:");
    free(r);
    r = star_remove_hint(STAR_TASK_ARITH, "0 3", "0 3");
    CHECK(!r, "short text");
    free(r);
    free(p), free(h);
}

static void test_files(void) {
    const char* good =
        "{\"question\": \"Q1?\", \"answer\": \"a <<2*3=6>>6\\n#### 6\"}\n\n  \n"
        "{\"question\": \"Q2?\", \"answer\": \"#### 1,000.0\"}";
    char err[512] = "";
    int n = 0;
    StarItem* it = star_parse_tasks(good, strlen(good), "g.jsonl", STAR_TASK_GSM8K, &n, err, sizeof err);
    CHECK(it && n == 2, "good gsm8k file: %s", err);
    if (it && n == 2) {
        CHECK(!strcmp(it[0].gold, "6") && !strcmp(it[1].gold, "1000") && it[1].line == 4, "gsm8k items %s %s %d",
              it[0].gold, it[1].gold, it[1].line);
        CHECK(!strcmp(it[0].question, "Q1?") && strstr(it[0].solution, "<<2*3=6>>"), "gsm8k fields");
    }
    star_free_tasks(it, n);
    const char* ar = "{\"question\": \"6 2 4 + 2 5 9\", \"answer\": \"8 8 3\"}\n";
    it = star_parse_tasks(ar, strlen(ar), "a.jsonl", STAR_TASK_ARITH, &n, err, sizeof err);
    CHECK(it && n == 1 && !strcmp(it[0].gold, "8 8 3") && it[0].digits == 3 && strstr(it[0].solution, "<scratch>"),
          "good arith file: %s", err);
    star_free_tasks(it, n);
    check_parse_error(STAR_TASK_GSM8K, "{\"question\": \"q\", \"answer\": \"#### 1\"}\nnot json\n", "t.jsonl:2: not a JSON object");
    check_parse_error(STAR_TASK_GSM8K, "[1, 2]\n", "t.jsonl:1: not a JSON object");
    check_parse_error(STAR_TASK_GSM8K, "{\"question\": \"q\"}\n", "t.jsonl:1: no string \"answer\"");
    check_parse_error(STAR_TASK_GSM8K, "\n\n{\"answer\": \"#### 1\"}\n", "t.jsonl:3: no string \"question\"");
    check_parse_error(STAR_TASK_GSM8K, "{\"question\": 5, \"answer\": \"#### 1\"}", "t.jsonl:1: no string \"question\"");
    check_parse_error(STAR_TASK_GSM8K, "{\"question\": \"q\", \"answer\": \"72\"}", "t.jsonl:1: the answer has no \"#### N\"");
    check_parse_error(STAR_TASK_GSM8K, "{\"question\": \"q\", \"answer\": \"#### x\"}", "t.jsonl:1: no number after");
    check_parse_error(STAR_TASK_GSM8K, "{\"question\": \"\", \"answer\": \"#### 1\"}", "t.jsonl:1: empty \"question\"");
    check_parse_error(STAR_TASK_GSM8K, "{\"question\": \"q\", \"answer\": \"#### 1\"", "t.jsonl:1: not a JSON object");
    check_parse_error(STAR_TASK_GSM8K, "\n \n", "t.jsonl: no problems");
    check_parse_error(STAR_TASK_GSM8K, "", "t.jsonl: no problems");
    check_parse_error(STAR_TASK_ARITH, "{\"question\": \"6 2 4 + 2 5 9\", \"answer\": \"8 8 4\"}",
                      "t.jsonl:1: answer \"8 8 4\" is not the sum \"8 8 3\"");
    check_parse_error(STAR_TASK_ARITH, "{\"question\": \"624 + 259\", \"answer\": \"883\"}", "t.jsonl:1: question");
    check_parse_error(STAR_TASK_ARITH, "{\"question\": \"1 2 + 3\", \"answer\": \"1 5\"}", "operands of 2 and 1 digits");
    {
        const char nul[] = "{\"question\": \"q\", \"answer\": \"#### 1\"}\n{\"question\"\0: 1}\n";
        int nn;
        StarItem* x = star_parse_tasks(nul, sizeof nul - 1, "t.jsonl", STAR_TASK_GSM8K, &nn, err, sizeof err);
        CHECK(!x && strstr(err, "t.jsonl:2: a NUL byte"), "NUL byte: %s", err);
    }
    // star_load_tasks: a missing or malformed file exits with one line naming it (in a child)
    mkdir_p("build/test-work/star_tasks");
    const char* path = "build/test-work/star_tasks/bad.jsonl";
    FILE* f = fopen(path, "w");
    fputs("{\"question\": \"6 2 4 + 2 5 9\", \"answer\": \"8 8 3\"}\n{\"question\": \"1 + 2\"}\n", f);
    fclose(f);
    const char* paths[] = {path, "build/test-work/star_tasks/missing.jsonl"};
    const char* wants[] = {"bad.jsonl:2: no string \"answer\" field", "missing.jsonl: cannot read"};
    for (int k = 0; k < 2; k++) {
        int pfd[2];
        if (pipe(pfd)) continue;
        pid_t pid = fork();
        if (pid == 0) {
            dup2(pfd[1], 2);
            close(pfd[0]);
            int nn;
            star_load_tasks(paths[k], STAR_TASK_ARITH, &nn);
            _exit(0);
        }
        close(pfd[1]);
        char buf[1024] = "";
        ssize_t got = 0, r;
        while ((r = read(pfd[0], buf + got, sizeof buf - 1 - (size_t)got)) > 0) got += r;
        buf[got] = 0;
        close(pfd[0]);
        int st;
        waitpid(pid, &st, 0);
        int lines = 0;
        for (char* c = buf; *c; c++) lines += *c == '\n';
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 && lines == 1 && strstr(buf, wants[k]),
              "load %s: status %d, stderr [%s]", paths[k], st, buf);
    }
    // a generated file loads back with the right answers
    const char* gen = "build/test-work/star_tasks/gen.jsonl";
    star_arith_write_file(gen, 3, 40, 1, 5);
    int ng = 0;
    StarItem* g = star_load_tasks(gen, STAR_TASK_ARITH, &ng);
    int right = 1;
    for (int i = 0; i < ng; i++) {
        right &= g[i].digits == 1 + i % 5;
        right &= star_is_correct(STAR_TASK_ARITH, g[i].solution, g[i].gold);
    }
    CHECK(ng == 40 && right, "generated arith file: %d items", ng);
    star_free_tasks(g, ng);
}

static void test_equations(void) {
    check_expr("48/2", 1, 24);
    check_expr("+30+46+38+11+18", 1, 143);
    check_expr("2 * (3 + 4)", 1, 14);
    check_expr("2**3**2", 1, 512);
    check_expr("-2**2", 1, -4);
    check_expr("2**-1", 1, 0.5);
    check_expr("7 % 3", 1, 1);
    check_expr("-7 % 3", 1, 2);
    check_expr("12 x 2", 1, 24);
    check_expr("1,000 * 2", 1, 2000);
    check_expr("0.2*50", 1, 10);
    check_expr("80/100*10", 1, 8);
    check_expr("1/0", 0, 0);
    check_expr("(1+2", 0, 0);
    check_expr("1+", 0, 0);
    check_expr("", 0, 0);
    check_expr("abc", 0, 0);
    check_expr("2 3", 0, 0);
    CHECK(star_annotations_ok("a <<48/2=24>>24 b <<48+24=72>>72"), "good annotations");
    CHECK(star_annotations_ok("no annotations"), "none");
    CHECK(star_annotations_ok("<<12/60=0.2>> <<10/3=3.3333>>"), "within 1e-3");
    CHECK(!star_annotations_ok("<<10/3=3.33>>"), "off by 3e-3 accepted");
    CHECK(!star_annotations_ok("<<48/2=25>>"), "wrong annotation accepted");
    CHECK(!star_annotations_ok("<<48/2>>"), "no '=' accepted");
    CHECK(!star_annotations_ok("<<48/=24>>"), "unparsable accepted");
    CHECK(!star_annotations_ok("<<48/2=24"), "unterminated accepted");
    CHECK(!star_annotations_ok("<<1/0=0>>"), "division by zero accepted");
    check_key("Natalia sold 48/2 = <<48/2=24>>24 clips.\nThen 48+24 = <<48 + 24=72>>72.\n#### 72", "48/2=24|48+24=72");
    check_key("<<+30+46=76>> and <<3 * 4 = 12>>", "+30+46=76|3*4=12");
    check_key("<<a>b>> <<1+1=2>>", "1+1=2");  // <<([^>]*)>>: the first is no annotation
    check_key("She has 5 + 3 = 8 apples, then 8 * 2 = 16.\n#### 16", "5+3=8|8*2=16");
    check_key("It costs $5 + $3 = $8 in total", "5+3=8");
    check_key("12 x 2 = 24 pages", "12x2=24");
    check_key("1,000 - 250 = 750", "1000-250=750");
    check_key("(3 + 4) * 2 = 14.", "(3+4)*2=14");
    check_key("So the answer is 72 = 72.", "");  // no operator
    check_key("Pages 1-2 are torn", "");
    check_key("5, 6 + 2 = 8", "6+2=8");
    check_key("", "");
    check_key("just words\n#### 7", "");
    CHECK(star_levenshtein("kitten", "sitting") == 3 && star_levenshtein("", "abc") == 3 &&
              star_levenshtein("abc", "abc") == 0 && star_levenshtein("flaw", "lawn") == 2,
          "levenshtein");
    // dedup: one per key; the replacement rule; the empty key
    const char* paths[] = {"a <<1+1=2>> x",        "b <<2+2=4>> y", "a <<1+1=2>> x but longer and different",
                           "no equations",         "nothing here",  "c <<1+1=2>>"};
    int kept[6];
    int nk = star_dedup_paths(paths, 6, kept);
    CHECK(nk == 3, "dedup kept %d, want 3", nk);
    CHECK(nk == 3 && kept[0] == 2 && kept[1] == 1, "dedup kept %d %d (the farther path replaces)", kept[0], kept[1]);
    CHECK(star_dedup_paths(paths, 0, kept) == 0, "empty dedup");
}

static void test_rft_select(void) {
    const char* c[] = {
        "a <<2+3=5>> b\n#### 5",        // 0 correct
        "a <<2+3=6>> b\n#### 5",        // 1 right answer, wrong annotation: rejected
        "x <<2+3=5>> y, longer text\n#### 5.0",  // 2 same key as 0, farther from the others? (only one other key)
        "<<3+2=5>>\n#### 5",            // 3 another key
        "#### 4",                        // 4 wrong
        "no answer",                     // 5 malformed
        "",                              // 6 empty
        "<<3+2=5>> again\n#### $5",     // 7 same key as 3
    };
    int kept[8], nc = -1;
    int nk = star_rft_select(STAR_TASK_GSM8K, c, 8, "5", kept, &nc);
    CHECK(nc == 4, "RFT correct and annotated: %d, want 4 (0, 2, 3, 7)", nc);
    CHECK(nk == 2, "RFT kept %d distinct paths, want 2", nk);
    // representatives: key 0's is 0 or 2, key 3's is 3 or 7 — indices into the completions, keys distinct
    if (nk == 2) {
        CHECK((kept[0] == 0 || kept[0] == 2) && (kept[1] == 3 || kept[1] == 7), "RFT kept %d %d", kept[0], kept[1]);
    }
    nk = star_rft_select(STAR_TASK_GSM8K, c + 4, 3, "5", kept, &nc);
    CHECK(nk == 0 && nc == 0, "nothing correct");
    const char* a[] = {"<scratch>\n</scratch>\n8\n", "<scratch>\n</scratch>\n9\n", "x\n</scratch>\n8\n"};
    nk = star_rft_select(STAR_TASK_ARITH, a, 3, "8", kept, &nc);
    CHECK(nc == 2 && nk == 1, "arith: %d correct, %d kept (no equations: one key)", nc, nk);
    // V-STaR pairs
    int corr[] = {1, 0, 1, 0, 0}, pairs[6][2];
    int np = star_preference_pairs(corr, 5, pairs);
    CHECK(np == 6 && pairs[0][0] == 0 && pairs[0][1] == 1 && pairs[2][1] == 4 && pairs[3][0] == 2 && pairs[5][1] == 4,
          "preference pairs: %d", np);
    int none[] = {1, 1};
    CHECK(star_preference_pairs(none, 2, pairs) == 0, "all correct: no pairs");
}

static void test_steps(void) {
    int* st;
    const char* t = "\n\nA: step one\n\nstep two\n#### 5";
    int n = star_split_steps(t, &st);
    CHECK(n == 3 && st[0] == 0 && !strncmp(t + st[1], "step two\n", 9) && !strcmp(t + st[2], "#### 5") &&
              st[3] == (int)strlen(t),
          "steps of [%s]: %d", t, n);
    // the steps concatenate to the text; step 1 carries the blank line after it
    if (n == 3) CHECK(st[1] - st[0] == (int)strlen("\n\nA: step one\n\n"), "blank lines go with the step before");
    if (n == 3) {
        char* p0 = star_step_prefix(t, st, 0);
        char* p2 = star_step_prefix(t, st, 2);
        char* p3 = star_step_prefix(t, st, 3);
        CHECK(!strcmp(p0, "") && !strcmp(p2, "\n\nA: step one\n\nstep two\n") && !strcmp(p3, t), "step prefixes");
        free(p0), free(p2), free(p3);
    }
    free(st);
    n = star_split_steps("", &st);
    CHECK(n == 0 && st[0] == 0, "empty text");
    free(st);
    n = star_split_steps(" \n\t\n", &st);
    CHECK(n == 0, "blank text has %d steps", n);
    free(st);
    n = star_split_steps("one line no newline", &st);
    CHECK(n == 1 && st[1] == 19, "one line");
    free(st);
    n = star_split_steps("a\r\nb\r\n", &st);
    CHECK(n == 2 && st[1] == 3, "CRLF lines");
    free(st);
}

static void test_values_by_hand(void) {
    // Q: 0.8 0.6 0.6 0.0 0.2 0.0 (M = 5, mean): the first pit is step 3 (first index of the min 0)
    int succ[] = {4, 3, 3, 0, 1, 0};
    double q[6], adv[6];
    star_q_values(succ, 6, 5, STAR_Q_MEAN, q);
    int c = star_critical_step(q, 6, 0.0, adv);
    CHECK(c == 3 && fabs(adv[3] + 0.6) < 1e-12 && fabs(adv[1] + 0.2) < 1e-12 && adv[0] == 0, "critical %d", c);
    CHECK(star_critical_step(q, 6, 0.7, adv) == -1, "threshold 0.7 must reject a 0.6 drop");
    star_q_values(succ, 6, 5, STAR_Q_ANY, q);
    c = star_critical_step(q, 6, 0.5, adv);
    CHECK(c == 3 && q[4] == 1.0, "any: critical %d", c);
    int flat[] = {0, 0, 0};
    star_q_values(flat, 3, 5, STAR_Q_MEAN, q);
    CHECK(star_critical_step(q, 3, 0.0, adv) == -1, "no drop, no critical step");
    int rise[] = {1, 5, 5, 2};  // min over i>=1 is step 3
    star_q_values(rise, 4, 5, STAR_Q_MEAN, q);
    CHECK(star_critical_step(q, 4, 0.0, adv) == 3, "rise then fall");
    CHECK(star_critical_step(q, 1, 0.0, adv) == -1, "no steps");
    // best-of-k and pass@k by hand: N = 4, the best-scored is correct
    double sc[] = {0.1, 0.9, 0.5, 0.3};
    int cor[] = {0, 1, 0, 0};
    CHECK(fabs(star_best_of_k(sc, cor, 4, 1) - 0.25) < 1e-12, "best-of-1 = accuracy");
    CHECK(fabs(star_best_of_k(sc, cor, 4, 4) - 1.0) < 1e-12, "best-of-N = top correct");
    CHECK(fabs(star_best_of_k(sc, cor, 4, 2) - 0.5) < 1e-12, "best-of-2 = P(top in the pair)");
    CHECK(star_best_of_k(sc, cor, 4, 5) == -1 && star_best_of_k(sc, cor, 4, 0) == -1, "k out of range");
    CHECK(fabs(star_pass_at_k(10, 3, 1) - 0.3) < 1e-12 && star_pass_at_k(10, 8, 3) == 1.0, "pass@k");
}

// ---- against tests/ref/star_reference.py ---------------------------------------------------------------

static uint64_t rng_state = 12345;
static uint32_t rnd(uint32_t n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % n;
}

static void test_against_python(void) {
    const char* py = file_exists(".venv/bin/python") ? ".venv/bin/python" : "python3";
    cJSON* in = cJSON_CreateObject();
    // arith targets
    cJSON* ar = cJSON_AddArrayToObject(in, "arith");
    StarArith probs[60];
    for (int i = 0; i < 60; i++) {
        star_arith_problem(11, (uint64_t)i, 1 + i % 12, &probs[i]);
        cJSON* pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)probs[i].a));
        cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)probs[i].b));
        cJSON_AddItemToArray(ar, pair);
    }
    // Q cases: random success counts, both estimators, thresholds
    enum { NQ = 200 };
    int succ[NQ][12], len[NQ], Ms[NQ], est[NQ];
    double thr[NQ];
    cJSON* qa = cJSON_AddArrayToObject(in, "q");
    for (int i = 0; i < NQ; i++) {
        len[i] = 1 + (int)rnd(11);
        Ms[i] = 1 + (int)rnd(8);
        est[i] = (int)rnd(2);
        thr[i] = rnd(4) * 0.25;
        cJSON* c = cJSON_CreateObject();
        cJSON* s = cJSON_AddArrayToObject(c, "successes");
        for (int j = 0; j < len[i]; j++) {
            // mostly falling values, like real rollouts from a wrong solution
            succ[i][j] = rnd(3) ? (int)rnd((uint32_t)Ms[i] + 1) * (len[i] - j) / len[i] : (int)rnd((uint32_t)Ms[i] + 1);
            cJSON_AddItemToArray(s, cJSON_CreateNumber(succ[i][j]));
        }
        cJSON_AddNumberToObject(c, "M", Ms[i]);
        cJSON_AddStringToObject(c, "estimator", est[i] ? "any" : "mean");
        cJSON_AddNumberToObject(c, "threshold", thr[i]);
        cJSON_AddItemToArray(qa, c);
    }
    // dedup: paths built from a few equations and filler words
    enum { ND = 40 };
    static char paths[ND][10][256];
    int np[ND];
    const char* eqs[] = {"<<1+2=3>>", "<<3*4=12>>", "<<12-5=7>>", "<<7 / 7=1>>"};
    const char* words[] = {"so ", "then ", "we get ", "which makes ", "total ", "hence "};
    cJSON* da = cJSON_AddArrayToObject(in, "dedup");
    for (int i = 0; i < ND; i++) {
        np[i] = 1 + (int)rnd(10);
        cJSON* l = cJSON_CreateArray();
        for (int j = 0; j < np[i]; j++) {
            char* p = paths[i][j];
            p[0] = 0;
            int ne = (int)rnd(3);
            for (int e = 0; e < ne + 2; e++) {
                strcat(p, words[rnd(6)]);
                if (e < ne) strcat(p, eqs[rnd(4)]);
            }
            cJSON_AddItemToArray(l, cJSON_CreateString(p));
        }
        cJSON_AddItemToArray(da, l);
    }
    // best-of-k (distinct scores) and pass@k
    enum { NB = 50 };
    double scores[NB][20];
    int correct[NB][20], bn[NB], bk[NB];
    cJSON* ba = cJSON_AddArrayToObject(in, "bok");
    for (int i = 0; i < NB; i++) {
        bn[i] = 1 + (int)rnd(20);
        bk[i] = 1 + (int)rnd((uint32_t)bn[i]);
        cJSON* c = cJSON_CreateObject();
        cJSON* s = cJSON_AddArrayToObject(c, "scores");
        cJSON* k = cJSON_AddArrayToObject(c, "correct");
        for (int j = 0; j < bn[i]; j++) {
            scores[i][j] = -(double)rnd(100000) / 1000.0 - j * 1e-7;
            correct[i][j] = (int)rnd(2);
            cJSON_AddItemToArray(s, cJSON_CreateNumber(scores[i][j]));
            cJSON_AddItemToArray(k, cJSON_CreateNumber(correct[i][j]));
        }
        cJSON_AddNumberToObject(c, "k", bk[i]);
        cJSON_AddItemToArray(ba, c);
    }
    int pk[30][3];
    cJSON* pa = cJSON_AddArrayToObject(in, "passk");
    for (int i = 0; i < 30; i++) {
        pk[i][0] = 1 + (int)rnd(100);
        pk[i][1] = (int)rnd((uint32_t)pk[i][0] + 1);
        pk[i][2] = 1 + (int)rnd((uint32_t)pk[i][0]);
        cJSON* t = cJSON_CreateArray();
        for (int j = 0; j < 3; j++) cJSON_AddItemToArray(t, cJSON_CreateNumber(pk[i][j]));
        cJSON_AddItemToArray(pa, t);
    }
    mkdir_p("build/test-work/star_tasks");
    char* txt = cJSON_PrintUnformatted(in);
    write_file_atomic("build/test-work/star_tasks/ref_in.json", txt, strlen(txt));
    free(txt);
    cJSON_Delete(in);
    char* const argv[] = {(char*)py, "tests/ref/star_reference.py", "build/test-work/star_tasks/ref_in.json",
                          "build/test-work/star_tasks/ref_out.json", NULL};
    int rc = run_program(argv, NULL, -1, 0);
    CHECK(rc == 0, "star_reference.py failed (%d)", rc);
    if (rc) return;
    size_t olen;
    char* otext = read_file_or_die("build/test-work/star_tasks/ref_out.json", &olen);
    cJSON* out = cJSON_Parse(otext);
    free(otext);
    CHECK(out != NULL, "reference output is not JSON");
    if (!out) return;
    int bad = 0, checked = 0;
    cJSON* o = cJSON_GetObjectItem(out, "arith");
    for (int i = 0; i < 60; i++) {
        char* t = star_arith_target(&probs[i]);
        const char* want = cJSON_GetArrayItem(o, i) ? cJSON_GetArrayItem(o, i)->valuestring : "";
        if (strcmp(t, want)) bad++, printf("arith %llu + %llu:\nqstar  [%s]\npython [%s]\n", (unsigned long long)probs[i].a,
                                            (unsigned long long)probs[i].b, t, want);
        checked++;
        free(t);
    }
    CHECK(bad == 0, "%d of 60 arith targets differ from gen_sums.py's", bad);
    bad = 0;
    int crit_found = 0;
    o = cJSON_GetObjectItem(out, "q");
    for (int i = 0; i < NQ; i++) {
        double q[12], adv[12];
        star_q_values(succ[i], len[i], Ms[i], est[i] ? STAR_Q_ANY : STAR_Q_MEAN, q);
        int c = star_critical_step(q, len[i], thr[i], adv);
        cJSON* r = cJSON_GetArrayItem(o, i);
        int rc_ = cJSON_GetObjectItem(r, "critical")->valueint;
        int diff = c != rc_;
        for (int j = 0; j < len[i]; j++) {
            diff |= fabs(q[j] - cJSON_GetArrayItem(cJSON_GetObjectItem(r, "q"), j)->valuedouble) > 1e-12;
            diff |= fabs(adv[j] - cJSON_GetArrayItem(cJSON_GetObjectItem(r, "adv"), j)->valuedouble) > 1e-12;
        }
        if (diff) bad++, printf("q case %d: critical qstar %d python %d\n", i, c, rc_);
        crit_found += c >= 0;
    }
    CHECK(bad == 0, "%d of %d Q/advantage/critical cases differ from the reference", bad, NQ);
    CHECK(crit_found > 20 && crit_found < NQ - 20, "the Q cases exercise both outcomes (%d critical)", crit_found);
    bad = 0;
    int replaced = 0;
    o = cJSON_GetObjectItem(out, "dedup");
    for (int i = 0; i < ND; i++) {
        const char* ptr[10];
        for (int j = 0; j < np[i]; j++) ptr[j] = paths[i][j];
        int kept[10];
        int nk = star_dedup_paths(ptr, np[i], kept);
        cJSON* r = cJSON_GetArrayItem(o, i);
        int diff = nk != cJSON_GetArraySize(r);
        for (int j = 0; j < nk && !diff; j++) {
            diff |= kept[j] != cJSON_GetArrayItem(r, j)->valueint;
            replaced += j > 0 && kept[j] < kept[j - 1];
        }
        if (diff) bad++, printf("dedup case %d differs\n", i);
    }
    CHECK(bad == 0, "%d of %d dedup cases differ from RFT's algorithm", bad, ND);
    CHECK(replaced > 0, "no dedup case exercised the replacement");
    bad = 0;
    o = cJSON_GetObjectItem(out, "bok");
    for (int i = 0; i < NB; i++) {
        double v = star_best_of_k(scores[i], correct[i], bn[i], bk[i]), w = cJSON_GetArrayItem(o, i)->valuedouble;
        if (fabs(v - w) > 1e-9) bad++, printf("bok %d: %.12f vs %.12f\n", i, v, w);
    }
    CHECK(bad == 0, "%d of %d best-of-k differ", bad, NB);
    bad = 0;
    o = cJSON_GetObjectItem(out, "passk");
    for (int i = 0; i < 30; i++) {
        double v = star_pass_at_k(pk[i][0], pk[i][1], pk[i][2]), w = cJSON_GetArrayItem(o, i)->valuedouble;
        if (fabs(v - w) > 1e-9) bad++, printf("pass@k %d: %.12f vs %.12f\n", i, v, w);
    }
    CHECK(bad == 0, "%d of 30 pass@k differ", bad);
    cJSON_Delete(out);
}

int main(void) {
    test_arith();
    test_gsm8k();
    test_hints();
    test_files();
    test_equations();
    test_rft_select();
    test_steps();
    test_values_by_hand();
    test_against_python();
    return test_summary();
}
