/*
 * The self-taught-reasoner family's task logic (docs/star-family.md), as pure functions over text:
 * problems and answer checking per task (`arith`: n-digit addition in STaR's scratchpad format, made
 * by a seeded generator; `gsm8k`: the number after "####", normalised), the hints of rationalization
 * and their removal, RFT's calculator-annotation check, equation keys and deduplication of reasoning
 * paths, stepdpo's step splitting, Monte-Carlo Q-values / advantages / the critical step, and
 * V-STaR's best-of-k estimator. No model, no backend: everything here is unit-tested against hand
 * cases and tests/ref/star_reference.py (tests/test_star_tasks.c).
 */
#ifndef QSTAR_STAR_TASKS_H
#define QSTAR_STAR_TASKS_H

#include <stddef.h>
#include <stdint.h>

enum { STAR_TASK_ARITH, STAR_TASK_GSM8K };
// "arith" / "gsm8k" -> STAR_TASK_*; -1 for anything else.
int star_task_from_name(const char* name);

// ---- arith: n-digit addition, STaR's arithmetic/gen_sums.py format ---------------------------------
// Prompt   "Input:\n6 2 4 + 2 5 9\nTarget:"
// Target   "\n<scratch>\n6 2 4 + 2 5 9 , C: 0\n2 + 5 , 3 C: 1\n6 + 2 , 8 3 C: 0\n, 8 8 3 C: 0\n0 8 8 3\n"
//          "</scratch>\n8 8 3\n"
// The answer is the line after "</scratch>"; the rationalization hint is the scratchpad's last line
// ("0 8 8 3": carry then sum digits) written after "Target:" (STaR's question_to_context).
#define STAR_ARITH_MAX_DIGITS 18
typedef struct {
    uint64_t a, b;
    int digits;
} StarArith;
// Operands uniform in [10^(d-1), 10^d) from a splitmix64 stream keyed by (seed, index): the same
// problem for the same key on every machine.
void star_arith_problem(uint64_t seed, uint64_t index, int digits, StarArith* p);
char* star_arith_question(const StarArith* p);  // "6 2 4 + 2 5 9" (malloc'd)
char* star_arith_answer(const StarArith* p);    // "8 8 3"
char* star_arith_target(const StarArith* p);    // the scratchpad and answer, as above
char* star_arith_hint(const StarArith* p);      // "0 8 8 3"
// Parses "6 2 4 + 2 5 9" (digits separated by single spaces, equal lengths, no leading zero unless
// a single digit). Returns 0 on success, else writes why into err.
int star_arith_parse_question(const char* q, StarArith* p, char* err, size_t errcap);
// The line after the first "</scratch>" line of a completion, without a trailing '\r' or spaces;
// 0 when there is none (no "</scratch>" line, or nothing after it).
int star_arith_extract(const char* completion, char* out, size_t cap);

// ---- gsm8k ---------------------------------------------------------------------------------------------
// Canonical form of a number as written in an answer: "$1,234.50" -> "1234.5", "+72" -> "72",
// "72.0" -> "72", "-0" -> "0", "072" -> "72", "5." -> "5". Spaces around it, a leading '$' (after
// the sign or before it) and thousands commas are dropped; what follows the number must not continue
// it ("3/4", "2x", "1e5" are rejected). Returns 0 when s does not hold exactly one such number
// (trailing words after a space are allowed: "72 dollars" -> "72").
int star_number_normalize(const char* s, char* out, size_t cap);
// The prediction of a GSM8K completion: the text after the last "####" of the first line that holds
// "####" (STaR's rule), normalised. 0 when there is no "####" or no number after it.
int star_gsm8k_extract(const char* completion, char* out, size_t cap);

// ---- both tasks ------------------------------------------------------------------------------------
// Answer check: extract by the task's rule and compare with the gold answer (arith: the exact line;
// gsm8k: the normalised numbers). 1 correct, 0 not.
int star_is_correct(int task, const char* completion, const char* gold);
// The prompt the model continues. arith: "Input:\n<question>\nTarget:" (+ " <hint>" when hint);
// gsm8k: "Q: <question>\nA:" with " (<hint>)" after the question when hint. hint NULL: none.
char* star_prompt(int task, const char* question, const char* hint);
// Hint removal: the hint-free prompt a rationalized example is stored with, recovered from the hinted
// prompt (the exact inverse of star_prompt's insertion). NULL when the hinted prompt does not carry
// the hint where star_prompt puts it.
char* star_remove_hint(int task, const char* hinted_prompt, const char* hint);

// ---- task files (JSON lines) ---------------------------------------------------------------------------
// gsm8k: {"question": ..., "answer": "...\n#### 72"} (the official layout); arith: {"question":
// "6 2 4 + 2 5 9", "answer": "8 8 3"} (the answer must be the sum). Blank lines are skipped.
typedef struct {
    char* question;
    char* gold;      // the normalised answer: "72" (gsm8k), "8 8 3" (arith)
    char* solution;  // gsm8k: the reference solution text; arith: the scratchpad target
    int digits;      // arith: operand length; gsm8k: 0
    int line;        // 1-based line in the file
} StarItem;
// Parses a whole file's text; name is used in messages. On error returns NULL, *n = 0 and writes one
// line "name:LINE: problem" into err.
StarItem* star_parse_tasks(const char* text, size_t len, const char* name, int task, int* n, char* err, size_t errcap);
// Reads path; exits with the one-line error (fatal) on any problem, including an empty file.
StarItem* star_load_tasks(const char* path, int task, int* n);
void star_free_tasks(StarItem* items, int n);
// Writes n generated arith problems (digits lo..hi, cycling) as a task file, atomically.
void star_arith_write_file(const char* path, uint64_t seed, int n, int digits_lo, int digits_hi);

// ---- RFT: calculator annotations, equation keys, deduplication ------------------------------------------
// Evaluates an arithmetic expression (+ - * / ** %, parentheses, unary signs, decimals, 'x' and '×'
// as multiplication, thousands commas between digits). Returns 0 on a parse error or a division by 0.
int star_eval_expr(const char* s, double* out);
// RFT's rejection rule: every <<lhs=rhs>> must satisfy |eval(lhs) - rhs| < 1e-3; an annotation
// that does not parse counts as wrong. 1 when all are right (also when there is none).
int star_annotations_ok(const char* text);
// The path's equation list: the contents of every <<...>> joined by '|' with all spaces removed
// (RFT's get_equation); without annotations, the equations written in the text ("48/2 = 24"): runs of
// numbers, operators and '=' with an operator left of the '=', '$' and spaces removed. malloc'd; ""
// when there are none.
char* star_equation_key(const char* text);
// Character-level edit distance (bytes).
int star_levenshtein(const char* a, const char* b);
// RFT's reasoning-path selection (App. A.3, Algorithm 1): one representative per equation key, in
// order of first appearance; a later path with a taken key replaces the representative when its summed
// edit distance to the other representatives is larger. Writes the kept indices to kept (n entries
// at most); returns their count.
int star_dedup_paths(const char* const* paths, int n, int* kept);

// RFT's rejection and selection for one problem: the completions that are correct (star_is_correct)
// and, on gsm8k, whose calculator annotations are all right (star_annotations_ok), then deduplicated by
// equation key (star_dedup_paths, in sampling order). Writes indices into completions to kept (n
// entries at most) and returns their count; *n_correct (may be NULL) gets the count before dedup.
int star_rft_select(int task, const char* const* completions, int n, const char* gold, int* kept, int* n_correct);

// ---- stepdpo: steps, Monte-Carlo Q-values, the critical step ------------------------------------------
// Splits a solution into steps, one per line: step i is text[starts[i], starts[i+1]) with its '\n';
// blank lines go with the step before them (leading ones with the first step), so the steps
// concatenate to the text. starts gets n+1 entries (the last = strlen). Returns n (0 for blank text).
// starts is malloc'd.
int star_split_steps(const char* text, int** starts);
// Steps 1..i of a split text (i = 0: ""), the prefix the rollouts continue. malloc'd.
char* star_step_prefix(const char* text, const int* starts, int i);
enum { STAR_Q_MEAN, STAR_Q_ANY };
// Q of each prefix i = 0..L (0: the bare question; i: steps 1..i) from successes[i] of M rollouts:
// MEAN the fraction (an estimate of Q under the sampling policy), ANY 1 when at least one rollout
// succeeded (Q under best-of-M, Setlur et al.'s practical estimator).
void star_q_values(const int* successes, int n_prefix, int M, int estimator, double* q);
// adv[i] = q[i] - q[i-1] for i = 1..L, adv[0] = 0. The critical step ("first pit"): the first i >= 1
// attaining min_{i>=1} q[i], provided its advantage is below -threshold (a real drop). Returns it, or
// -1 when there is none (Q never falls).
int star_critical_step(const double* q, int n_prefix, double threshold, double* adv);

// ---- V-STaR ---------------------------------------------------------------------------------------------
// The verifier's preference pairs of one problem: every (correct, incorrect) combination of its samples
// (a Cartesian product), correct-major in sample order. pairs gets c * (n - c) rows {chosen, rejected};
// returns that count.
int star_preference_pairs(const int* correct, int n, int (*pairs)[2]);

// ---- V-STaR: evaluation ---------------------------------------------------------------------------------
// Best-of-k with a verifier (V-STaR Eq. 3): candidates sorted by score, highest first (a stable sort:
// ties keep their order), (1/C(N,k)) Σ_{i=0}^{N-k} C(N-i-1, k-1) α_i. -1 when k < 1 or k > N.
double star_best_of_k(const double* scores, const int* correct, int N, int k);
// Pass@k = 1 - C(N-c, k)/C(N, k) for c correct of N; -1 when k < 1 or k > N.
double star_pass_at_k(int N, int c, int k);

#endif
