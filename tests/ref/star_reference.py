#!/usr/bin/env python3
"""Independent Python reference for the numeric parts of tasks/star_tasks.c, used by
tests/test_star_tasks.c: the C test writes fixed (seeded) inputs as JSON, this script computes from
the notes' formulas and the official code's logic, and the test compares.

  star_reference.py IN.json OUT.json

Input keys (each optional), output the same keys with results:
  arith:   [[a, b], ...]                 -> [target text, as STaR's arithmetic/gen_sums.py writes it]
  q:       [{"successes": [...], "M": m, "estimator": "mean"|"any", "threshold": t}, ...]
                                          -> [{"q": [...], "adv": [...], "critical": c or -1}]
  dedup:   [[path, ...], ...]             -> [[kept index, ...]]  (RFT App. A.3 Algorithm 1)
  bok:     [{"scores": [...], "correct": [...], "k": k}] -> [best-of-k]  (V-STaR Eq. 3)
  passk:   [[N, c, k], ...]               -> [pass@k]
Only the standard library: it runs with any python3.
"""
import json, math, re, sys


def to_str(num):
    return " ".join(list(str(num)))


def arith_target(first_number, second_number):
    # gen_sums.py's gen_examples with include_scrachpad = True, from "<scratch>" on, after "Target:\n"
    input_sum = f'{to_str(first_number)} + {to_str(second_number)}'
    scratch_pad = f'<scratch>\n{input_sum} , C: 0\n'
    carry = 0
    running_sum = ''
    initial = True
    for first_digit, second_digit in reversed(list(zip(list(str(first_number)), list(str(second_number))))):
        dig_sum = int(first_digit) + int(second_digit) + carry
        if not initial:
            scratch_pad += f'{first_digit} + {second_digit} , {running_sum}C: {carry}\n'
        carry = int(dig_sum >= 10)
        running_sum = f'{dig_sum % 10} {running_sum}'
        initial = False
    scratch_pad += f', {running_sum}C: {carry}\n'
    scratch_pad += f'{carry} {running_sum}'.strip() + '\n'
    scratch_pad += '</scratch>\n'
    return "\n" + scratch_pad + to_str(first_number + second_number) + "\n"


def q_case(c):
    m, s = c["M"], c["successes"]
    if c["estimator"] == "any":
        q = [1.0 if x > 0 else 0.0 for x in s]
    else:
        q = [x / m for x in s]
    adv = [0.0] + [q[i] - q[i - 1] for i in range(1, len(q))]
    # Setlur et al.: the first index attaining min_i Q_i (i >= 1), a real drop only
    if len(q) < 2:
        return {"q": q, "adv": adv, "critical": -1}
    lo = min(q[1:])
    c_idx = next(i for i in range(1, len(q)) if q[i] == lo)
    crit = c_idx if adv[c_idx] < -c["threshold"] else -1
    return {"q": q, "adv": adv, "critical": crit}


def get_equation(r):
    # RFT collect_rejection_sampling.py
    return "|".join(re.findall(r"<<([^>]*)>>", r)).replace(" ", "")


def lev(a, b):
    a, b = a.encode(), b.encode()
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
        prev = cur
    return prev[-1]


def dedup(paths):
    kept, keys = [], []
    for r, path in enumerate(paths):
        e = get_equation(path)
        if e not in keys:
            kept.append(r)
            keys.append(e)
            continue
        s = keys.index(e)
        others = [kept[i] for i in range(len(kept)) if i != s]
        if sum(lev(path, paths[o]) for o in others) > sum(lev(paths[kept[s]], paths[o]) for o in others):
            kept[s] = r
    return kept


def best_of_k(scores, correct, k):
    n = len(scores)
    order = sorted(range(n), key=lambda i: -scores[i])  # stable
    return sum(math.comb(n - i - 1, k - 1) * correct[order[i]] for i in range(n - k + 1)) / math.comb(n, k)


def pass_at_k(n, c, k):
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def main():
    inp = json.load(open(sys.argv[1]))
    out = {}
    if "arith" in inp:
        out["arith"] = [arith_target(a, b) for a, b in inp["arith"]]
    if "q" in inp:
        out["q"] = [q_case(c) for c in inp["q"]]
    if "dedup" in inp:
        out["dedup"] = [dedup(p) for p in inp["dedup"]]
    if "bok" in inp:
        out["bok"] = [best_of_k(c["scores"], c["correct"], c["k"]) for c in inp["bok"]]
    if "passk" in inp:
        out["passk"] = [pass_at_k(*c) for c in inp["passk"]]
    json.dump(out, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
