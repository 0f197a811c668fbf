/*
 * `qstar eval --task gsm8k|csqa`: benchmark accuracy of a checkpoint (eval/task_accuracy.c), the
 * Quiet-STaR reference's two protocols: the zero-shot soft accuracy (--metric soft) and zero-shot
 * chain-of-thought with a majority vote (--metric cot-maj). The answer-extraction and voting helpers
 * are exposed for unit tests (tests/test_eval_answers.c).
 */
#ifndef QSTAR_EVAL_TASKS_H
#define QSTAR_EVAL_TASKS_H

#include <stddef.h>

// 1 when argv asks for a benchmark (--task given), so cmd_eval hands over to cmd_eval_task.
int eval_task_requested(int argc, char** argv);
int cmd_eval_task(int argc, char** argv);

// The first integer in s with thousands commas removed, as the reference's extract_first_integer
// (re.search(r'\d+', s.replace(',', ''))): written to out as its digits without leading zeros ("0"
// for zero); returns 0 when s has no digit. Digits only: a sign or a decimal part is not read.
int eval_first_integer(const char* s, char* out, size_t cap);
// Majority vote over n answers (NULL: no number): the most frequent, ties to the one seen first
// (Python's Counter.most_common(1)); a missing answer is a candidate like any other. Returns the
// index of the first vote holding the winner.
int eval_majority(const char* const* answers, int n);

#endif
