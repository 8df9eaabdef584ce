"""The dashboard: one self-contained HTML page (inline SVG, no scripts, no network) with the sentiment share per
topic over time and alert markers, the latest alerts and the most negative texts."""

from __future__ import annotations

import html
import time
from collections import defaultdict
from typing import Any

from tuneforge.apps.monitor.store import ALL, Store

COLORS = {"wneg": "#d62728", "wneu": "#7f7f7f", "wpos": "#2ca02c"}
W, H, PAD = 900, 130, 26


def _when(t: float | None) -> str:
    return "" if t is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


def svg_chart(rows: list[dict[str, Any]], alerts: list[dict[str, Any]], t0: float, t1: float) -> str:
    """Lines of the confidence-weighted negative / neutral / positive share per window; red marks at alerts."""
    span = max(t1 - t0, 1.0)

    def x(t: float) -> float:
        return PAD + (W - 2 * PAD) * (t - t0) / span

    def y(v: float) -> float:
        return H - PAD + (2 * PAD - H) * v

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">',
             f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" fill="#fafafa" '
             'stroke="#ddd"/>']
    for v in (0.0, 0.5, 1.0):
        parts.append(f'<text x="4" y="{y(v) + 4:.1f}" font-size="10">{v:.1f}</text>')
    for key, color in COLORS.items():
        pts = " ".join(f"{x(r['start']):.1f},{y(r[key] / r['n']):.1f}" for r in rows if r["n"])
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
    for a in alerts:
        ax = x(a["window_start"])
        title = html.escape(f"{a['detector']} {_when(a['window_start'])} stat {a['statistic']:.2f}")
        parts.append(f'<g><title>{title}</title><line x1="{ax:.1f}" x2="{ax:.1f}" y1="{PAD}" y2="{H - PAD}" '
                     f'stroke="#d62728" stroke-dasharray="3,2"/><path d="M{ax - 5:.1f},{PAD - 8} l10,0 l-5,8 z" '
                     'fill="#d62728"/></g>')
    parts.append(f'<text x="{PAD}" y="{H - 8}" font-size="10">{_when(t0)}Z</text>'
                 f'<text x="{W - PAD}" y="{H - 8}" font-size="10" text-anchor="end">{_when(t1)}Z</text></svg>')
    return "".join(parts)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def render(store: Store, width: int, title: str = "Sentiment monitor", latest: int = 20, negatives: int = 15) -> str:
    """The dashboard HTML for the windows of ``width`` seconds in ``store``."""
    by_topic: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in store.windows(width):
        by_topic[row["topic"]].append(row)
    alerts = store.alerts()
    starts = [r["start"] for rows in by_topic.values() for r in rows]
    t0, t1 = (min(starts), max(starts)) if starts else (0.0, 1.0)
    counters = store.counters()
    sections = []
    for topic in sorted(by_topic, key=lambda t: (t != ALL, t)):
        rows = by_topic[topic]
        mine = [a for a in alerts if a["topic"] == topic and a["window_seconds"] == width]
        n = sum(r["n"] for r in rows)
        neg = sum(r["wneg"] for r in rows) / max(n, 1)
        sections.append(f"<h3>{html.escape(topic)} <small>{n} texts · negative share {neg:.2f} · "
                        f"{len(mine)} alerts</small></h3>{svg_chart(rows, mine, t0, t1)}")
    alert_rows = [[_when(a["window_start"]), a["topic"], a["detector"], f"{a['statistic']:.2f}", a["detail"],
                   a["examples"][0]["text"][:140] if a["examples"] else ""] for a in alerts[-latest:][::-1]]
    neg_rows = [[_when(r["t"]), r["topic"], f"{r['p_negative']:.2f}", r["source"], r["text"][:200]]
                for r in store.top_negative(negatives)]
    legend = " ".join(f'<span style="color:{c}">■ {k[1:]}</span>' for k, c in COLORS.items())
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counters.items())) or "no records yet"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:20px;color:#222}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}} h3{{margin:14px 0 2px}}
small{{color:#666;font-weight:normal}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(summary)} · windows of {width // 60} min · confidence-weighted shares: {legend} ·
red marks: alerts</p>
{''.join(sections)}
<h2>Latest alerts</h2>{_table(['window', 'topic', 'detector', 'statistic', 'detail', 'example'], alert_rows)}
<h2>Most negative texts</h2>{_table(['time', 'topic', 'p(negative)', 'source', 'text'], neg_rows)}
</body></html>
"""
