#!/usr/bin/env python3
"""Plot training curves from qstar metrics.jsonl files into a PNG, using only the standard library.

Training runs write RUN_DIR/metrics.jsonl, one JSON object per optimizer step ({"step": 3,
"loss": 2.41, ...}; Quiet-STaR runs add base_nll, talk_nll_mean, mean_reward, ...). This tool draws
one coloured 2-px polyline per (run, field) against "step", with axes, 1-2-5 tick marks and numeric
labels, axis titles, a title and a legend, and writes the chart as an RGB PNG it encodes itself
(zlib + struct; an embedded 5x7 bitmap font draws the text). No numpy, no matplotlib.

Usage:
    python3 tools/plot_metrics.py OUT.png SERIES [SERIES ...] [options]

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
                    curve is still drawn underneath in a pale tint of the same colour
    --logy          logarithmic y axis (points <= 0 are skipped)
    --size WxH      image size in pixels (default 900x540)

Example:
    python3 tools/plot_metrics.py runs/demo/loss.png \\
        runs/demo/base/metrics.jsonl=base:loss \\
        runs/demo/quietstar/metrics.jsonl=quietstar:base_nll,talk_nll_mean --smooth 9

Data handling: blank lines are ignored; a line without the field (or without "step"), or whose
value is NaN, +-inf or not a number, contributes no point; points are ordered by step, and when a
step appears twice (a resumed run appending to the same file) the later line wins. Steps need not
start at 1. A single point is drawn as a dot.

Errors: a missing/unreadable file, a line that is not valid JSON or not a JSON object, a field
that no line of a file has, or nothing plottable at all gives one line on stderr,
"plot_metrics: error: FILE:LINE: ...", and exit status 1 (bad command-line syntax: status 2).
The PNG is written to a temporary file next to OUT.png and renamed over it, so a reader never sees
a partial image.
"""

import argparse
import json
import math
import os
import struct
import sys
import tempfile
import zlib

PROG = "plot_metrics"

# ----------------------------------------------------------------------------------------------
# Bitmap font: 5 columns x 7 rows per glyph. FONT is a run of 8-character entries: the character,
# then its 7 rows top to bottom, each row a base-32 digit (0-9a-v) whose 5 bits are the pixels,
# most significant bit leftmost. Glyphs in DESCENDERS sit 2 rows lower (g, p, q, y, ... and '_'),
# so a text line is 9 rows tall with the baseline after row 7.
FONT = (
    "0ehjlphe14c4444e2eh1248v3v2421he426aiv225vgu11he668guhhe7v1248888ehhehhe9ehhf12cAehhvhhhBuhhuhhu"
    "CehgggheDsihhhisEvgguggvFvggugggGehgnhhfHhhhvhhhIe44444eJ72222icKhikokihLggggggvMhrllhhhNhhpljhh"
    "OehhhhhePuhhugggQehhhlidRuhhukihSfgge11uTv444444UhhhhhheVhhhhha4WhhhlllaXhha4ahhYhha4444Zv1248gv"
    "a00e1fhfbggmphhuc00egghed11djhhfe00ehvgef698s888gfhhhf1ehggmphhhi40c444ej20622ickggikokilc44444e"
    "m00qlllln00mphhho00ehhhepuhhhuggqfhhhf11r00mpgggs00fge1ut88s8896u00hhhjdv00hhha4w00hhllax00ha4ah"
    "yhhhhf1ez00v248v.00000cc,0000c48-000e000+044v440_000000v:0cc0cc0%op248j3(2488842)8422248/01248g0"
    "=00v0v00[e88888e]e22222e?eh12404*0level0"
)
DESCENDERS = "gjpqy_"
GLYPH_W, GLYPH_H, LINE_H = 5, 7, 9


def _load_font():
    glyphs = {}
    for i in range(0, len(FONT), 8):
        ch, rows = FONT[i], FONT[i + 1:i + 8]
        dy = 2 if ch in DESCENDERS else 0
        pts = []
        for r, code in enumerate(rows):
            bits = int(code, 32)
            for c in range(GLYPH_W):
                if bits & (1 << (GLYPH_W - 1 - c)):
                    pts.append((c, r + dy))
        glyphs[ch] = pts
    glyphs[" "] = []
    return glyphs


GLYPHS = _load_font()

# Series colours (tab10-like); the test reads PALETTE to find each curve's pixels.
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]
WHITE = (255, 255, 255)
GRID = (234, 234, 234)
AXIS = (70, 70, 70)
TEXT = (25, 25, 25)


class PlotError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# Canvas: an RGB bytearray with a few primitives.
class Canvas:
    def __init__(self, w, h, bg=WHITE):
        self.w, self.h = w, h
        self.px = bytearray(bytes(bg) * (w * h))
        self.clip = (0, 0, w - 1, h - 1)

    def set(self, x, y, c):
        x0, y0, x1, y1 = self.clip
        if x0 <= x <= x1 and y0 <= y <= y1:
            i = (y * self.w + x) * 3
            self.px[i:i + 3] = bytes(c)

    def get(self, x, y):
        i = (y * self.w + x) * 3
        return tuple(self.px[i:i + 3])

    def rect(self, x0, y0, x1, y1, c):
        """Fill the inclusive rectangle [x0,x1]x[y0,y1] (clipped to the canvas)."""
        x0, x1 = max(x0, 0), min(x1, self.w - 1)
        y0, y1 = max(y0, 0), min(y1, self.h - 1)
        if x0 > x1 or y0 > y1:
            return
        row = bytes(c) * (x1 - x0 + 1)
        for y in range(y0, y1 + 1):
            i = (y * self.w + x0) * 3
            self.px[i:i + len(row)] = row

    def frame(self, x0, y0, x1, y1, c):
        self.rect(x0, y0, x1, y0, c)
        self.rect(x0, y1, x1, y1, c)
        self.rect(x0, y0, x0, y1, c)
        self.rect(x1, y0, x1, y1, c)

    def line(self, x0, y0, x1, y1, c, width=2):
        """Bresenham line; each step stamps a width x width square, so the stroke is `width` px."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx = 1 if x0 < x1 else -1
        sy = 1 if y0 < y1 else -1
        err = dx + dy
        while True:
            self.stamp(x0, y0, c, width)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def stamp(self, x, y, c, width):
        off = -((width - 1) // 2)
        for yy in range(y + off, y + off + width):
            for xx in range(x + off, x + off + width):
                self.set(xx, yy, c)

    def to_png(self):
        raw = bytearray()
        stride = self.w * 3
        for y in range(self.h):
            raw.append(0)  # filter type 0 (None) for every scanline
            raw += self.px[y * stride:(y + 1) * stride]

        def chunk(kind, data):
            body = kind + data
            return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

        ihdr = struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b""))


def text_width(s, scale):
    return max(0, len(s) * (GLYPH_W + 1) * scale - scale)


def draw_text(cv, x, y, s, c, scale=2, rotate=False):
    """Draw s with its top-left at (x, y); rotate=True writes bottom-to-top, (x, y) the bottom-left."""
    adv = (GLYPH_W + 1) * scale
    for i, ch in enumerate(s):
        for gx, gy in GLYPHS.get(ch, GLYPHS["?"]):
            for dy in range(scale):
                for dx in range(scale):
                    u, v = i * adv + gx * scale + dx, gy * scale + dy
                    if rotate:
                        cv.set(x + v, y - u, c)
                    else:
                        cv.set(x + u, y + v, c)


# ----------------------------------------------------------------------------------------------
# Data.
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


def read_series(path, fields):
    """Returns {field: [(step, value), ...]} sorted by step, the later line winning on repeats."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise PlotError(f"{path}: cannot read: {reason}")
    keys = {name: split_field(name) for name in fields}
    points = {name: {} for name in fields}
    seen = {name: False for name in fields}
    listy = {name: False for name in fields}
    for lineno, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise PlotError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})")
        if not isinstance(obj, dict):
            raise PlotError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
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
        if not seen[name]:
            raise PlotError(f"{path}: no line has the field '{split_field(name)[0]}'")
        if listy[name] and not points[name]:
            raise PlotError(f"{path}: field '{name}' holds lists; pick an element, e.g. {name}[0]")
    return {name: sorted(points[name].items()) for name in fields}


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
# Ticks and labels.
def nice_step(span, target, integer=False):
    raw = span / max(target, 1)
    if raw <= 0:
        return 1.0
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * mag >= raw * (1 - 1e-9):
            step = m * mag
            break
    if integer and step < 1:
        step = 1.0
    return step


def linear_ticks(lo, hi, target, integer=False):
    step = nice_step(hi - lo, target, integer)
    k0, k1 = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    ticks = [k * step for k in range(k0, k1 + 1)]
    return ticks, [fmt_linear(t, step) for t in ticks]


def fmt_linear(v, step):
    if v == 0 or abs(v) < step * 1e-6:
        return "0"
    if abs(v) >= 1e6 or step < 1e-4:
        digits = math.floor(math.log10(abs(v)) + 1e-9) - math.floor(math.log10(step) + 1e-9)
        return fmt_sci(v, max(0, min(6, digits)))
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return f"{v:.{decimals}f}"


def fmt_sci(v, digits):
    mant, _, exp = f"{v:.{digits}e}".partition("e")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def fmt_general(v):
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return fmt_sci(v, 3)
    s = f"{v:.4g}"
    return s


def log_ticks(lo, hi, target):
    """Tick values (not logs) for a log axis spanning 10**lo .. 10**hi."""
    e0, e1 = math.floor(lo), math.ceil(hi)
    best = None
    for mults in ([1], [1, 2, 5], list(range(1, 10))):
        ticks = [m * 10.0 ** e for e in range(e0, e1 + 1) for m in mults
                 if lo - 1e-9 <= math.log10(m * 10.0 ** e) <= hi + 1e-9]
        if len(ticks) > target and mults == [1]:
            every = math.ceil(len(ticks) / target)
            ticks = [t for t in ticks if round(math.log10(t)) % every == 0]
            return ticks, [fmt_general(t) for t in ticks]
        if len(ticks) >= 3 and len(ticks) <= target:
            return ticks, [fmt_general(t) for t in ticks]
        if len(ticks) <= target:
            best = ticks
    if best is not None and len(best) >= 2:
        return best, [fmt_general(t) for t in best]
    # Less than one usable decade: plain 1-2-5 ticks in value space.
    ticks, _ = linear_ticks(10.0 ** lo, 10.0 ** hi, target)
    ticks = [t for t in ticks if t > 0]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else abs(ticks[0]) if ticks else 1.0
    return ticks, [fmt_linear(t, step) for t in ticks]


def padded(lo, hi, frac, log=False):
    if hi - lo <= 0:
        d = 0.5 if log else (abs(lo) * 0.1 or 1.0)
        return lo - d, hi + d
    d = (hi - lo) * frac
    return lo - d, hi + d


# ----------------------------------------------------------------------------------------------
# Chart.
def render(series, width, height, title, ylabel, logy, smooth):
    """series: list of (legend_text, colour, [(x, y), ...]) with at least one point overall."""
    S = 2  # font scale for all text
    TH = LINE_H * S  # text line height incl. descenders
    xs = [x for _, _, pts in series for x, _ in pts]
    ys = [y for _, _, pts in series for _, y in pts]
    tf = (lambda v: math.log10(v)) if logy else (lambda v: v)
    xlo, xhi = padded(min(xs), max(xs), 0.01)
    if min(xs) == max(xs):
        xlo, xhi = min(xs) - 1, max(xs) + 1
    ylo, yhi = padded(tf(min(ys)), tf(max(ys)), 0.05, logy)
    integer_x = all(float(x).is_integer() for x in xs)

    title_scale = 3
    while title_scale > 1 and text_width(title, title_scale) > width - 20:
        title_scale -= 1
    if text_width(title, title_scale) > width - 20:
        keep = max(1, (width - 20) // ((GLYPH_W + 1) * title_scale) - 2)
        title = title[:keep] + ".."
    top = 12 + LINE_H * title_scale + 14
    bottom = height - (10 + TH + 10 + TH + 10)

    # y ticks first: their label width sets the left margin.
    plot_h = bottom - top
    for target in range(8, 1, -1):
        if logy:
            yt, ylabels = log_ticks(ylo, yhi, target)
            ytp = [math.log10(t) for t in yt]
        else:
            yt, ylabels = linear_ticks(ylo, yhi, target)
            ytp = yt
        gaps = [b - a for a, b in zip(ytp, ytp[1:])]
        if not gaps or plot_h * min(gaps) / (yhi - ylo) >= TH + 10:
            break
    ylab_w = max([text_width(s, S) for s in ylabels] + [0])
    if text_width(ylabel, S) > plot_h:
        ylabel = "value"
    left = 10 + LINE_H * S + 12 + ylab_w + 10
    right = width - 28
    plot_w = right - left
    if plot_w < 50 or plot_h < 50:
        raise PlotError(f"image {width}x{height} is too small for the chart")

    for target in range(10, 1, -1):
        xt, xlabels = linear_ticks(xlo, xhi, target, integer_x)
        widest = max([text_width(s, S) for s in xlabels] + [0])
        spacing = plot_w * (xt[1] - xt[0]) / (xhi - xlo) if len(xt) > 1 else plot_w
        if spacing >= widest + 16:
            break

    def X(v):
        return left + int(round((v - xlo) / (xhi - xlo) * plot_w))

    def Y(v):
        return bottom - int(round((tf(v) - ylo) / (yhi - ylo) * plot_h))

    cv = Canvas(width, height)
    # grid
    for t in xt:
        cv.rect(X(t), top, X(t), bottom, GRID)
    for t in yt:
        cv.rect(left, Y(t), right, Y(t), GRID)

    # curves, clipped to the plot area
    cv.clip = (left + 1, top + 1, right - 1, bottom - 1)
    for _, colour, pts in series:
        if smooth > 1 and len(pts) > 2:
            pale = tuple(int(c + (255 - c) * 0.7) for c in colour)
            draw_polyline(cv, [(X(x), Y(y)) for x, y in pts], pale, 1)
    for _, colour, pts in series:
        vals = [y for _, y in pts]
        if smooth > 1:
            vals = moving_average(vals, smooth)
        pix = [(X(x), Y(y)) for (x, _), y in zip(pts, vals)]
        if len(pix) == 1:
            cv.stamp(pix[0][0], pix[0][1], colour, 6)
        else:
            draw_polyline(cv, pix, colour, 2)
    cv.clip = (0, 0, width - 1, height - 1)

    # axes box, ticks, tick labels
    cv.frame(left, top, right, bottom, AXIS)
    for t, s in zip(xt, xlabels):
        x = X(t)
        cv.rect(x, bottom, x, bottom + 5, AXIS)
        w = text_width(s, S)
        draw_text(cv, min(max(x - w // 2, 2), width - w - 2), bottom + 9, s, TEXT, S)
    for t, s in zip(yt, ylabels):
        y = Y(t)
        cv.rect(left - 5, y, left, y, AXIS)
        draw_text(cv, left - 9 - text_width(s, S), y - GLYPH_H * S // 2, s, TEXT, S)

    # titles
    draw_text(cv, (width - text_width(title, title_scale)) // 2, 12, title, TEXT, title_scale)
    xlab = "step"
    draw_text(cv, left + (plot_w - text_width(xlab, S)) // 2, height - 10 - TH, xlab, TEXT, S)
    draw_text(cv, 10, top + (plot_h + text_width(ylabel, S)) // 2, ylabel, TEXT, S, rotate=True)

    draw_legend(cv, series, (left, top, right, bottom), S)
    return cv


def draw_polyline(cv, pix, colour, width):
    """Consecutive points in one pixel column become a vertical min..max span, so a long noisy run
    costs about one column per pixel of plot width rather than one segment per point."""
    i, n = 0, len(pix)
    prev = None
    while i < n:
        j = i
        while j + 1 < n and pix[j + 1][0] == pix[i][0]:
            j += 1
        x = pix[i][0]
        if prev is not None:
            cv.line(prev[0], prev[1], x, pix[i][1], colour, width)
        if j > i:
            ys = [p[1] for p in pix[i:j + 1]]
            cv.line(x, min(ys), x, max(ys), colour, width)
        elif prev is None:
            cv.stamp(x, pix[i][1], colour, width)
        prev = pix[j]
        i = j + 1


def draw_legend(cv, series, box, S):
    left, top, right, bottom = box
    pad, sw, row = 8, 26, LINE_H * S + 6
    w = pad + sw + 8 + max(text_width(name, S) for name, _, _ in series) + pad
    h = pad + row * len(series) - 6 + pad
    inset = 10
    xr, xl, xc = right - inset - w, left + inset, (left + right - w) // 2
    yt, yb, ym = top + inset, bottom - inset - h, (top + bottom - h) // 2
    # Candidate places in order of preference; the one covering the fewest curve pixels wins.
    spots = [(xr, yt), (xl, yt), (xr, yb), (xl, yb), (xr, ym), (xl, ym), (xc, yt), (xc, yb), (xc, ym)]
    background = {WHITE, GRID, AXIS}

    def ink(spot):
        x0, y0 = spot
        n = 0
        for y in range(max(y0, 0), min(y0 + h, cv.h)):
            for x in range(max(x0, 0), min(x0 + w, cv.w), 2):
                if cv.get(x, y) not in background:
                    n += 1
        return n

    x0, y0 = min(spots, key=ink)  # min() keeps the first (top-right) among equals
    cv.rect(x0, y0, x0 + w, y0 + h, WHITE)
    cv.frame(x0, y0, x0 + w, y0 + h, (190, 190, 190))
    for k, (name, colour, _) in enumerate(series):
        ty = y0 + pad + k * row
        cy = ty + GLYPH_H * S // 2
        cv.rect(x0 + pad, cy - 1, x0 + pad + sw - 1, cy + 2, colour)
        draw_text(cv, x0 + pad + sw + 8, ty, name, TEXT, S)


def write_atomic(path, data):
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    except OSError as e:
        raise PlotError(f"{path}: cannot write: {e.strerror or e}")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
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


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog=PROG, description="Plot metrics.jsonl curves to a PNG (standard library only).",
        epilog="SERIES is FILE[=LABEL[:FIELD[,FIELD...]]], e.g. runs/x/metrics.jsonl=base:loss,grad_norm")
    ap.add_argument("out", metavar="OUT.png")
    ap.add_argument("series", metavar="SERIES", nargs="+")
    ap.add_argument("--title")
    ap.add_argument("--ylabel")
    ap.add_argument("--smooth", type=int, default=0, metavar="K")
    ap.add_argument("--logy", action="store_true")
    ap.add_argument("--size", default="900x540", metavar="WxH")
    args = ap.parse_args(argv)
    try:
        try:
            width, height = (int(v) for v in args.size.lower().split("x"))
            assert 200 <= width <= 8000 and 150 <= height <= 8000
        except (ValueError, AssertionError):
            raise PlotError(f"--size '{args.size}': want WxH, e.g. 900x540 (200..8000 x 150..8000)")
        if args.smooth < 0:
            raise PlotError("--smooth must be >= 0")
        series, fields_used, warnings = [], [], []
        for arg in args.series:
            path, label, fields = parse_series_arg(arg)
            data = read_series(path, fields)
            for name in fields:
                pts = data[name]
                if args.logy:
                    dropped = sum(1 for _, v in pts if v <= 0)
                    pts = [(x, v) for x, v in pts if v > 0]
                    if dropped:
                        warnings.append(f"{path}: {name}: {dropped} value(s) <= 0 left out of the log axis")
                if not pts:
                    warnings.append(f"{path}: {name}: no {'positive' if args.logy else 'finite'} values, not drawn")
                    continue
                colour = PALETTE[len(series) % len(PALETTE)]
                series.append((f"{label} {name}", colour, pts))
                if name not in fields_used:
                    fields_used.append(name)
        if not series:
            raise PlotError("nothing to plot: " + "; ".join(warnings))
        for w in warnings:
            print(f"{PROG}: warning: {w}", file=sys.stderr)
        joined = ", ".join(fields_used)
        title = args.title if args.title is not None else joined
        ylabel = args.ylabel if args.ylabel is not None else (joined if len(joined) <= 40 else "value")
        if args.logy and args.ylabel is None:
            ylabel += " (log)"
        cv = render(series, width, height, title, ylabel, args.logy, args.smooth)
        write_atomic(args.out, cv.to_png())
    except PlotError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
