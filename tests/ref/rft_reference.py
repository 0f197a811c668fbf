#!/usr/bin/env python3
"""Independent Python reference for RFT's per-problem rejection and selection (Yuan et al., App. A.3;
the official collect_rejection_sampling.py logic as docs/star-family.md §3.1 describes it), used by
tests/test_selftrain_parts.c on seeded GSM8K-style completions:

  rft_reference.py IN.json OUT.json

IN:  [{"gold": "72", "completions": ["...", ...]}, ...]
OUT: [{"correct": n, "kept": [index, ...]}, ...]

A completion is kept when the number after its first "####" equals the gold answer, every <<lhs=rhs>>
calculator annotation satisfies |eval(lhs) - rhs| < 1e-3, and its equation list (the annotations' insides
without spaces, joined by '|') is new; a later path with a taken list replaces the representative when
its summed character edit distance to the other representatives is larger. Only the standard library.
"""
import json, re, sys


def answer(text):
    line = next((l for l in text.split("\n") if "####" in l), None)
    if line is None:
        return None
    m = re.match(r"\s*\$?\s*([-+]?[0-9][0-9,]*(\.[0-9]*)?)", line.split("####")[-1])
    if not m:
        return None
    return float(m.group(1).replace(",", ""))


def annotations_ok(text):
    for body in re.findall(r"<<([^>]*)>>", text):
        if "=" not in body:
            return False
        lhs, rhs = body.rsplit("=", 1)
        if not re.fullmatch(r"[0-9+\-*/. ()]+", lhs):
            return False
        try:
            if abs(eval(lhs) - float(rhs)) >= 1e-3:
                return False
        except (ZeroDivisionError, ValueError, SyntaxError):
            return False
    return True


def key(text):
    return "|".join(re.findall(r"<<([^>]*)>>", text)).replace(" ", "")


def edit(a, b):
    a, b = a.encode(), b.encode()
    d = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(b) + 1):
            cur = min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
            prev, d[j] = d[j], cur
    return d[-1]


def select(gold, completions):
    good = [i for i, c in enumerate(completions) if answer(c) == float(gold) and annotations_ok(c)]
    reps = {}  # equation list -> index of its representative, in order of first appearance
    for i in good:
        k = key(completions[i])
        if k not in reps:
            reps[k] = i
            continue
        others = [r for kk, r in reps.items() if kk != k]
        if sum(edit(completions[i], completions[o]) for o in others) > sum(edit(completions[reps[k]], completions[o]) for o in others):
            reps[k] = i
    return {"correct": len(good), "kept": list(reps.values())}


def main():
    cases = json.load(open(sys.argv[1]))
    json.dump([select(c["gold"], c["completions"]) for c in cases], open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
