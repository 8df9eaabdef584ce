"""The sections of ``report.html``, each a function from the run's saved files to an HTML fragment (empty when the
run lacks what the section needs)."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneforge.evaluation import stats, svg
from tuneforge.evaluation.predictions import error_examples
from tuneforge.explain.render import highlight


def esc(v: Any) -> str:
    return html.escape(str(v))


def pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.{digits}f}"


def ci(lo: float, hi: float) -> str:
    return f'<span class="ci">[{pct(lo)}, {pct(hi)}]</span>'


def p_value(p: float) -> str:
    cls = ' class="sig"' if p < 0.05 else ""
    return f"<span{cls}>{'&lt; 0.001' if p < 0.001 else f'{p:.3f}'}</span>"


def section(title: str, body: str, anchor: str, intro: str = "") -> str:
    if not body:
        return ""
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{f"<p class=intro>{intro}</p>" if intro else ""}{body}</section>'


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


# ---------------------------------------------------------------- before / after
def indices(rows: Sequence[dict[str, Any]], key: str, index: dict[str, int]) -> np.ndarray:
    return np.array([index.setdefault(r[key], len(index)) for r in rows])


def before_after(report: dict[str, Any], rows: list[dict[str, Any]], baselines: dict[str, list[dict[str, Any]]],
                 seed: int = 0, name: str = "fine-tuned") -> str:
    """Each model's accuracy and macro F1 with bootstrap 95% CIs, and the paired tests of the run's model
    (``name``: fine-tuned, or a prompting method) against each baseline: McNemar (exact and mid-p) on accuracy,
    approximate randomisation on macro F1."""
    split = report.get("test_split", "test")
    if not rows:
        tuned = report["metrics"].get(split, {})
        out = [[esc(n), pct(m.get("accuracy")), pct(m.get("macro_f1"))] for n, m in report["baselines"].items()]
        out.append([f"<b>{esc(name)}</b>", pct(tuned.get("accuracy")), pct(tuned.get("macro_f1"))])
        return table(["model", "accuracy", "macro F1"], out) + "<p class=note>No per-example predictions were " \
            "saved for this run, so no intervals or paired tests.</p>"
    index: dict[str, int] = {}
    gold = indices(rows, "gold", index)
    own = indices(rows, "predicted", index)
    preds = {name: own}
    preds.update({b_name: indices(b, "predicted", index) for b_name, b in baselines.items() if b_name != name})
    out = []
    for b_name, pred in preds.items():
        acc, f1 = stats.accuracy(gold, pred), stats.macro_f1(gold, pred)
        row = [f"<b>{esc(b_name)}</b>" if pred is own else esc(b_name),
               f"{pct(acc)} {ci(*stats.bootstrap_ci(stats.accuracy, gold, pred, seed=seed))}",
               f"{pct(f1)} {ci(*stats.bootstrap_ci(stats.macro_f1, gold, pred, seed=seed))}"]
        if pred is own:
            row += ["", ""]
        else:
            m = stats.mcnemar(own == gold, pred == gold)
            ar = stats.approximate_randomisation(stats.macro_f1, gold, own, pred, seed=seed)
            row += [f"{m['b']} vs {m['c']}: p {p_value(m['p_exact'])}, mid-p {p_value(m['p_mid'])}",
                    f"Δ {100 * ar['difference']:+.1f} pts, p {p_value(ar['p_value'])}"]
        out.append(row)
    return table(["model", "accuracy % [95% CI]", "macro F1 % [95% CI]",
                  f"McNemar vs {esc(name)} (rows only it / only this baseline gets right)",
                  "approx. randomisation, macro F1"], out) + \
        f"<p class=note>{len(rows)} {esc(split)} examples; intervals: percentile bootstrap, 1,000 resamples; " \
        "approximate randomisation: 1,000 rounds. p &lt; 0.05 in bold.</p>"


# ---------------------------------------------------------------- curves, classes, calibration
def curves(metrics_log: list[dict[str, Any]], main_metric: str) -> str:
    train = [(r["step"], r["loss"]) for r in metrics_log if r.get("split") == "train" and "loss" in r]
    val = [r for r in metrics_log if r.get("split") == "validation"]
    keys = [k for k in dict.fromkeys([main_metric, "macro_f1", "accuracy", "f1"]) if any(k in r for r in val)][:2]
    loss = svg.line_chart({"train loss": train}, "Training loss", y_label="loss") if train else ""
    valc = svg.line_chart({k: [(r["step"], r.get(k)) for r in val if k in r] for k in keys},
                          "Validation", y_label="score") if val and keys else ""
    return f'<div class="row">{loss}{valc}</div>' if loss or valc else ""


def classes(test: dict[str, Any]) -> str:
    cm, per = test.get("confusion_matrix"), test.get("per_class")
    parts = []
    if cm:
        parts.append(svg.heatmap(cm["matrix"], cm["labels"], "Confusion matrix (test)"))
    if per:
        rows = [(lab, [m["precision"], m["recall"], m["f1"]]) for lab, m in per.items()]
        parts.append(svg.bars(rows, ["precision", "recall", "F1"], "Per-class precision, recall, F1 (test)"))
    return f'<div class="row">{"".join(parts)}</div>' if parts else ""


def calibration(test: dict[str, Any], rows: list[dict[str, Any]], name: str = "fine-tuned") -> str:
    rel = test.get("reliability")
    if isinstance(rel, dict) and rel.get("before"):
        curves_ = {"before temperature scaling": rel["before"], "after": rel.get("after") or []}
        note = (f"ECE {pct(test.get('ece_before_calibration'))}% before, {pct(test.get('ece'))}% after temperature "
                f"scaling (T = {test.get('temperature', float('nan')):.3f}, fitted on validation).")
    elif rows:
        bins = stats.reliability_bins([r["confidence"] for r in rows], [r["gold"] == r["predicted"] for r in rows])
        curves_, note = {name: bins}, "Confidence = the predicted label's probability."
    else:
        return ""
    return f'<div class="row">{svg.reliability(curves_, "Reliability (test)")}<p class=note>{note} Points under ' \
        f"the diagonal are over-confident; dot size ~ rows in the bin.</p></div>"


# ---------------------------------------------------------------- data audit
def audit(audit_json: dict[str, Any] | None) -> str:
    if not audit_json:
        return ""
    splits = audit_json.get("splits", {})
    out = []
    for name, s in splits.items():
        lt, div, leak = s.get("length_tokens", {}), s.get("divergence_from_train") or {}, s.get("leakage") or {}
        out.append([esc(name), s.get("count"), len(s.get("label_distribution", {})),
                    f"{lt.get('p50', '–')} / {lt.get('p90', '–')} / {lt.get('max', '–')}",
                    (s.get("truncated") or {}).get("count", 0), s.get("duplicates_within", 0),
                    f"{div['js_divergence']:.3f}" if div.get("js_divergence") is not None else "–",
                    f"{leak.get('exact_in_train', 0)} / {leak.get('near_in_train', 0)}" if leak else "–"])
    tab = table(["split", "rows", "labels", "tokens p50 / p90 / max", "truncated", "duplicates",
                 "label JS divergence vs train", "in train: exact / near"], out)
    labels = list(dict.fromkeys(lab for s in splits.values() for lab in s.get("label_distribution", {})))
    chart = ""
    if 0 < len(labels) <= 80:
        shares = {n: {k: v / max(1, sum(s["label_distribution"].values())) for k, v in
                      s["label_distribution"].items()} for n, s in splits.items() if s.get("label_distribution")}
        chart = svg.bars([(lab, [shares[n].get(lab, 0.0) for n in shares]) for lab in labels], list(shares),
                         "Label share per split", value_max=max(max(v.values()) for v in shares.values()))
    warns = "".join(f"<li>{esc(w)}</li>" for w in audit_json.get("warnings", []))
    return tab + (f"<ul class=warn>{warns}</ul>" if warns else "") + chart


# ---------------------------------------------------------------- errors
def example_block(r: dict[str, Any], explanation: dict[str, Any] | None) -> str:
    text = highlight(explanation) if explanation else f'<div class="tf-expl">{esc(r["text"])}</div>'
    runner_up = ", ".join(f"{esc(k)} {v:.2f}" for k, v in list(r.get("scores", {}).items())[:3])
    return (f'<div class="ex">{text}<div class="exmeta">gold <b>{esc(r["gold"])}</b> · predicted '
            f'<b>{esc(r["predicted"])}</b> ({r["confidence"]:.3f}) · top scores: {runner_up}'
            f'{" · " + esc(r["loc"]) if r.get("loc") else ""}</div></div>')


def errors(rows: list[dict[str, Any]], explanations: dict[str, Any] | None, n: int = 10) -> str:
    if not rows:
        return ""
    explanations = explanations or {}
    picked = error_examples(rows, n, n)
    wrong = "".join(example_block(rows[i], explanations.get(str(i))) for i in picked["wrong"])
    right = "".join(example_block(rows[i], explanations.get(str(i))) for i in picked["right"])
    pairs = Counter((r["gold"], r["predicted"]) for r in rows if r["gold"] != r["predicted"])
    conf = []
    for (g, p), k in pairs.most_common(12):
        ex = [esc(r["text"][:90]) for r in rows if r["gold"] == g and r["predicted"] == p][:3]
        conf.append([esc(g), esc(p), k, "<br>".join(ex)])
    legend = ("<p class=note>Word shading: Integrated Gradients for the predicted label (green raises it, red lowers "
              "it), on the examples explained at the end of the run; hover a word for its score.</p>"
              if explanations else "")
    return (legend + f"<h3>Most confident wrong predictions</h3>{wrong or '<p>none</p>'}"
            f"<h3>Least confident right predictions</h3>{right}"
            f"<h3>Most frequent confusions</h3>{table(['gold', 'predicted', 'rows', 'examples'], conf)}")


# ---------------------------------------------------------------- prompting (runs without training)
def prompting(details: dict[str, Any] | None) -> str:
    """How a zero-shot or in-context run scored each split: the mode, prompt length, the shared demonstrations and
    the queries that lost demonstrations to the token budget."""
    if not details:
        return ""
    rows, overflow = [], []
    for split, d in details.items():
        demos = d.get("demonstrations") or []
        rows.append([esc(split), esc(d.get("mode", "")), d.get("mean_prompt_tokens", "–"),
                     len(demos) if demos else "–", d.get("overflow_count", 0)])
        overflow += [[esc(split), esc(o["id"]), o["demonstrations_dropped"], o["demonstrations_kept"]]
                     for o in (d.get("overflow") or [])[:10]]
    out = table(["split", "mode", "mean prompt tokens", "shared demonstrations", "queries over the budget"], rows)
    if overflow:
        out += "<h3>Queries that lost demonstrations</h3>" + table(["split", "row", "dropped", "kept"], overflow)
    return out
