"""Inline SVG charts for ``ctrbench report``: a line chart with bands and a grouped bar chart with
error bars, drawn as SVG text without matplotlib (an optional extra), so the report works on a
plain install and its images are vector, small and self-contained. What they draw is computed by
``report/html.py`` from the same rows as the table; this module only lays out shapes.

Every chart is one ``<svg class="chart">`` element with a ``<title>`` (its accessible name), the
plot area, axes with round ticks, and a legend on its right; each point and bar carries a
``<title>`` with its value, shown by the browser on hover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

# ten distinguishable colours, in the order series are drawn
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
FONT = 12  # px; text widths below are estimated at 0.6 em per character
CHAR_W = 0.6 * FONT


@dataclass
class Curve:
    """One line: ``ys`` at ``xs``; a band from ``lo`` to ``hi`` where those are not None."""

    label: str
    xs: list[float]
    ys: list[float]
    lo: list[float | None] = field(default_factory=list)
    hi: list[float | None] = field(default_factory=list)
    tips: list[str] = field(default_factory=list)  # one hover text per point


@dataclass
class Bars:
    """One series of a bar chart: a value (None: no bar) and an error (None: no error bar) per category."""

    label: str
    values: list[float | None]
    errors: list[float | None] = field(default_factory=list)
    tips: list[str] = field(default_factory=list)
    hatched: bool = False


def _e(text: str) -> str:
    return escape(str(text), quote=True)


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (1, 2, 2.5 or 5 × 10^k apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    raw = (hi - lo) / max(1, n)
    k = 10 ** math.floor(math.log10(raw))
    step = next(m * k for m in (1, 2, 2.5, 5, 10) if m * k >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-6:
        if t >= lo - step * 1e-6:
            ticks.append(round(t, 12))
        t += step
    return ticks or [lo, hi]


def _tick_text(v: float, ticks: list[float]) -> str:
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(v) or 1.0
    if max(abs(t) for t in ticks) >= 10_000 and step >= 1000:
        return f"{v / 1000:g}k"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if round(step * 10 ** decimals) % 1:  # 2.5 × 10^k
        decimals += 1
    if abs(step * 10 ** decimals - round(step * 10 ** decimals)) > 1e-6:
        decimals += 1
    return f"{v:,.{decimals}f}"


def _text_width(text: str, size: float = FONT) -> float:
    return len(text) * 0.6 * size


class _Frame:
    """The plot area of a chart and the mapping of data to pixels."""

    def __init__(self, width, height, left, right, top, bottom, x_range, y_range):
        self.width, self.height = width, height
        self.x0, self.x1 = left, width - right
        self.y0, self.y1 = top, height - bottom
        self.xmin, self.xmax = x_range
        self.ymin, self.ymax = y_range

    def x(self, v: float) -> float:
        span = self.xmax - self.xmin or 1.0
        return self.x0 + (v - self.xmin) / span * (self.x1 - self.x0)

    def y(self, v: float) -> float:
        span = self.ymax - self.ymin or 1.0
        return self.y1 - (v - self.ymin) / span * (self.y1 - self.y0)


def _svg(width: float, height: float, title: str, body: list[str]) -> str:
    w, h = math.ceil(width), math.ceil(height)
    return (f'<svg class="chart" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
            f'font-family="sans-serif" font-size="{FONT}"><title>{_e(title)}</title>' + "".join(body) + "</svg>")


def _y_axis(f: _Frame, ticks: list[float], label: str) -> list[str]:
    out = []
    for t in ticks:
        y = f.y(t)
        out.append(f'<line x1="{f.x0:.1f}" x2="{f.x1:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{f.x0 - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" fill="#333">{_e(_tick_text(t, ticks))}</text>')
    mid = (f.y0 + f.y1) / 2
    out.append(f'<text transform="translate(14 {mid:.1f}) rotate(-90)" text-anchor="middle" fill="#222">{_e(label)}</text>')
    out.append(f'<line x1="{f.x0:.1f}" x2="{f.x0:.1f}" y1="{f.y0:.1f}" y2="{f.y1:.1f}" stroke="#555"/>')
    return out


def _legend(items: list[tuple[str, str, str]], x: float, y: float) -> list[str]:
    """``items``: (kind, colour, label) with kind line | bar | dash | url(#pattern) (a hatched bar)."""
    out = []
    for i, (kind, color, label) in enumerate(items):
        yy = y + i * (FONT + 8)
        if kind == "line":
            out.append(f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{color}" stroke-width="2"/>')
        elif kind == "dash":
            out.append(f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{color}" stroke-dasharray="4 3"/>')
        else:
            fill = kind if kind.startswith("url(") else color
            out.append(f'<rect x="{x:.1f}" y="{yy - 5:.1f}" width="18" height="10" fill="{fill}" stroke="{color}"/>')
        out.append(f'<text x="{x + 24:.1f}" y="{yy + 4:.1f}" fill="#222">{_e(label)}</text>')
    return out


def _legend_width(labels: list[str]) -> float:
    return 40 + max((_text_width(t) for t in labels), default=0)


def line_chart(curves: list[Curve], title: str, xlabel: str, ylabel: str, empty: str = "no data",
               width: float = 760, height: float = 320) -> str:
    """Lines with their bands (e.g. the mean over seeds ± one standard deviation)."""
    labels = [c.label for c in curves]
    legend_w = min(_legend_width(labels), 320)
    width = max(width, 420 + legend_w)
    height = max(height, 70 + len(curves) * (FONT + 8))
    xs = [x for c in curves for x in c.xs]
    ys = [v for c in curves for v in list(c.ys) + [b for b in c.lo + c.hi if b is not None] if math.isfinite(v)]
    if not xs or not ys:
        body = [f'<text x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle" fill="#555">{_e(empty)}</text>']
        return _svg(width, height, title, body)
    xmin, xmax = min(xs), max(xs)
    if xmin == xmax:
        xmin, xmax = xmin - 1, xmax + 1
    ymin, ymax = min(ys), max(ys)
    pad = (ymax - ymin) * 0.08 or 0.01
    yticks = nice_ticks(ymin - pad, ymax + pad)
    xticks = nice_ticks(xmin, xmax)
    f = _Frame(width, height, 64, legend_w + 16, 14, 44, (min(xmin, xticks[0]), max(xmax, xticks[-1])),
               (min(ymin - pad, yticks[0]), max(ymax + pad, yticks[-1])))
    body = _y_axis(f, yticks, ylabel)
    for t in xticks:
        x = f.x(t)
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.y1:.1f}" y2="{f.y1 + 4:.1f}" stroke="#555"/>')
        body.append(f'<text x="{x:.1f}" y="{f.y1 + 17:.1f}" text-anchor="middle" fill="#333">{_e(_tick_text(t, xticks))}</text>')
    body.append(f'<line x1="{f.x0:.1f}" x2="{f.x1:.1f}" y1="{f.y1:.1f}" y2="{f.y1:.1f}" stroke="#555"/>')
    body.append(f'<text x="{(f.x0 + f.x1) / 2:.1f}" y="{height - 8:.1f}" text-anchor="middle" fill="#222">{_e(xlabel)}</text>')
    legend = []
    for i, c in enumerate(curves):
        color = PALETTE[i % len(PALETTE)]
        band = [(x, lo, hi) for x, lo, hi in zip(c.xs, c.lo, c.hi) if lo is not None and hi is not None]
        if len(band) >= 2:
            pts = [f"{f.x(x):.1f},{f.y(hi):.1f}" for x, _, hi in band] + [f"{f.x(x):.1f},{f.y(lo):.1f}" for x, lo, _ in reversed(band)]
            body.append(f'<polygon points="{" ".join(pts)}" fill="{color}" fill-opacity="0.15" stroke="none"/>')
        pts = " ".join(f"{f.x(x):.1f},{f.y(y):.1f}" for x, y in zip(c.xs, c.ys))
        body.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        for j, (x, y) in enumerate(zip(c.xs, c.ys)):
            tip = c.tips[j] if j < len(c.tips) else f"{c.label}: {y:.4f}"
            body.append(f'<circle cx="{f.x(x):.1f}" cy="{f.y(y):.1f}" r="3" fill="{color}"><title>{_e(tip)}</title></circle>')
        legend.append(("line", color, c.label))
    body += _legend(legend, f.x1 + 16, f.y0 + 8)
    return _svg(width, height, title, body)


def bar_chart(categories: list[str], series: list[Bars], title: str, ylabel: str,
              hline: tuple[float, str] | None = None, empty_text: str | list[str] = "–", key: str = "0", unit: str = "",
              width: float = 760, height: float = 340) -> str:
    """Grouped bars, one group per category, one bar per series, with error bars; ``hline`` is a
    dashed reference line (value, legend label), left out of the axis (its value in the legend) when
    it lies more than the bars' own span beyond them, so that it does not flatten them; a category whose first series has no value shows
    ``empty_text`` (one text, or one per category). ``key`` makes the chart's pattern id unique in
    the page."""
    hatch = [f"url(#hatch-{key}-{i})" if s.hatched else None for i, s in enumerate(series)]
    items = [(hatch[i] or "bar", PALETTE[i % len(PALETTE)], s.label) for i, s in enumerate(series)]
    bar_vals = [v for s in series for v in s.values if v is not None and math.isfinite(v)] + [0.0]
    span = max(bar_vals) - min(bar_vals) or 1.0
    off_scale = hline is not None and math.isfinite(hline[0]) and not (min(bar_vals) - span <= hline[0] <= max(bar_vals) + span)
    if hline is not None:
        items.append(("dash", "#777", f"{hline[1]}: {hline[0]:+.2f}{unit}, off the scale" if off_scale else hline[1]))
    legend_w = min(_legend_width([t for _, _, t in items]), 360)
    longest = max((_text_width(c, FONT - 1) for c in categories), default=0)
    bottom = 24 + min(longest, 220) * 0.55
    width = max(width, 300 + legend_w + 56 * len(categories))
    height = max(height, 80 + bottom + len(items) * (FONT + 8))
    vals = [0.0]
    for s in series:
        for j, v in enumerate(s.values):
            if v is None or not math.isfinite(v):
                continue
            err = s.errors[j] if j < len(s.errors) and s.errors[j] is not None else 0.0
            vals += [v - err, v + err]
    if hline is not None and math.isfinite(hline[0]) and not off_scale:
        vals.append(hline[0])
    ymin, ymax = min(vals), max(vals)
    pad = (ymax - ymin) * 0.08 or 1.0
    yticks = nice_ticks(ymin - (pad if ymin < 0 else 0), ymax + pad)
    f = _Frame(width, height, 64, legend_w + 16, 14, bottom, (0, max(1, len(categories))),
               (min(ymin, yticks[0]), max(ymax + pad, yticks[-1])))
    body = ["<defs>" + "".join(
        f'<pattern id="hatch-{key}-{i}" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="{PALETTE[i % len(PALETTE)]}" fill-opacity="0.3"/>'
        f'<line x1="0" y1="0" x2="0" y2="6" stroke="{PALETTE[i % len(PALETTE)]}" stroke-width="2.5"/></pattern>'
        for i, s in enumerate(series) if s.hatched) + "</defs>"]
    body += _y_axis(f, yticks, ylabel)
    zero = f.y(0.0)
    slot = (f.x1 - f.x0) / max(1, len(categories))
    bar_w = slot * 0.78 / max(1, len(series))
    for j, cat in enumerate(categories):
        left = f.x0 + j * slot + slot * 0.11
        for i, s in enumerate(series):
            color = PALETTE[i % len(PALETTE)]
            x = left + i * bar_w
            v = s.values[j] if j < len(s.values) else None
            tip = s.tips[j] if j < len(s.tips) else f"{cat} · {s.label}: {v}"
            if v is None or not math.isfinite(v):
                if i == 0:
                    body.append(f'<text transform="translate({x + bar_w / 2 + 4:.1f} {zero - 6:.1f}) rotate(-90)" '
                                f'fill="#a00" font-size="{FONT - 1}">{_e(empty_text if isinstance(empty_text, str) else empty_text[j])}</text>')
                continue
            top, bot = sorted((f.y(v), zero))
            fill = f'fill="{hatch[i]}" stroke="{color}"' if s.hatched else f'fill="{color}" fill-opacity="0.85"'
            body.append(f'<rect x="{x + 1:.1f}" y="{top:.1f}" width="{max(1.0, bar_w - 2):.1f}" height="{max(0.5, bot - top):.1f}" '
                        f'{fill}><title>{_e(tip)}</title></rect>')
            err = s.errors[j] if j < len(s.errors) else None
            if err:
                cx, lo, hi = x + bar_w / 2, f.y(v - err), f.y(v + err)
                body.append(f'<path d="M{cx:.1f},{lo:.1f}V{hi:.1f}M{cx - 4:.1f},{lo:.1f}h8M{cx - 4:.1f},{hi:.1f}h8" stroke="#222" fill="none"/>')
        cx = f.x0 + (j + 0.5) * slot
        body.append(f'<text transform="translate({cx + 4:.1f} {f.y1 + 14:.1f}) rotate(-30)" text-anchor="end" '
                    f'font-size="{FONT - 1}" fill="#222">{_e(cat)}</text>')
    body.append(f'<line x1="{f.x0:.1f}" x2="{f.x1:.1f}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#222"/>')
    if hline is not None and math.isfinite(hline[0]) and not off_scale:
        y = f.y(hline[0])
        body.append(f'<line x1="{f.x0:.1f}" x2="{f.x1:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#777" stroke-dasharray="4 3">'
                    f'<title>{_e(hline[1])}: {hline[0]:+.2f}{_e(unit)}</title></line>')
    body += _legend(items, f.x1 + 16, f.y0 + 8)
    return _svg(width, height, title, body)
