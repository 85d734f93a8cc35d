"""Charts drawn on the server as inline SVG: no JavaScript, scales with the page."""
from __future__ import annotations

import math

from markupsafe import Markup, escape

W, H = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 12, 40


def _tick(v: float) -> str:
    return f"{v:.0e}".replace("e-0", "e-").replace("e+0", "e")


def histogram_svg(hist: dict, title: str) -> Markup:
    """Bars of `hist["counts"]` over log-spaced `hist["edges"]` (query.browse.value_histogram),
    decade ticks on x, the largest count on y; each bar's range and count in its tooltip."""
    counts, edges = hist["counts"], hist["edges"]
    if not counts:
        return Markup('<p class="muted">No contributor has been credited in this set.</p>')
    top = max(counts) or 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    bw = pw / len(counts)
    lo, hi = math.log10(edges[0]), math.log10(edges[-1])
    span = (hi - lo) or 1.0
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{LEFT}" y1="{TOP + ph}" x2="{W - RIGHT}" y2="{TOP + ph}" class="axis"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + ph}" class="axis"/>',
             f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" class="tick">{top:,}</text>',
             f'<text x="{LEFT - 6}" y="{TOP + ph}" text-anchor="end" class="tick">0</text>']
    for i, c in enumerate(counts):
        h = ph * c / top
        x = LEFT + i * bw
        parts.append(f'<rect x="{x + 1:.1f}" y="{TOP + ph - h:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}" '
                     f'class="bar" data-count="{c}"><title>{edges[i]:.3g} – {edges[i + 1]:.3g}: {c:,} '
                     f'contributors</title></rect>')
    first, last = math.ceil(lo), math.floor(hi)
    decades = list(range(first, last + 1)) if last >= first else []
    marks = [(10.0 ** d, LEFT + pw * (d - lo) / span) for d in decades] or [(edges[0], LEFT), (edges[-1], LEFT + pw)]
    for v, x in marks:
        parts.append(f'<line x1="{x:.1f}" y1="{TOP + ph}" x2="{x:.1f}" y2="{TOP + ph + 4}" class="axis"/>'
                     f'<text x="{x:.1f}" y="{TOP + ph + 16}" text-anchor="middle" class="tick">{_tick(v)}</text>')
    parts.append(f'<text x="{LEFT + pw / 2}" y="{H - 4}" text-anchor="middle" class="tick">value φ (log scale)</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
