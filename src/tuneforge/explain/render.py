"""Explanations as HTML: each word of the input shaded by its attribution (green supports the explained label,
red speaks against it), with the completeness and agreement figures beside it."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

CSS = """
.tf-expl{font:15px/1.9 system-ui,sans-serif;margin:.4em 0}
.tf-expl .w{padding:1px 2px;border-radius:3px}
.tf-expl-meta{font:12px system-ui,sans-serif;color:#555}
"""


def _shade(value: float, scale: float) -> str:
    alpha = min(1.0, abs(value) / scale) * 0.75 if scale > 0 else 0.0
    rgb = "22,163,74" if value >= 0 else "220,38,38"
    return f"rgba({rgb},{alpha:.2f})"


def highlight(explanation: dict[str, Any], key: str = "ig") -> str:
    """The input text with every word wrapped in a shaded span; the title shows the word's score."""
    words = explanation["words"]
    scale = max((abs(w[key]) for w in words), default=0.0)
    parts = []
    for seq, text in enumerate((explanation["text"], explanation.get("text_pair"))):
        if text is None:
            continue
        pos = 0
        out = []
        for w in (w for w in words if w["sequence"] == seq):
            out.append(html.escape(text[pos:w["start"]]))
            out.append(f'<span class="w" style="background:{_shade(w[key], scale)}" '
                       f'title="{key} {w[key]:+.3f}">{html.escape(text[w["start"]:w["end"]])}</span>')
            pos = w["end"]
        out.append(html.escape(text[pos:]))
        parts.append("".join(out))
    return '<div class="tf-expl">' + " <b>|</b> ".join(parts) + "</div>"


def summary_line(explanation: dict[str, Any]) -> str:
    ig = explanation["integrated_gradients"]
    agree = explanation.get("agreement")
    return (f'<div class="tf-expl-meta">explained label <b>{html.escape(explanation["target"])}</b> '
            f'(p = {explanation["target_probability"]:.3f}); IG sum {ig["sum"]:+.3f} vs logit difference '
            f'{ig["logit_difference"]:+.3f} (completeness error {100 * ig["relative_completeness_error"]:.2f}%, '
            f'{ig["steps"]} steps); IG-occlusion rank agreement '
            f'{"n/a" if agree is None else f"{agree:.2f}"}</div>')


def page(explanations: Sequence[dict[str, Any]], title: str = "TuneForge explanations") -> str:
    """A self-contained page: per input, the IG highlight, the occlusion highlight and the figures."""
    body = []
    for e in explanations:
        if "entities" in e:  # ner: one block per predicted entity
            body.append(_entities(e))
            continue
        if "generated" in e:  # generation: the prompt's words for a span of the answer
            body.append(_generation(e))
            continue
        body.append(f"<section><h3>predicted {html.escape(e['predicted'])} ({e['probability']:.3f})</h3>"
                    f"<p>Integrated Gradients</p>{highlight(e, 'ig')}<p>Occlusion (score drop without the "
                    f"word)</p>{highlight(e, 'occlusion')}{summary_line(e)}</section>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>body{{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto}}{CSS}</style></head>"
            f"<body><h1>{html.escape(title)}</h1>{''.join(body)}</body></html>\n")


def _entities(e: dict[str, Any]) -> str:
    if not e["entities"]:
        return f"<section><h3>no entities</h3>{html.escape(e['text'])}</section>"
    out = []
    for ent in e["entities"]:
        view = {"text": e["text"], "words": ent["words"]}
        ig = ent["integrated_gradients"]
        out.append(f"<section><h3>{html.escape(ent['text'])}: {html.escape(ent['label'])}</h3>{highlight(view)}"
                   f'<div class="tf-expl-meta">IG sum {ig["sum"]:+.3f} vs logit difference '
                   f'{ig["logit_difference"]:+.3f} (completeness error '
                   f'{100 * ig["relative_completeness_error"]:.2f}%)</div></section>')
    return "".join(out)


def _generation(e: dict[str, Any]) -> str:
    span, ig, agree = e["span"], e["integrated_gradients"], e.get("agreement")
    answer = e["generated"]
    parts = [html.escape(t["text"]) if span["start"] <= t["index"] < span["end"] else
             f'<span style="color:#6b7280">{html.escape(t["text"])}</span>' for t in e["answer_tokens"]]
    shown = "".join(parts) if "".join(t["text"] for t in e["answer_tokens"]) == answer else html.escape(answer)
    return (f"<section><h3>{html.escape(e['answer_source'])} answer: <b>{shown}</b></h3>"
            f'<div class="tf-expl-meta">explained span: tokens {span["start"]}-{span["end"] - 1} '
            f'"{html.escape(span["text"])}", log p = {e["log_probability"]:.3f}</div>'
            f"<p>Integrated Gradients (prompt words)</p>{highlight(e, 'ig')}<p>Occlusion (log-probability drop "
            f"without the word)</p>{highlight(e, 'occlusion')}"
            f'<div class="tf-expl-meta">IG sum {ig["sum"]:+.3f} vs log-probability difference '
            f'{ig["logit_difference"]:+.3f} (completeness error {100 * ig["relative_completeness_error"]:.2f}%, '
            f'{ig["steps"]} steps); IG-occlusion rank agreement {"n/a" if agree is None else f"{agree:.2f}"}'
            f"</div></section>")
