"""Charts drawn on the server as inline SVG: no JavaScript, scales with the page."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from markupsafe import Markup, escape

W, H = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 12, 40


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _tick(v: float) -> str:
    """A tick label people read without decoding: 0.002, 50, 3×10⁻⁶."""
    if 1e-4 <= v < 1e5:
        return f"{v:.6f}".rstrip("0").rstrip(".") if v < 1 else f"{v:,.0f}"
    m, e = f"{v:.0e}".split("e")
    return f"{'' if m == '1' else m + '×'}10{str(int(e)).translate(SUPERSCRIPT)}"


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks between 10**lo and 10**hi: finer steps within each decade the narrower the range
    (1-1.5-2-3-...-8 within one decade, 1-2-5 up to three), else whole decades."""
    steps = (1, 1.5, 2, 3, 4, 5, 6, 8) if hi - lo <= 1 else (1, 2, 5) if hi - lo <= 3 else (1,)
    out = [m * 10.0 ** d for d in range(math.floor(lo), math.ceil(hi) + 1) for m in steps]
    inside = [v for v in out if lo - 1e-9 <= math.log10(v) <= hi + 1e-9]
    if len(inside) < 2:  # under one step wide: its two ends
        inside = [10 ** lo, 10 ** hi]
    return inside


def histogram_svg(hist: dict[str, Any], title: str) -> Markup:
    """Bars of `hist["counts"]` over log-spaced `hist["edges"]` (gmv_store.query.browse.value_histogram),
    decade ticks on x, the largest count on y; each bar's range and count in its tooltip."""
    counts, edges = hist["counts"], hist["edges"]
    if not counts:
        return Markup('<p class="muted">No contributor has been credited in this set.</p>')
    top = max(counts) or 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    bw = pw / len(counts)
    lo, hi = math.log10(edges[0]), math.log10(edges[-1])
    span = (hi - lo) or 1.0
    parts = _frame(title) + _axes(top, ph, y_axis=True)
    for i, c in enumerate(counts):
        h = ph * c / top
        x = LEFT + i * bw
        parts.append(f'<rect x="{x + 1:.1f}" y="{TOP + ph - h:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}" '
                     f'class="bar" data-count="{c}"><title>{edges[i]:.3g} – {edges[i + 1]:.3g}: {c:,} '
                     f'contributors</title></rect>')
    marks = [(v, LEFT + pw * (math.log10(v) - lo) / span) for v in log_ticks(lo, hi)]
    for v, x in marks:
        parts.append(f'<line x1="{x:.1f}" y1="{TOP + ph}" x2="{x:.1f}" y2="{TOP + ph + 4}" class="axis"/>'
                     f'<text x="{x:.1f}" y="{TOP + ph + 16}" text-anchor="middle" class="tick">{_tick(v)}</text>')
    parts.append(f'<text x="{LEFT + pw / 2}" y="{H - 4}" text-anchor="middle" class="tick">value φ (log scale)</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _frame(title: str, h: int = H) -> list[str]:
    return [f'<svg class="chart" viewBox="0 0 {W} {h}" role="img" aria-label="{escape(title)}">',
            f"<title>{escape(title)}</title>"]


def _axes(top: int, ph: float, y_axis: bool = False) -> list[str]:
    """A histogram's x axis (and y axis), with its count ticks 0 and `top`."""
    lines = [f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{W - RIGHT}" y2="{TOP + ph}" class="axis"/>']
    if y_axis:
        lines.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" class="axis"/>')
    return lines + [f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" class="tick">{top:,}</text>',
                    f'<text x="{LEFT - 6}" y="{TOP + ph}" text-anchor="end" class="tick">0</text>']


def bars_svg(items: list[tuple[str, float]], title: str,
             fmt: Callable[[float], str] = lambda v: f"{100 * v:.1f} %") -> Markup:
    """Horizontal bars, one per (name, value), largest first as given; the value beside each."""
    if not items:
        return Markup('<p class="muted">Nothing to show yet.</p>')
    row, left = 20, 90
    h = TOP + row * len(items) + 8
    top = max(v for _, v in items) or 1.0
    pw = W - left - 90
    parts = _frame(title, h)
    for i, (name, v) in enumerate(items):
        y = TOP + i * row
        w = max(pw * v / top, 1.0)
        parts.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end" class="tick">{escape(name)}</text>'
                     f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" class="bar" data-name="{escape(name)}" '
                     f'data-value="{v!r}"><title>{escape(name)}: {escape(fmt(v))}</title></rect>'
                     f'<text x="{left + w + 6:.1f}" y="{y + 13}" class="tick">{escape(fmt(v))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def linear_histogram_svg(values: list[float], title: str, xlabel: str, bins: int = 20) -> Markup:
    """Counts of `values` in equal steps between their smallest and largest."""
    if not values:
        return Markup('<p class="muted">Nothing to show yet.</p>')
    lo, hi = min(values), max(values)
    width = (hi - lo) / bins if hi > lo else 1.0
    nb = bins if hi > lo else 1
    counts = [0] * nb
    for v in values:
        counts[min(nb - 1, int((v - lo) / width))] += 1
    top = max(counts)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    bw = pw / nb
    parts = _frame(title) + _axes(top, ph)
    for i, c in enumerate(counts):
        h = ph * c / top
        a = lo + i * width
        parts.append(f'<rect x="{LEFT + i * bw + 1:.1f}" y="{TOP + ph - h:.1f}" width="{max(bw - 2, 1):.1f}" '
                     f'height="{h:.1f}" class="bar" data-n="{c}"><title>{a:.3g} – {a + width:.3g}: {c:,}</title></rect>')
    ends = [(lo, LEFT), (hi, W - RIGHT)] if hi > lo else [(lo, LEFT + pw / 2)]
    for v, x in ends + ([((lo + hi) / 2, LEFT + pw / 2)] if hi > lo else []):
        parts.append(f'<text x="{x:.1f}" y="{TOP + ph + 16}" text-anchor="middle" class="tick">{v:.3g}</text>')
    parts.append(f'<text x="{LEFT + pw / 2}" y="{H - 4}" text-anchor="middle" class="tick">{escape(xlabel)}</text></svg>')
    return Markup("".join(parts))


def rho_k_svg(groups: list[dict[str, Any]], title: str) -> Markup:
    """ρ (share of the top-k with the generated image's label) against k: one line per
    group of sets valuing the same generated images, a labelled point per set."""
    pts = [p for g in groups for p in g["points"]]
    if not pts:
        return Markup('<p class="muted">No labelled set to compare.</p>')
    ks = [p["k"] for p in pts]
    rs = [p["rho"] for p in pts]
    k_lo, k_hi = min(ks), max(ks)
    r_lo: float
    r_hi: float
    r_lo, r_hi = max(0.0, math.floor(min(rs) * 20 - 1) / 20), min(1.0, math.ceil(max(rs) * 20 + 1) / 20)
    pw, ph = W - LEFT - RIGHT - 60, H - TOP - BOTTOM

    def x(k: float) -> float:
        return LEFT + (pw * (k - k_lo) / (k_hi - k_lo) if k_hi > k_lo else pw / 2)

    def y(r: float) -> float:
        return TOP + ph - ph * (r - r_lo) / ((r_hi - r_lo) or 1)

    parts = _frame(title) + [
        f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{LEFT + pw}" y2="{TOP + ph}" class="axis"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" class="axis"/>']
    for r in (r_lo, (r_lo + r_hi) / 2, r_hi):
        parts.append(f'<text x="{LEFT - 6}" y="{y(r) + 4:.1f}" text-anchor="end" class="tick">{100 * r:.3g} %</text>')
    for k in sorted(set(ks)):
        parts.append(f'<text x="{x(k):.1f}" y="{TOP + ph + 16}" text-anchor="middle" class="tick">{k}</text>')
    for g in groups:
        p = sorted(g["points"], key=lambda q: q["k"])
        if len(p) > 1:
            parts.append('<polyline class="line" points="' + " ".join(f"{x(q['k']):.1f},{y(q['rho']):.1f}" for q in p) + '"/>')
        for q in p:
            parts.append(f'<circle cx="{x(q["k"]):.1f}" cy="{y(q["rho"]):.1f}" r="4" class="dot" data-set="{escape(q["set_name"])}" '
                         f'data-k="{q["k"]}" data-rho="{q["rho"]!r}"><title>{escape(q["set_name"])}: ρ {100 * q["rho"]:.1f} % '
                         f'at k={q["k"]}</title></circle>'
                         f'<text x="{x(q["k"]) + 7:.1f}" y="{y(q["rho"]) - 6:.1f}" class="tick">{100 * q["rho"]:.1f} %</text>')
    parts.append(f'<text x="{LEFT + pw / 2}" y="{H - 4}" text-anchor="middle" class="tick">k (contributors credited per '
                 'generated image)</text></svg>')
    return Markup("".join(parts))
