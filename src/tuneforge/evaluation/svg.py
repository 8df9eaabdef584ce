"""Small inline-SVG charts for the HTML report: lines, a heatmap, horizontal bars, a reliability diagram.

Hand-written rather than matplotlib: matplotlib is not a core dependency, takes ~1 s to import, and its SVGs run
to tens of kilobytes each, where these are a few kilobytes and style with the page's CSS.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04")


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _open(width: int, height: int, title: str) -> list[str]:
    return [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{_esc(title)}" font-family="system-ui,sans-serif" '
            f'font-size="11"><title>{_esc(title)}</title>']


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= step * m)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"


def line_chart(series: dict[str, Sequence[tuple[float, float]]], title: str, x_label: str = "step",
               y_label: str = "", width: int = 520, height: int = 260) -> str:
    """One polyline per named series of (x, y) points, with axes, ticks and a legend."""
    pts = [p for s in series.values() for p in s if p[1] is not None and math.isfinite(p[1])]
    if not pts:
        return ""
    left, right, top, bottom = 52, 12, 24, 36
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-6)
    sx = lambda x: left + (x - x0) / (x1 - x0) * (width - left - right)  # noqa: E731
    sy = lambda y: height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)  # noqa: E731
    out = _open(width, height, title)
    out.append(f'<text x="{left}" y="15" font-weight="600">{_esc(title)}</text>')
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#e5e7eb"/>'
                   f'<text x="{left - 4}" y="{sy(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    for t in _ticks(x0, x1):
        out.append(f'<text x="{sx(t):.1f}" y="{height - bottom + 14}" text-anchor="middle">{_fmt(t)}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">{_esc(x_label)}'
               f'</text><text x="12" y="{(top + height - bottom) / 2}" transform="rotate(-90 12 '
               f'{(top + height - bottom) / 2})" text-anchor="middle">{_esc(y_label)}</text>')
    for i, (name, s) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        good = [p for p in s if p[1] is not None and math.isfinite(p[1])]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
        out.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="1.8" points="{path}"/>')
        if len(good) <= 30:
            out.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>' for x, y in good)
        lx = width - right - 130 * (len(series) - i)
        out.append(f'<rect x="{lx}" y="6" width="10" height="10" fill="{color}"/>'
                   f'<text x="{lx + 14}" y="15">{_esc(name[:18])}</text>')
    out.append("</svg>")
    return "".join(out)


def heatmap(matrix: Sequence[Sequence[float]], labels: Sequence[str], title: str, cell: int = 0) -> str:
    """A confusion-matrix heatmap (rows = gold, columns = predicted), each row shaded by its own share so small
    classes read as clearly as big ones; counts written in the cells when they fit."""
    n = len(labels)
    if not n:
        return ""
    cell = cell or max(8, min(30, 560 // n))
    pad = min(170, 7 * max(len(str(lab)) for lab in labels) + 10)
    width, height = pad + n * cell + pad // 2, pad + n * cell + 30  # room on the right for rotated labels
    out = _open(width, height, title)
    out.append(f'<text x="4" y="14" font-weight="600">{_esc(title)}</text><rect x="{pad}" y="{pad}" '
               f'width="{n * cell}" height="{n * cell}" fill="#fafafa" stroke="#e5e7eb"/>')
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, v in enumerate(row):
            if not v:  # empty cells are the background: keeps a 77-label matrix small
                continue
            share = v / total
            color = f"rgba(37,99,235,{share:.3f})" if i == j else f"rgba(220,38,38,{min(1.0, 2 * share):.3f})"
            x, y = pad + j * cell, pad + i * cell
            out.append(f'<rect class="cell" x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{color}" '
                       f'stroke="#f3f4f6"><title>gold {_esc(labels[i])} → predicted {_esc(labels[j])}: {v}'
                       f'</title></rect>')
            if v and cell >= 18:
                out.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" font-size="9">'
                           f'{v}</text>')
    for k, lab in enumerate(labels):
        short = _esc(str(lab)[:24])
        out.append(f'<text x="{pad - 4}" y="{pad + k * cell + cell / 2 + 4}" text-anchor="end" font-size="10">'
                   f'{short}</text><text transform="translate({pad + k * cell + cell / 2 + 4},{pad - 4}) '
                   f'rotate(-60)" font-size="10">{short}</text>')
    out.append(f'<text x="{pad}" y="{height - 8}">rows: gold · columns: predicted · blue: right · red: '
               f'confusions</text></svg>')
    return "".join(out)


def bars(rows: Sequence[tuple[str, Sequence[float]]], series: Sequence[str], title: str,
         value_max: float = 1.0, width: int = 480) -> str:
    """Grouped horizontal bars: one group per row label (e.g. a class), one bar per series (P, R, F1)."""
    if not rows:
        return ""
    bar, gap, pad = 6, 6, min(180, 7 * max(len(r[0]) for r in rows) + 10)
    group = bar * len(series) + gap
    height = 40 + len(rows) * group
    inner = width - pad - 50
    out = _open(width, height, title)
    out.append(f'<text x="4" y="14" font-weight="600">{_esc(title)}</text>')
    for k, name in enumerate(series):
        out.append(f'<rect x="{pad + 110 * k}" y="20" width="10" height="8" fill="{PALETTE[k]}"/>'
                   f'<text x="{pad + 110 * k + 14}" y="28">{_esc(name)}</text>')
    for i, (label, values) in enumerate(rows):
        y = 36 + i * group
        out.append(f'<text x="{pad - 4}" y="{y + group / 2}" text-anchor="end" font-size="10">'
                   f'{_esc(label[:28])}</text>')
        for k, v in enumerate(values):
            w = max(0.0, v) / value_max * inner
            out.append(f'<rect class="bar" x="{pad}" y="{y + k * bar}" width="{w:.1f}" height="{bar - 1}" '
                       f'fill="{PALETTE[k]}"><title>{_esc(label)} {_esc(series[k])} {v:.3f}</title></rect>')
    out.append("</svg>")
    return "".join(out)


def reliability(curves: dict[str, Sequence[dict[str, Any]]], title: str, size: int = 300) -> str:
    """Reliability diagram: accuracy against mean confidence per bin (dot size ~ rows), one curve per name, and
    the diagonal a perfectly calibrated model would follow."""
    left, top, inner = 40, 24, size - 64
    height = size + 14 * len(curves)  # the legend goes under the plot, clear of the curves
    out = _open(size, height, title)
    out.append(f'<text x="4" y="14" font-weight="600">{_esc(title)}</text>'
               f'<rect x="{left}" y="{top}" width="{inner}" height="{inner}" fill="none" stroke="#9ca3af"/>'
               f'<line x1="{left}" y1="{top + inner}" x2="{left + inner}" y2="{top}" stroke="#9ca3af" '
               f'stroke-dasharray="4,3"/>')
    for t in (0, 0.5, 1):
        out.append(f'<text x="{left + t * inner}" y="{top + inner + 14}" text-anchor="middle">{t:g}</text>'
                   f'<text x="{left - 4}" y="{top + inner - t * inner + 4}" text-anchor="end">{t:g}</text>')
    out.append(f'<text x="{left + inner / 2}" y="{size - 14}" text-anchor="middle">confidence</text>'
               f'<text x="10" y="{top + inner / 2}" transform="rotate(-90 10 {top + inner / 2})" '
               f'text-anchor="middle">accuracy</text>')
    for i, (name, bins) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        total = sum(b["count"] for b in bins) or 1
        pts = [(b["confidence"], b["accuracy"], b["count"]) for b in bins if b["count"]]
        path = " ".join(f"{left + c * inner:.1f},{top + inner - a * inner:.1f}" for c, a, _ in pts)
        out.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        out.extend(f'<circle cx="{left + c * inner:.1f}" cy="{top + inner - a * inner:.1f}" '
                   f'r="{2 + 6 * math.sqrt(n / total):.1f}" fill="{color}" fill-opacity="0.6"><title>{n} rows: '
                   f'confidence {c:.2f}, accuracy {a:.2f}</title></circle>' for c, a, n in pts)
        out.append(f'<rect x="{left}" y="{size + 14 * i - 4}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{left + 14}" y="{size + 14 * i + 5}">{_esc(name)}</text>')
    out.append("</svg>")
    return "".join(out)
