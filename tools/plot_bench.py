#!/usr/bin/env python3
"""Chart of the thought attention benchmark: time of one Quiet-STaR step's attention against the
sequence length L, qstar's structured kernel against the reference's dense masked attention.

Reads what build/bench/bench_thought_attention prints (a file, or '-' for standard input): its
table rows "L n_ahead steps pass struct_ms dense_ms ..." for pass fwd and fwd+bwd. Draws two panels
(forward; forward + backward), log-log, one colour per n_ahead, structured solid with dots, dense
dashed with squares, each point of the dense curve labelled with its dense/structured time ratio.

Usage:
    build/bench/bench_thought_attention --L 256,512,1024 > bench.txt
    python3 tools/plot_bench.py bench.txt OUT.png|OUT.svg [--title T]
    build/bench/bench_thought_attention | python3 tools/plot_bench.py - OUT.png

Errors (unreadable input, no table rows in it, matplotlib missing) give one line
"plot_bench: error: ..." and exit status 1; the image is written atomically.
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot_metrics as pm  # noqa: E402

PROG = "plot_bench"
ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(fwd|fwd\+bwd)\s+([0-9.]+)\s+([0-9.]+)\s")


def parse_bench(text, source):
    """{pass: {n_ahead: [(L, struct_ms, dense_ms), ...]}} from bench_thought_attention's output."""
    rows = {}
    for line in text.splitlines():
        m = ROW.match(line)
        if not m:
            continue
        L, n_ahead, _, kind, s_ms, d_ms = m.groups()
        rows.setdefault(kind, {}).setdefault(int(n_ahead), []).append((int(L), float(s_ms), float(d_ms)))
    if not rows:
        raise pm.PlotError(f"{source}: no rows of the bench_thought_attention table "
                           "(\"L n_ahead steps pass struct ms dense ms ...\")")
    for per in rows.values():
        for v in per.values():
            v.sort()
    return rows


def build_bench_figure(rows, title=None):
    Figure = pm.need_matplotlib()
    kinds = [k for k in ("fwd", "fwd+bwd") if k in rows]
    fig = Figure(figsize=(5.6 * len(kinds), 4.4), dpi=pm.DPI, layout="constrained")
    axes = fig.subplots(1, len(kinds), squeeze=False).ravel()
    for ax, kind in zip(axes, kinds):
        for k, (n_ahead, pts) in enumerate(sorted(rows[kind].items())):
            c = pm.COLORS[k % len(pm.COLORS)]
            Ls = [p[0] for p in pts]
            ax.plot(Ls, [p[1] for p in pts], "-o", color=c, label=f"structured, n_ahead {n_ahead}")
            ax.plot(Ls, [p[2] for p in pts], "--s", color=c, label=f"dense mask, n_ahead {n_ahead}", alpha=0.8)
            for L, s_ms, d_ms in pts:
                ax.annotate(f"{d_ms / s_ms:.1f}×", (L, d_ms), xytext=(4, 4), textcoords="offset points",
                            fontsize=8, color=c)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        Ls = sorted({p[0] for per in rows[kind].values() for p in per})
        ax.set_xticks(Ls, [str(L) for L in Ls])
        ax.minorticks_off()
        ax.set_xlabel("sequence length L")
        ax.set_ylabel("ms per step (one layer)")
        ax.set_title({"fwd": "forward", "fwd+bwd": "forward + backward"}[kind])
        ax.legend(fontsize=8)
    fig.suptitle(title or "thought attention, one Quiet-STaR step: structured vs dense "
                 "(labels: dense / structured time)", fontsize=11)
    return fig


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description="Chart of bench_thought_attention's output.")
    ap.add_argument("input", metavar="BENCH_OUTPUT", help="the benchmark's printed output, or - for stdin")
    ap.add_argument("out", metavar="OUT.png|OUT.svg")
    ap.add_argument("--title")
    args = ap.parse_args(argv)
    if argv is None:
        pm.reexec_for_matplotlib()
    try:
        pm.output_format(args.out)
        if args.input == "-":
            text, source = sys.stdin.read(), "standard input"
        else:
            try:
                with open(args.input, encoding="utf-8") as f:
                    text, source = f.read(), args.input
            except (OSError, UnicodeDecodeError) as e:
                raise pm.PlotError(f"{args.input}: cannot read: {getattr(e, 'strerror', None) or e}")
        pm.save_figure(build_bench_figure(parse_bench(text, source), args.title), args.out)
    except pm.PlotError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
