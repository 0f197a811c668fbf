#!/usr/bin/env python3
"""Deterministic generator of the bundled offline corpus: OpenWebMath-like math text.

Quiet-STaR only helps where a token cannot be predicted without working it out, so the corpus is
built around such tokens: results of multi-digit arithmetic, solutions of small linear equations,
sums of fractions and answers to word problems, sometimes with the working written out (column
addition with carries, partial products, align environments) and sometimes bare ("a + b = c").
The surrounding text imitates the kinds of documents OpenWebMath is made of (Q&A threads, forum
posts, lecture notes, answer keys, tutorial posts), in prose and in LaTeX.

Output is JSONL, one document a line: {"text": ..., "answers": [[start, end], ...], "kinds": [...]}
where each [start, end) is a character offset range into text covering the first statement of a
numeric answer that needs working, and kinds[i] names the problem type of answers[i]. The text
itself carries no markers. Text is pure ASCII, so character offsets equal UTF-8 byte offsets.

Determinism: the same --seed/--split/size gives byte-identical output on any machine and Python
3 version. That is why the script has its own PRNG (splitmix64) instead of the `random` module,
uses integer arithmetic only (money is kept in cents), and never iterates over sets.

Standard library only, so it runs with a plain python3 (no venv needed).
"""
import argparse
import json
import os
import sys

MASK64 = (1 << 64) - 1


class Rng:
    """splitmix64: tiny, well-mixed, and fully specified here, so the stream never changes."""

    def __init__(self, seed):
        self.state = seed & MASK64

    def u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n):
        # Modulo bias is ~n/2^64, irrelevant here; what matters is that it is exactly reproducible.
        return self.u64() % n

    def range(self, lo, hi):  # inclusive
        return lo + self.below(hi - lo + 1)

    def pick(self, seq):
        return seq[self.below(len(seq))]

    def chance(self, num, den):
        return self.below(den) < num

    def ndigit(self, d):
        return self.range(10 ** (d - 1), 10 ** d - 1)


# ---------------------------------------------------------------------------------------------
# Answer marking. Problem writers wrap answers in control characters (never present in the ASCII
# content); finish() strips them and records the character spans, so writers can build text with
# plain string formatting and never track offsets by hand.
A_OPEN, A_SEP, A_CLOSE = "\x01", "\x03", "\x02"


def A(value, kind):
    return A_OPEN + kind + A_SEP + str(value) + A_CLOSE


def finish(marked):
    out, spans, kinds = [], [], []
    pos, i, n = 0, 0, len(marked)
    while i < n:
        j = marked.find(A_OPEN, i)
        if j < 0:
            out.append(marked[i:])
            break
        out.append(marked[i:j])
        pos += j - i
        k = marked.index(A_SEP, j)
        e = marked.index(A_CLOSE, k)
        val = marked[k + 1:e]
        spans.append([pos, pos + len(val)])
        kinds.append(marked[j + 1:k])
        out.append(val)
        pos += len(val)
        i = e + 1
    return "".join(out), spans, kinds


# ---------------------------------------------------------------------------------------------
# Formatting helpers. A Style says whether the document writes math in LaTeX and which symbols
# it prefers, so one document stays internally consistent, as real pages are.
class Style:
    def __init__(self, rng, latex):
        self.latex = latex
        if latex:
            self.times = rng.pick([r"\times", r"\times", r"\cdot"])
            self.div = r"\div"
            self.dollar = r"\$"
        else:
            self.times = rng.pick(["*", "x", "*"])
            self.div = rng.pick(["/", "/", ":"])
            self.dollar = "$"

    def m(self, expr):  # inline math
        return "$" + expr + "$" if self.latex else expr

    def frac(self, p, q):
        if q == 1:
            return str(p)
        return r"\frac{%d}{%d}" % (p, q) if self.latex else "%d/%d" % (p, q)

    def money(self, cents):
        return self.dollar + cents_str(cents)


def cents_str(c):
    return str(c // 100) if c % 100 == 0 else "%d.%02d" % (c // 100, c % 100)


def digits_of(n):  # least significant first
    return [int(ch) for ch in reversed(str(n))]


def gcd(a, b):
    while b:
        a, b = b, a % b
    return a


PLACE = ["ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands"]
NAMES = ["Alice", "Ben", "Carla", "Dev", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jamal",
         "Kate", "Liam", "Maya", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sam", "Tara"]
ITEMS = [("notebook", "notebooks"), ("pen", "pens"), ("apple", "apples"), ("ticket", "tickets"),
         ("book", "books"), ("mug", "mugs"), ("shirt", "shirts"), ("box of tea", "boxes of tea"),
         ("bag of rice", "bags of rice"), ("pencil", "pencils"), ("chair", "chairs")]
VARS = ["x", "x", "x", "y", "n", "t", "k", "a"]


def problem_digits(rng):
    return rng.pick([2, 2, 3, 3, 3, 4, 4])


# ---------------------------------------------------------------------------------------------
# Problem writers: each returns (question, solution) strings with answers marked. `steps` asks
# for the worked version; without it the answer follows the expression directly.
def p_add(rng, st, steps):
    a, b = rng.ndigit(problem_digits(rng)), rng.ndigit(problem_digits(rng))
    c = a + b
    q = rng.pick(["Compute %s." % st.m("%d + %d" % (a, b)),
                  "What is %s?" % st.m("%d + %d" % (a, b)),
                  "Find the sum of %d and %d." % (a, b),
                  "Add %d and %d." % (a, b)])
    if not steps:
        return q, st.m("%d + %d = %s" % (a, b, A(c, "add"))) + "."
    da, db = digits_of(a), digits_of(b)
    lines = [rng.pick(["Line the numbers up by place value and add column by column, "
                       "starting from the ones.",
                       "Add column by column from the right, carrying when a column "
                       "reaches 10 or more."])]
    carry = 0
    for i in range(max(len(da), len(db))):
        x = da[i] if i < len(da) else 0
        y = db[i] if i < len(db) else 0
        s = x + y + carry
        expr = "%d + %d" % (x, y) + (" + %d" % carry if carry else "")
        if s >= 10:
            lines.append("%s: %s = %d, write %d and carry 1." % (PLACE[i].capitalize(), expr, s, s - 10))
        else:
            lines.append("%s: %s = %d, write %d." % (PLACE[i].capitalize(), expr, s, s))
        carry = s // 10
    if carry:
        lines.append("The final carry 1 becomes the leading digit.")
    lines.append("So %s." % st.m("%d + %d = %s" % (a, b, A(c, "add"))))
    return q, "\n".join(lines)


def p_sub(rng, st, steps):
    a, b = rng.ndigit(problem_digits(rng)), rng.ndigit(problem_digits(rng))
    if a < b:
        a, b = b, a
    if a == b:
        a += rng.range(1, 99)
    c = a - b
    q = rng.pick(["Compute %s." % st.m("%d - %d" % (a, b)),
                  "What is %s?" % st.m("%d - %d" % (a, b)),
                  "Subtract %d from %d." % (b, a),
                  "Find the difference %s." % st.m("%d - %d" % (a, b))])
    if not steps:
        return q, st.m("%d - %d = %s" % (a, b, A(c, "sub"))) + "."
    # Equal-additions borrowing: a borrow is paid back by adding 1 to the next subtrahend digit,
    # which keeps every intermediate number non-negative and easy to state.
    da, db = digits_of(a), digits_of(b)
    lines = ["Subtract column by column from the right, borrowing when the top digit is too small."]
    borrow = 0
    for i in range(len(da)):
        x = da[i]
        y = db[i] if i < len(db) else 0
        need = y + borrow
        head = PLACE[i].capitalize() + ": "
        if borrow:
            head += "%d plus the borrowed 1 is %d; " % (y, need)
        if x < need:
            lines.append(head + "%d is less than %d, so borrow: %d - %d = %d." % (x, need, x + 10, need, x + 10 - need))
            borrow = 1
        else:
            if i >= len(db) and not borrow:
                lines.append(head + "bring down %d." % x)
            else:
                lines.append(head + "%d - %d = %d." % (x, need, x - need))
            borrow = 0
    lines.append("So %s." % st.m("%d - %d = %s" % (a, b, A(c, "sub"))))
    return q, "\n".join(lines)


def p_mul(rng, st, steps):
    a = rng.ndigit(rng.pick([2, 3, 3, 4]))
    b = rng.ndigit(rng.pick([1, 1, 2, 2, 3])) if a < 1000 else rng.ndigit(rng.pick([1, 2]))
    if b < 2:
        b = rng.range(2, 9)
    c = a * b
    T = st.times
    q = rng.pick(["Compute %s." % st.m("%d %s %d" % (a, T, b)),
                  "What is %s?" % st.m("%d %s %d" % (a, T, b)),
                  "Find the product of %d and %d." % (a, b),
                  "Multiply %d by %d." % (a, b)])
    if not steps:
        return q, st.m("%d %s %d = %s" % (a, T, b, A(c, "mul"))) + "."
    if b < 10:
        lines = ["Multiply %d by each digit of %d, from the right, carrying as we go." % (b, a)]
        carry = 0
        for i, d in enumerate(digits_of(a)):
            p = d * b + carry
            expr = "%d %s %d" % (b, T, d) if st.latex else "%d * %d" % (b, d)
            expr = st.m(expr + (" + %d" % carry if carry else "") + " = %d" % p)
            if i == len(str(a)) - 1:
                lines.append("%s: %s, write %d." % (PLACE[i].capitalize(), expr, p))
            else:
                lines.append("%s: %s, write %d and carry %d." % (PLACE[i].capitalize(), expr, p % 10, p // 10))
            carry = p // 10
        lines.append("So %s." % st.m("%d %s %d = %s" % (a, T, b, A(c, "mul"))))
        return q, "\n".join(lines)
    # Partial products by place value of the multiplier.
    parts = [(d * 10 ** i) for i, d in enumerate(digits_of(b)) if d][::-1]
    prods = [a * p for p in parts]
    split = " + ".join(str(p) for p in parts)
    terms = " + ".join("%d %s %d" % (a, T, p) for p in parts)
    sums = " + ".join(str(p) for p in prods)
    if len(parts) == 1:  # b is a round number like 40: nothing to add up
        return q, "Since %s, %s." % (st.m("%d = %d" % (b, parts[0])), st.m("%d %s %d = %s" % (a, T, b, A(c, "mul"))))
    if st.latex and rng.chance(1, 2):
        body = ("Split %d as %s and distribute:\n\\begin{align}\n"
                "%d %s %d &= %s \\\\\n&= %s \\\\\n&= %s\n\\end{align}" % (b, st.m(split), a, T, b, terms, sums, A(c, "mul")))
        return q, body
    lines = ["Write %s and use partial products:" % st.m("%d = %s" % (b, split))]
    for p, r in zip(parts, prods):
        lines.append(st.m("%d %s %d = %d" % (a, T, p, r)))
    lines.append("Adding them, %s." % st.m("%s = %s" % (sums, A(c, "mul"))))
    return q, "\n".join(lines)


def p_div(rng, st, steps):
    b = rng.range(3, 29)
    qv = rng.ndigit(rng.pick([2, 2, 3]))
    a = b * qv
    D = st.div
    q = rng.pick(["Compute %s." % st.m("%d %s %d" % (a, D, b)),
                  "What is %d divided by %d?" % (a, b),
                  "Divide %d by %d." % (a, b)])
    if not steps:
        return q, st.m("%d %s %d = %s" % (a, D, b, A(qv, "div"))) + "."
    # Chunking: take off the largest multiple of b times a power of ten, repeatedly.
    lines = ["Take away multiples of %d in chunks:" % b]
    rest, chunks = a, []
    for i in reversed(range(len(str(qv)))):
        d = (rest // (b * 10 ** i))
        if d:
            chunk = d * 10 ** i
            lines.append(st.m("%d %s %d = %d" % (b, st.times, chunk, b * chunk)) +
                         ", leaving %s." % st.m("%d - %d = %d" % (rest, b * chunk, rest - b * chunk)))
            rest -= b * chunk
            chunks.append(chunk)
    lines.append("The chunks add up to %s, so %s." % (st.m(" + ".join(map(str, chunks)) + " = %d" % qv),
                                                       st.m("%d %s %d = %s" % (a, D, b, A(qv, "div")))))
    return q, "\n".join(lines)


def p_linear(rng, st, steps):
    v = rng.pick(VARS)
    a = rng.range(2, 12)
    x = rng.range(1, 30) if rng.chance(7, 8) else -rng.range(1, 9)
    b = rng.range(1, 99)
    minus = rng.chance(1, 3)
    c = a * x - b if minus else a * x + b
    lhs = "%d%s %s %d" % (a, v, "-" if minus else "+", b)
    eq = "%s = %d" % (lhs, c)
    q = rng.pick(["Solve %s for %s." % (st.m(eq), st.m(v)),
                  "Find %s if %s." % (st.m(v), st.m(eq)),
                  "Solve the equation %s." % st.m(eq)])
    mid = c + b if minus else c - b
    if not steps:
        return q, rng.pick(["%s, so %s." % (st.m("%d%s = %d" % (a, v, mid)), st.m("%s = %s" % (v, A(x, "linear")))),
                            "The solution is %s." % st.m("%s = %s" % (v, A(x, "linear")))])
    op = ("Add %d to" % b) if minus else ("Subtract %d from" % b)
    if st.latex and rng.chance(1, 2):
        return q, ("%s both sides, then divide by %d:\n\\begin{align}\n%s &= %d \\\\\n%d%s &= %d \\\\\n%s &= %s\n\\end{align}"
                   % (op, a, lhs, c, a, v, mid, v, A(x, "linear")))
    lines = ["%s both sides: %s." % (op, st.m("%d%s = %d %s %d = %d" % (a, v, c, "+" if minus else "-", b, mid))),
             "Divide both sides by %d: %s." % (a, st.m("%s = %s = %s" % (v, st.frac(mid, a) if st.latex else "%d/%d" % (mid, a), A(x, "linear"))))]
    if rng.chance(1, 2):
        T = "*" if st.times == "x" else st.times  # "6 x 1" would read as the variable x
        lines.append("Check: %s." % st.m("%d %s %d %s %d = %d" % (a, T, x, "-" if minus else "+", b, c)
                                         if x >= 0 else "%d %s (%d) %s %d = %d" % (a, T, x, "-" if minus else "+", b, c)))
    return q, "\n".join(lines)


def p_frac(rng, st, steps):
    b, d = rng.range(2, 12), rng.range(2, 12)
    a, c = rng.range(1, b - 1) if b > 2 else 1, rng.range(1, d - 1) if d > 2 else 1
    l = b * d // gcd(b, d)
    num = a * (l // b) + c * (l // d)
    g = gcd(num, l)
    p, qd = num // g, l // g
    expr = "%s + %s" % (st.frac(a, b), st.frac(c, d))
    q = rng.pick(["Compute %s." % st.m(expr), "Simplify %s." % st.m(expr), "What is %s?" % st.m(expr)])
    ans = A(st.frac(p, qd), "frac")
    if not steps:
        return q, st.m("%s = %s" % (expr, ans)) + "."
    lines = ["The least common denominator of %d and %d is %d." % (b, d, l),
             st.m("%s = %s + %s = %s" % (expr, st.frac(a * (l // b), l), st.frac(c * (l // d), l), st.frac(num, l)))
             + (", and dividing top and bottom by %d gives %s." % (g, st.m(ans)) if g > 1 else
                ", which is already in lowest terms. So the answer is %s." % st.m(ans))]
    return q, "\n".join(lines)


def p_shop(rng, st, steps):
    name = rng.pick(NAMES)
    one, many = rng.pick(ITEMS)
    n = rng.range(2, 19)
    price = rng.range(2, 60) * 100 + rng.pick([0, 0, 0, 25, 50, 75, 99, 49, 10])
    total = n * price
    pay = ((total // 2000) + 1) * 2000 if rng.chance(1, 2) else None
    if pay is not None and rng.chance(1, 2):
        pay += 5000
    q = "%s buys %d %s at %s each. How much does %s spend in total?" % (name, n, many, st.money(price), name)
    if pay is not None:
        q = q[:-1] + (", and how much change does %s get from %s?" % (name, st.money(pay)) if rng.chance(1, 2)
                      else "? If %s pays with %s, what is the change?" % (name, st.money(pay)))
    if steps:
        sol = "The total is %s dollars." % st.m("%d %s %s = %s" % (n, st.times, cents_str(price), A(cents_str(total), "shop")))
        if pay is not None:
            sol += " The change is %s dollars." % st.m("%s - %s = %s" % (cents_str(pay), cents_str(total),
                                                                          A(cents_str(pay - total), "shop")))
    else:
        sol = "Total: %s%s." % (st.dollar, A(cents_str(total), "shop"))
        if pay is not None:
            sol += " Change: %s%s." % (st.dollar, A(cents_str(pay - total), "shop"))
    return q, sol


def p_rate(rng, st, steps):
    kind = rng.below(3)
    if kind == 0:
        v, t = rng.range(12, 95), rng.range(2, 14)
        veh = rng.pick(["A train", "A car", "A cyclist", "A bus", "A truck"])
        unit = rng.pick(["km", "miles"])
        q = "%s travels at %d %s per hour for %d hours. How far does it go?" % (veh, v, unit, t)
        if steps:
            return q, "Distance is speed times time: %s %s." % (st.m("%d %s %d = %s" % (v, st.times, t, A(v * t, "rate"))), unit)
        return q, "It goes %s %s." % (A(v * t, "rate"), unit)
    if kind == 1:
        t, v = rng.range(2, 12), rng.range(11, 89)
        d = v * t
        q = "A runner covers %d meters in %d minutes at a steady pace. How many meters per minute is that?" % (d, t)
        if steps:
            return q, "Speed is distance over time: %s meters per minute." % st.m("%d %s %d = %s" % (d, st.div, t, A(v, "rate")))
        return q, "The pace is %s meters per minute." % A(v, "rate")
    name = rng.pick(NAMES)
    w, h = rng.range(9, 38), rng.range(6, 45)
    q = "%s earns %s per hour and works %d hours this week. What is %s's pay for the week?" % (name, st.money(w * 100), h, name)
    if steps:
        return q, "Pay is rate times hours: %s dollars." % st.m("%d %s %d = %s" % (w, st.times, h, A(w * h, "rate")))
    return q, "%s earns %s%s." % (name, st.dollar, A(w * h, "rate"))


def p_age(rng, st, steps):
    n1, n2 = rng.pick(NAMES), rng.pick(NAMES)
    while n2 == n1:
        n2 = rng.pick(NAMES)
    young = rng.range(3, 45)
    k = rng.range(2, 30)
    s = 2 * young + k
    q = "%s is %d years older than %s. The sum of their ages is %d. How old is each of them?" % (n1, k, n2, s)
    if not steps:
        return q, "%s is %s and %s is %s." % (n2, A(young, "age"), n1, A(young + k, "age"))
    v = rng.pick(["a", "x", "y"])
    return q, ("Let %s's age be %s. Then %s, so %s and %s. %s is %s." %
               (n2, st.m(v), st.m("%s + (%s + %d) = %d" % (v, v, k, s)), st.m("2%s = %d - %d = %d" % (v, s, k, s - k)),
                st.m("%s = %d %s 2 = %s" % (v, s - k, st.div, A(young, "age"))), n1,
                st.m("%d + %d = %s" % (young, k, A(young + k, "age")))))


def p_percent(rng, st, steps):
    p = rng.pick([5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 12, 35])
    step = 100 // gcd(p, 100)
    n = step * rng.range(2, 900 // step + 2)
    r = n * p // 100
    pct = r"%d\%%" % p if st.latex else "%d%%" % p
    q = rng.pick(["What is %s of %d?" % (st.m(pct), n),
                  "A jacket costs %s and is on sale for %s off. How much is the discount?" % (st.money(n * 100), st.m(pct))])
    if steps:
        return q, "%s" % st.m("%s \\text{ of } %d = %d %s %d %s 100 = %d %s 100 = %s" % (pct, n, p, st.times, n, st.div, p * n, st.div, A(r, "percent"))
                              if st.latex else "%s of %d = %d * %d / 100 = %d / 100 = %s" % (pct, n, p, n, p * n, A(r, "percent"))) + "."
    return q, "The answer is %s." % A(r, "percent")


PROBLEMS = [(p_add, 4), (p_sub, 3), (p_mul, 4), (p_div, 2), (p_linear, 4), (p_frac, 2),
            (p_shop, 2), (p_rate, 2), (p_age, 1), (p_percent, 1)]
ARITH = [p_add, p_sub, p_mul, p_div]


def pick_problem(rng, pool=None):
    if pool is not None:
        return rng.pick(pool)
    total = sum(w for _, w in PROBLEMS)
    r = rng.below(total)
    for f, w in PROBLEMS:
        if r < w:
            return f
        r -= w
    return PROBLEMS[-1][0]


# ---------------------------------------------------------------------------------------------
# Document writers: each assembles problems into one page-like document no longer than max_len
# characters (a problem that would overflow is dropped, so every document stays well formed).
TOPICS = {p_add: "addition", p_sub: "subtraction", p_mul: "multiplication", p_div: "division",
          p_linear: "linear equations", p_frac: "fractions", p_shop: "word problems",
          p_rate: "rates", p_age: "age problems", p_percent: "percentages"}


def visible_len(s):
    return len(finish(s)[0])


def doc_qa(rng, max_len):
    st = Style(rng, rng.chance(3, 4))
    f = pick_problem(rng)
    steps = rng.chance(2, 3)
    q, sol = f(rng, st, steps)
    title = rng.pick(["How do I do this %s problem?" % TOPICS[f].rstrip("s"),
                      "Help with %s" % TOPICS[f], "Question about %s" % TOPICS[f],
                      "Simple %s question" % TOPICS[f].rstrip("s"), "Checking my answer (%s)" % TOPICS[f]])
    parts = [title + "\n", q]
    parts.append(rng.pick(["", "I keep getting a different answer from the book. What am I doing wrong?",
                           "I am not sure how to set this up.", "Is there a quick way to do this by hand?",
                           "This is from my homework, I just want to check my method."]))
    parts.append(rng.pick(["\n%d Answers\n" % rng.range(1, 4), "\nAnswer\n", "\n---\n"]))
    if steps:
        parts.append(rng.pick(["Here is one way to do it.", "Work it out step by step.", "", "Let's do it carefully."]))
    parts.append(sol)
    parts.append(rng.pick(["", "Hope this helps.", "-- answered by %s" % rng.pick(NAMES).lower() + str(rng.range(1, 999)),
                           "You can always check the result by going backwards."]))
    text = "\n".join(p for p in parts if p)
    if rng.chance(1, 3):  # a follow-up comment or second answer, if it fits
        g = f if rng.chance(1, 2) else pick_problem(rng)
        q2, sol2 = g(rng, st, rng.chance(1, 2))
        extra = "\n\nComment: a similar one, %s %s" % (q2[0].lower() + q2[1:], sol2)
        if visible_len(text + extra) <= max_len:
            text += extra
    return text


def doc_notes(rng, max_len):
    st = Style(rng, rng.chance(4, 5))
    f0 = pick_problem(rng)
    title = rng.pick(["Lecture %d: %s" % (rng.range(1, 24), TOPICS[f0].capitalize()),
                      "Notes on %s" % TOPICS[f0], "Section %d.%d %s" % (rng.range(1, 9), rng.range(1, 9), TOPICS[f0].capitalize()),
                      "Worked examples: %s" % TOPICS[f0]])
    text = title + "\n\n" + rng.pick(["In this section we work through a few examples.",
                                      "The examples below show the method in full detail.",
                                      "We review the method with several examples, then leave some for practice.",
                                      "Definition. A worked example is a problem solved with every step shown."])
    k = 1
    while True:
        f = f0 if rng.chance(2, 3) else pick_problem(rng)
        q, sol = f(rng, st, rng.chance(4, 5))
        block = "\n\nExample %d. %s\n%s\n%s" % (k, q, rng.pick(["Solution.", "Solution:", "Answer."]), sol)
        if rng.chance(1, 4):
            block += "\n" + rng.pick(["Remark. The same method works for larger numbers.",
                                      "Remark. It is a good habit to check the answer.",
                                      "Note that estimating first catches most slips."])
        if visible_len(text + block) > max_len and k > 1:
            break
        text += block
        k += 1
        if k > 12:
            break
    return text


def doc_forum(rng, max_len):
    st = Style(rng, rng.chance(1, 4))
    user = rng.pick(NAMES).lower() + str(rng.range(1, 99))
    f = pick_problem(rng)
    q, sol = f(rng, st, rng.chance(1, 2))
    text = "%s\n\nPost by %s on %s %d, %d\n\n%s%s" % (
        rng.pick(["Re: stuck on %s" % TOPICS[f], "%s help please" % TOPICS[f].capitalize(), "quick question",
                  "Re: homework check"]),
        user, rng.pick(["Jan", "Mar", "Apr", "Jun", "Sep", "Oct", "Nov"]), rng.range(1, 28), rng.range(2004, 2023),
        rng.pick(["Hi all,\n", "Hello,\n", "Hey, ", "Can someone check this? "]), q)
    reply = "\n\nReply from %s:\n%s" % (rng.pick(NAMES).lower() + str(rng.range(1, 99)), sol)
    text += reply
    while rng.chance(1, 2):
        g = pick_problem(rng)
        q2, sol2 = g(rng, st, rng.chance(1, 2))
        more = "\n\n%s: thanks! And what about this one? %s\n%s" % (user, q2, sol2)
        if visible_len(text + more) > max_len:
            break
        text += more
    return text


def doc_answer_key(rng, max_len):
    st = Style(rng, rng.chance(1, 2))
    pool = rng.pick([ARITH, [p_add, p_sub], [p_mul, p_div], [p_linear], [p_frac], None])
    text = rng.pick(["Answer key, worksheet %d" % rng.range(1, 40), "Practice set %d (with answers)" % rng.range(1, 40),
                     "Exercises and answers", "Quiz %d solutions" % rng.range(1, 12)]) + "\n"
    k = 1
    while True:
        f = pick_problem(rng, pool)
        q, sol = f(rng, st, False)
        # Only bare arithmetic restates the problem in its answer; other kinds keep the question,
        # or the answer would be unguessable noise rather than something to work out.
        line = "\n%d. %s" % (k, sol) if f in ARITH and rng.chance(1, 2) else "\n%d. %s %s" % (k, q, sol)
        if visible_len(text + line) > max_len and k > 1:
            break
        text += line
        k += 1
        if k > 40:
            break
    return text


def doc_tutorial(rng, max_len):
    st = Style(rng, rng.chance(2, 3))
    f = rng.pick(ARITH + [p_linear, p_frac])
    text = rng.pick(["How to do %s by hand" % TOPICS[f], "A quick guide to %s" % TOPICS[f],
                     "%s without a calculator" % TOPICS[f].capitalize()])
    text += "\n\n" + rng.pick(["Calculators are handy, but doing it by hand shows why the method works.",
                               "The method below is the one taught in most schools.",
                               "Here is the method, followed by a worked example."])
    q, sol = f(rng, st, True)
    text += "\n\nExample: %s\n%s" % (q, sol)
    if rng.chance(1, 2):
        q2, sol2 = f(rng, st, False)
        more = "\n\nTry one yourself: %s (Answer: %s)" % (q2, sol2.rstrip("."))
        if visible_len(text + more) <= max_len:
            text += more
    return text


DOCS = [(doc_qa, 4), (doc_notes, 3), (doc_forum, 2), (doc_answer_key, 2), (doc_tutorial, 2)]


def make_doc(rng):
    # Lengths spread from ~100 to ~2000 characters, with more short-to-medium documents.
    max_len = rng.pick([300, 500, 700, 900, 1200, 1500, 2000])
    total = sum(w for _, w in DOCS)
    r = rng.below(total)
    for f, w in DOCS:
        if r < w:
            break
        r -= w
    text, spans, kinds = finish(f(rng, max_len))
    return {"text": text, "answers": spans, "kinds": kinds}


SPLIT_SALT = {"train": 0, "heldout": 0x5EED5EED5EED5EED}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output JSONL path ('-' for stdout)")
    ap.add_argument("--split", choices=sorted(SPLIT_SALT), default="train",
                    help="train or heldout: the split salts the seed, so the two never share a stream")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--docs", type=int, default=None, help="number of documents (overrides --mb)")
    ap.add_argument("--mb", type=float, default=None,
                    help="stop once this many MB of text are written (default 3 for train, 0.3 for heldout)")
    args = ap.parse_args()
    if args.docs is None and args.mb is None:
        args.mb = 3.0 if args.split == "train" else 0.3
    rng = Rng(args.seed ^ SPLIT_SALT[args.split])
    limit = None if args.docs is not None else int(args.mb * 1_000_000)
    out = sys.stdout if args.out == "-" else open(args.out + ".tmp", "w", encoding="ascii", newline="\n")
    n, size = 0, 0
    while (args.docs is not None and n < args.docs) or (limit is not None and size < limit):
        d = make_doc(rng)
        out.write(json.dumps(d, ensure_ascii=True, separators=(", ", ": ")) + "\n")
        n += 1
        size += len(d["text"])
    if out is not sys.stdout:
        out.close()
        os.replace(args.out + ".tmp", args.out)  # atomic: a killed run never leaves a partial file
    print("gen_corpus: %d docs, %d chars of text -> %s" % (n, size, args.out), file=sys.stderr)


if __name__ == "__main__":
    main()
