#!/usr/bin/env python3
"""Plot training curves from qstar metrics.jsonl files with matplotlib (PNG, SVG or PDF by extension).

Training runs write RUN_DIR/metrics.jsonl, one JSON object per optimizer step ({"step": 3,
"loss": 2.41, ...}; Quiet-STaR runs add base_nll, talk_nll_mean, mean_reward, ...). This tool draws
one curve per (run, field) against the step. A run started with `qstar train --model CKPT` from
another run's checkpoint records that checkpoint in its first record ("init_model", "init_step");
such a run is drawn on the shared step axis (its step s at init_step + s, so a Quiet-STaR run that
continues a base run after step 300 starts at 301) with a dashed vertical marker where it starts.
The module is also the library of the other plot_*.py tools (reading, smoothing, saving).

Usage:
    python3 tools/plot_metrics.py OUT.png|OUT.svg|OUT.pdf SERIES [SERIES ...] [options]

    SERIES is  FILE[=LABEL[:FIELD[,FIELD...]]]
        FILE    a metrics.jsonl file
        LABEL   the run's name in the legend (default: the name of FILE's directory)
        FIELD   a key of the JSON objects to plot (default: loss); a list-valued key takes an
                element index, e.g. talk_nll[0]. Each field of each run is one curve, named
                "LABEL FIELD" in the legend.
        The FILE part ends at the last '=', so a path may contain '=' only when a label is given.

Options:
    --title T       chart title (default: the plotted field names)
    --ylabel T      y-axis title (default: the field name(s); "value" when they do not fit)
    --smooth K      centred moving average over K points (window clipped at the ends); the raw
                    curve is still drawn underneath, pale, in the same colour
    --logy          logarithmic y axis (points <= 0 are left out, with a warning)
    --size WxH      image size in pixels at 100 dpi (default 900x540)
    --own-steps     draw every run on its own steps (no shift for runs started from a checkpoint)

Example:
    python3 tools/plot_metrics.py runs/demo/loss.png \\
        runs/demo/base/metrics.jsonl=base:loss \\
        runs/demo/quietstar/metrics.jsonl=quietstar:base_nll,talk_nll_mean --smooth 9

Data handling: blank lines are ignored; a line without the field (or without "step"), or whose
value is NaN, +-inf or not a number, contributes no point; points are ordered by step, and when a
step appears twice (a resumed run appending to the same file) the later line wins. Steps need not
start at 1. A single point is drawn as a dot. Where a run's metrics predate the "init_step" record,
its newest checkpoint's state.json settings.model (if set and readable) gives the starting
checkpoint and that checkpoint's state.json its step.

Errors: a missing/unreadable file, a line that is not valid JSON or not a JSON object, a field
that no line of a file has, nothing plottable at all, or matplotlib missing gives one line on
stderr, "plot_metrics: error: FILE:LINE: ...", and exit status 1 (bad command-line syntax: 2).
The chart is written to a temporary file next to OUT and renamed over it, so a reader never sees
a partial image and a failed run leaves an existing OUT untouched. Same input, same bytes.
"""

import argparse
import glob
import json
import math
import os
import sys
import tempfile

PROG = "plot_metrics"
FORMATS = ("png", "svg", "pdf")
DPI = 100
# matplotlib's default cycle (tab10), fixed here so tests can find each series' colour.
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf"]


class PlotError(Exception):
    pass


def reexec_for_matplotlib():
    """A tool started by an interpreter without matplotlib (a pyenv or conda python3 first on PATH)
    runs itself again under the project's .venv (which sees Debian's python3-matplotlib) or the
    system's /usr/bin/python3, once; if neither has it, need_matplotlib() reports the error."""
    try:
        import matplotlib  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("QSTAR_PLOT_REEXEC"):
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for py in (os.path.join(root, ".venv", "bin", "python"), "/usr/bin/python3"):
        if os.access(py, os.X_OK) and os.path.abspath(py) != os.path.abspath(sys.executable):
            env = dict(os.environ, QSTAR_PLOT_REEXEC="1")
            os.execve(py, [py, os.path.abspath(sys.argv[0])] + sys.argv[1:], env)


def need_matplotlib():
    """Imports matplotlib with the file-only Agg backend; a clear error when it is missing."""
    try:
        import matplotlib
    except ImportError:
        raise PlotError(f"matplotlib is not installed for {sys.executable} (`make deps` installs Debian's "
                        "python3-matplotlib; run the tool with .venv/bin/python or /usr/bin/python3)")
    matplotlib.use("Agg")
    matplotlib.rcParams.update({
        "svg.hashsalt": "qstar",       # stable element ids: same input, same SVG bytes
        "svg.fonttype": "path",        # text as paths: the SVG looks the same without the font
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "legend.frameon": False, "font.size": 10,
    })
    from matplotlib.figure import Figure
    return Figure


# ----------------------------------------------------------------------------------------------
# Reading metrics.
def parse_series_arg(arg):
    path, eq, spec = arg.rpartition("=")
    if not eq:
        path, spec = arg, ""
    if not path:
        raise PlotError(f"series '{arg}': no file before '='")
    label, colon, fields = spec.rpartition(":")
    if not colon:
        label, fields = spec, ""
    label = label or os.path.basename(os.path.dirname(os.path.abspath(path))) or path
    names = [f.strip() for f in fields.split(",") if f.strip()] or ["loss"]
    return path, label, names


def split_field(name):
    """'talk_nll[2]' -> ('talk_nll', 2); 'loss' -> ('loss', None)."""
    if name.endswith("]") and "[" in name:
        key, _, idx = name[:-1].partition("[")
        try:
            return key, int(idx)
        except ValueError:
            raise PlotError(f"field '{name}': index must be an integer")
    return name, None


def as_number(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def read_records(path):
    """The JSON objects of a metrics.jsonl file, in order, as (line number, object)."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise PlotError(f"{path}: cannot read: {reason}")
    out = []
    for lineno, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise PlotError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})")
        if not isinstance(obj, dict):
            raise PlotError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        out.append((lineno, obj))
    return out


def series_from_records(path, records, fields, required=True):
    """{field: [(step, value), ...]} sorted by step, the later line winning on repeats. With
    required=False a field that no line has maps to [] instead of raising."""
    keys = {name: split_field(name) for name in fields}
    points = {name: {} for name in fields}
    seen = {name: False for name in fields}
    listy = {name: False for name in fields}
    for _, obj in records:
        step = as_number(obj.get("step"))
        for name, (key, idx) in keys.items():
            if key not in obj:
                continue
            seen[name] = True
            v = obj[key]
            if idx is not None:
                v = v[idx] if isinstance(v, list) and -len(v) <= idx < len(v) else None
            elif isinstance(v, list):
                listy[name] = True
            v = as_number(v)
            if step is not None and v is not None:
                points[name][step] = v
    for name in fields:
        if not seen[name] and required:
            raise PlotError(f"{path}: no line has the field '{split_field(name)[0]}'")
        if listy[name] and not points[name]:
            raise PlotError(f"{path}: field '{name}' holds lists; pick an element, e.g. {name}[0]")
    return {name: sorted(points[name].items()) for name in fields}


def read_series(path, fields):
    return series_from_records(path, read_records(path), fields)


def _checkpoint_step(ckpt_dir):
    try:
        with open(os.path.join(ckpt_dir, "state.json"), encoding="utf-8") as f:
            step = json.load(f).get("step")
    except (OSError, ValueError, AttributeError):
        return None
    return int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0 else None


def run_start(path, records):
    """(init_step, init_model) of the run whose metrics are at path: where on the shared step axis
    it starts (0: a run of its own) and the checkpoint it started from (None when unknown)."""
    for _, obj in records:  # train writes them into the run's first record
        if "init_step" in obj or "init_model" in obj:
            step = as_number(obj.get("init_step"))
            model = obj.get("init_model") if isinstance(obj.get("init_model"), str) else None
            return (int(step) if step and step > 0 else 0), model
    # Older runs: the newest checkpoint's settings name the --model directory.
    run_dir = os.path.dirname(os.path.abspath(path))
    ckpts = sorted(glob.glob(os.path.join(run_dir, "step_*", "state.json")))
    for state in reversed(ckpts):
        try:
            with open(state, encoding="utf-8") as f:
                model = (json.load(f).get("settings") or {}).get("model")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(model, str) and model:
            for cand in (model, os.path.join(os.path.dirname(run_dir), os.path.basename(os.path.dirname(model)),
                                             os.path.basename(model))):
                step = _checkpoint_step(cand)
                if step:
                    return step, model
            return 0, model
    return 0, None


def parent_metrics(path, init_model):
    """The metrics.jsonl of the run that wrote the checkpoint a run started from, if it is here."""
    if not init_model:
        return None
    run_dir = os.path.dirname(os.path.abspath(path))
    for cand in (os.path.dirname(init_model),
                 os.path.join(os.path.dirname(run_dir), os.path.basename(os.path.dirname(init_model)))):
        m = os.path.join(cand, "metrics.jsonl")
        if os.path.isfile(m) and os.path.abspath(m) != os.path.abspath(path):
            return m
    return None


def moving_average(vals, k):
    if k <= 1 or len(vals) < 2:
        return list(vals)
    half_lo, half_hi = (k - 1) // 2, k // 2
    prefix = [0.0]
    for v in vals:
        prefix.append(prefix[-1] + v)
    out = []
    n = len(vals)
    for i in range(n):
        a, b = max(0, i - half_lo), min(n, i + half_hi + 1)
        out.append((prefix[b] - prefix[a]) / (b - a))
    return out


# ----------------------------------------------------------------------------------------------
# Drawing.
def draw_curve(ax, pts, label, color, smooth=0, logy=False, linewidth=1.8):
    """One curve on ax: a dot for a single point; with smooth > 1 the raw curve pale underneath."""
    xs = [x for x, _ in pts]
    ys = [y for _, y in pts]
    if len(pts) == 1:
        ax.plot(xs, ys, "o", color=color, label=label, markersize=6)
        return
    if smooth > 1:
        ax.plot(xs, ys, color=color, alpha=0.25, linewidth=1.0)
        ys = moving_average(ys, smooth)
    ax.plot(xs, ys, color=color, label=label, linewidth=linewidth)


def mark_start(ax, step, text):
    """Dashed vertical line where a continued run starts, labelled at the top of the axes."""
    ax.axvline(step, color="0.35", linestyle="--", linewidth=1.0, zorder=1, gid="run-start")
    ax.annotate(text, xy=(step, 1), xycoords=("data", "axes fraction"), xytext=(4, -4),
                textcoords="offset points", ha="left", va="top", fontsize=8, color="0.3")


def output_format(path):
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in FORMATS:
        raise PlotError(f"{path}: unknown image type '.{ext}' (want .png, .svg or .pdf)")
    return ext


def save_figure(fig, path):
    """Writes fig to path atomically (temp file + rename), format by extension, no timestamps."""
    fmt = output_format(path)
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    except OSError as e:
        raise PlotError(f"{path}: cannot write: {e.strerror or e}")
    meta = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None, "ModDate": None}}[fmt]
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format=fmt, dpi=DPI, metadata=meta)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise PlotError(f"{path}: cannot write: {e.strerror or e}")
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def parse_size(size):
    try:
        width, height = (int(v) for v in size.lower().split("x"))
        assert 200 <= width <= 8000 and 150 <= height <= 8000
    except (ValueError, AssertionError):
        raise PlotError(f"--size '{size}': want WxH, e.g. 900x540 (200..8000 x 150..8000)")
    return width, height


def build_figure(series_args, title=None, ylabel=None, smooth=0, logy=False, size="900x540", own_steps=False):
    """The chart of plot_metrics' command line as a matplotlib Figure, and the warnings to print."""
    Figure = need_matplotlib()
    width, height = parse_size(size)
    if smooth < 0:
        raise PlotError("--smooth must be >= 0")
    curves, starts, fields_used, warnings = [], [], [], []
    for arg in series_args:
        path, label, fields = parse_series_arg(arg)
        records = read_records(path)
        data = series_from_records(path, records, fields)
        offset = 0
        if not own_steps:
            offset, model = run_start(path, records)
            if offset:
                starts.append((offset, f"{label} starts (from step {offset})"))
        for name in fields:
            pts = [(x + offset, v) for x, v in data[name]]
            if logy:
                dropped = sum(1 for _, v in pts if v <= 0)
                pts = [(x, v) for x, v in pts if v > 0]
                if dropped:
                    warnings.append(f"{path}: {name}: {dropped} value(s) <= 0 left out of the log axis")
            if not pts:
                warnings.append(f"{path}: {name}: no {'positive' if logy else 'finite'} values, not drawn")
                continue
            curves.append((f"{label} {name}", pts))
            if name not in fields_used:
                fields_used.append(name)
    if not curves:
        raise PlotError("nothing to plot: " + "; ".join(warnings))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for k, (label, pts) in enumerate(curves):
        draw_curve(ax, pts, label, COLORS[k % len(COLORS)], smooth, logy)
    seen = set()
    for step, text in starts:
        if step not in seen:
            seen.add(step)
            mark_start(ax, step, text)
    if logy:
        ax.set_yscale("log")
    joined = ", ".join(fields_used)
    ax.set_title(title if title is not None else joined)
    if ylabel is None:
        ylabel = joined if len(joined) <= 40 else "value"
    ax.set_ylabel(ylabel)
    ax.set_xlabel("step")
    ax.legend(loc="best")
    return fig, warnings


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog=PROG, description="Plot metrics.jsonl curves with matplotlib (PNG, SVG or PDF by extension).",
        epilog="SERIES is FILE[=LABEL[:FIELD[,FIELD...]]], e.g. runs/x/metrics.jsonl=base:loss,grad_norm")
    ap.add_argument("out", metavar="OUT.png|OUT.svg")
    ap.add_argument("series", metavar="SERIES", nargs="+")
    ap.add_argument("--title")
    ap.add_argument("--ylabel")
    ap.add_argument("--smooth", type=int, default=0, metavar="K")
    ap.add_argument("--logy", action="store_true")
    ap.add_argument("--size", default="900x540", metavar="WxH")
    ap.add_argument("--own-steps", action="store_true",
                    help="draw each run on its own steps, not continuing the checkpoint it started from")
    args = ap.parse_args(argv)
    if argv is None:
        reexec_for_matplotlib()
    try:
        output_format(args.out)
        fig, warnings = build_figure(args.series, args.title, args.ylabel, args.smooth, args.logy, args.size,
                                     args.own_steps)
        for w in warnings:
            print(f"{PROG}: warning: {w}", file=sys.stderr)
        save_figure(fig, args.out)
    except PlotError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
