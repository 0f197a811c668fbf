#!/usr/bin/env python3
"""Draw the standard panels of one training run from RUN_DIR/metrics.jsonl into one image.

A language-model run (qstar train --mode lm) gets: loss, gradient norm, learning rate, tokens/s.
A Quiet-STaR run (its records carry base_nll) gets: the training objective; next-token NLL without
thoughts (base_nll) and after them (talk_nll_mean, and each talk step's talk_nll[t] faintly); mean
reward and mean advantage; the share of positive advantages; the mean mixing weight; the policy
loss; gradient norm; tokens/s; learning rate. A run started from another run's checkpoint is drawn
on the shared step axis (plot_metrics.run_start) with a dashed marker where it starts, and its NLL
panel shows the earlier run's loss in grey over as many steps before the marker as the run has
after it (at least 10), when that run's metrics are found.
Every panel shows the raw values pale and a centred moving average on top.

Usage:
    python3 tools/plot_run.py RUN_DIR [--out FILE.png|.svg|.pdf] [--smooth K] [--title T]

    --out     default RUN_DIR/metrics.png
    --smooth  moving-average window in points (default: about 1/40 of the run, at least 1; 0: off)

Errors (missing or malformed metrics, no records, matplotlib missing) give one line
"plot_run: error: ..." on stderr and exit status 1; the image is written atomically.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plot_metrics as pm  # noqa: E402

PROG = "plot_run"
GREY = "#9a9a9a"

# (title, [(field, legend label)], y-axis options) per panel; fields a run lacks are left out.
LM_PANELS = [
    ("training loss (nats/token)", [("loss", "loss")], {}),
    ("gradient norm (before clipping)", [("grad_norm", "grad norm")], {}),
    ("learning rate", [("lr", "lr")], {}),
    ("throughput (tokens/s)", [("tokens_per_s", "tokens/s")], {}),
]
QS_PANELS = [
    ("training objective (weighted base + talk + policy)", [("loss", "loss")], {}),
    ("next-token NLL (nats/token)", [("base_nll", "without thought (base)"),
                                      ("talk_nll_mean", "after thought (talk, mean)")], {"parent": True}),
    ("reward and advantage (nats)", [("mean_reward", "mean reward"), ("mean_advantage", "mean advantage")],
     {"zero": True}),
    ("share of positive advantages", [("frac_positive_advantage", "share > 0")], {"unit": (0, 1)}),
    ("mean mixing weight w", [("mean_mix_weight", "w (0: base only, 1: thought only)")], {}),
    ("policy loss (REINFORCE)", [("policy_loss", "policy loss")], {"zero": True}),
    ("gradient norm (before clipping)", [("grad_norm", "grad norm")], {}),
    ("throughput (tokens/s)", [("tokens_per_s", "tokens/s")], {}),
    ("learning rate", [("lr", "lr")], {}),
]


def talk_steps(records):
    n = 0
    for _, obj in records:
        if isinstance(obj.get("talk_nll"), list):
            n = max(n, len(obj["talk_nll"]))
    return n


def build_run_figure(run_dir, smooth=None, title=None):
    Figure = pm.need_matplotlib()
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise pm.PlotError(f"{path}: no such file (is {run_dir} a qstar run directory?)")
    records = pm.read_records(path)
    if not records:
        raise pm.PlotError(f"{path}: no records (the run has not finished a step yet)")
    quietstar = any("base_nll" in obj for _, obj in records)
    panels = QS_PANELS if quietstar else LM_PANELS
    offset, init_model = pm.run_start(path, records)
    n_talk = talk_steps(records) if quietstar else 0
    fields = sorted({f for _, fs, _ in panels for f, _ in fs} | {f"talk_nll[{t}]" for t in range(n_talk)})
    data = pm.series_from_records(path, records, fields, required=False)
    data = {k: [(x + offset, v) for x, v in pts] for k, pts in data.items()}
    n_points = max(len(v) for v in data.values())
    if smooth is None:
        smooth = max(1, n_points // 40)
    parent = None
    if quietstar and offset:
        ppath = pm.parent_metrics(path, init_model)
        if ppath:
            try:
                parent = pm.read_series(ppath, ["loss"])["loss"]
                # its last stretch, as long as this run, so the two can be compared at one scale
                parent = [(x, v) for x, v in parent if offset - max(n_points, 10) < x <= offset]
            except pm.PlotError:
                parent = None  # the earlier run's curve is context only; its absence is not an error

    drawn = [(t, fs, o) for t, fs, o in panels if any(data.get(f) for f, _ in fs)]
    if not drawn:
        raise pm.PlotError(f"{path}: none of the standard fields ({', '.join(fields)}) has a finite value")
    ncols = 3 if len(drawn) > 4 else 2
    nrows = (len(drawn) + ncols - 1) // ncols
    fig = Figure(figsize=(5.2 * ncols, 3.4 * nrows + 0.6), dpi=pm.DPI, layout="constrained")
    # x not shared: only the NLL panel reaches back into the earlier run
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(drawn):]:
        ax.set_visible(False)
    for ax, (ptitle, fs, opts) in zip(axes, drawn):
        k = 0
        if opts.get("parent") and parent:
            pm.draw_curve(ax, parent, "earlier run's loss", GREY, smooth, linewidth=1.4)
        for field, label in fs:
            pts = data.get(field) or []
            if opts.get("logy"):
                pts = [(x, v) for x, v in pts if v > 0]
            if pts:
                pm.draw_curve(ax, pts, label, pm.COLORS[k % len(pm.COLORS)], smooth)
            k += 1
            if field == "talk_nll_mean" and n_talk > 1:
                for t in range(n_talk):  # each talk step's NLL, thin: later talk tokens are harder
                    tp = data.get(f"talk_nll[{t}]") or []
                    if tp:
                        xs, ys = [x for x, _ in tp], pm.moving_average([v for _, v in tp], smooth)
                        ax.plot(xs, ys, color=pm.COLORS[1], alpha=0.35, linewidth=0.8,
                                label="talk step 1..%d" % n_talk if t == 0 else None)
        if opts.get("zero"):
            ax.axhline(0, color="0.5", linewidth=0.8)
        if "unit" in opts:
            ax.set_ylim(-0.02, 1.02)
            ax.yaxis.set_major_formatter(__import__("matplotlib.ticker", fromlist=["x"]).PercentFormatter(1.0))
        if opts.get("logy"):
            ax.set_yscale("log")
        if offset and opts.get("parent") and parent:
            pm.mark_start(ax, offset, f"starts from step {offset}")
        elif offset:  # the panel starts at the marker: the line alone says where the run began
            ax.axvline(offset, color="0.35", linestyle="--", linewidth=1.0, zorder=1, gid="run-start")
        ax.set_title(ptitle, fontsize=10)
        if len(fs) > 1 or (opts.get("parent") and parent):
            ax.legend(fontsize=8, loc="best")
    for ax in axes[max(0, len(drawn) - ncols):len(drawn)]:
        ax.set_xlabel("step")
    last = max(x for pts in data.values() for x, _ in pts) if n_points else 0
    if title is None:
        kind = "Quiet-STaR" if quietstar else "language model"
        title = f"{os.path.normpath(run_dir)}: {kind}, {n_points} steps"
        if offset:
            title += f" (steps {offset + 1}-{int(last)}, continuing {init_model})"
        elif init_model:
            title += f", from {init_model}"
        if smooth > 1:
            title += f"; moving average over {smooth}"
    fig.suptitle(title, fontsize=11)
    return fig


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description="Standard panels of one qstar run's metrics.jsonl.")
    ap.add_argument("run_dir", metavar="RUN_DIR")
    ap.add_argument("--out", help="image file (.png, .svg or .pdf); default RUN_DIR/metrics.png")
    ap.add_argument("--smooth", type=int, metavar="K", help="moving-average window (default: automatic; 0: off)")
    ap.add_argument("--title")
    args = ap.parse_args(argv)
    if argv is None:
        pm.reexec_for_matplotlib()
    out = args.out or os.path.join(args.run_dir, "metrics.png")
    try:
        pm.output_format(out)
        if args.smooth is not None and args.smooth < 0:
            raise pm.PlotError("--smooth must be >= 0")
        fig = build_run_figure(args.run_dir, args.smooth, args.title)
        pm.save_figure(fig, out)
    except pm.PlotError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
