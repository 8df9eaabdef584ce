"""``report.html``: one self-contained page per run (inline SVG and CSS, no scripts, nothing fetched) built from
the run directory's files, and a side-by-side page comparing runs (``tuneforge report RUN [RUN ...]``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tuneforge.evaluation import report_sections as S
from tuneforge.evaluation import stats, svg
from tuneforge.evaluation.predictions import FOLDER, load_json, load_predictions, read_jsonl
from tuneforge.evaluation.report import model_name
from tuneforge.explain.render import CSS as EXPLAIN_CSS
from tuneforge.io_utils import atomic_write_text

CSS = """
body{font:14px/1.5 system-ui,-apple-system,Segoe UI,sans-serif;color:#111827;max-width:1180px;margin:0 auto;
padding:16px 24px;background:#fff}
h1{font-size:22px;margin:.2em 0}h2{font-size:18px;border-bottom:1px solid #e5e7eb;padding-bottom:4px;margin-top:1.6em}
h3{font-size:15px;margin:1.2em 0 .4em}nav a{margin-right:12px;color:#2563eb;text-decoration:none}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}th,td{border:1px solid #e5e7eb;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f9fafb}.ci{color:#6b7280;font-size:12px}.sig{font-weight:700}
.note,.intro{color:#4b5563;font-size:12.5px}.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.ex{border-left:3px solid #e5e7eb;padding:2px 10px;margin:6px 0}.exmeta{font-size:12px;color:#4b5563}
.warn li{color:#92400e}.flag{color:#b91c1c;font-weight:700}pre{background:#f9fafb;padding:8px;font-size:12px;
overflow:auto;max-height:360px}.chart{max-width:100%;height:auto}
""" + EXPLAIN_CSS


def page(title: str, nav: Sequence[tuple[str, str]], body: str) -> str:
    links = "".join(f'<a href="#{a}">{S.esc(t)}</a>' for a, t in nav)
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport "
            f'content="width=device-width,initial-scale=1"><title>{S.esc(title)}</title><style>{CSS}</style></head>'
            f"<body><h1>{S.esc(title)}</h1><nav>{links}</nav>{body}</body></html>\n")


def load_run(run_dir: Path) -> dict[str, Any]:
    """Everything the report reads from a run directory; missing files are None / empty."""
    rows, baselines = load_predictions(run_dir)
    metrics_log = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").is_file() else []
    config_text = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    report = load_json(run_dir / "report.json")
    if report is None:
        raise FileNotFoundError(f"{run_dir} has no report.json: the run has not finished its evaluation")
    return {"dir": run_dir, "report": report, "rows": rows, "baselines": baselines, "metrics_log": metrics_log,
            "audit": load_json(run_dir / "audit.json"), "meta": load_json(run_dir / "meta.json") or {},
            "config_text": config_text, "config": yaml.safe_load(config_text) or {} if config_text else {},
            "explanations": load_json(run_dir / FOLDER / "explanations.json"),
            "analysis": load_json(run_dir / FOLDER / "analysis.json") or {},
            "counterfactuals": load_json(run_dir / "counterfactuals.json")}


def slices_section(run: dict[str, Any]) -> str:
    from tuneforge.evaluation.slices import run_slices

    specs = (run["config"].get("eval") or {}).get("slices") or []
    if not specs or not run["rows"]:
        return ""
    labels = sorted({r["gold"] for r in run["rows"]} | {r["predicted"] for r in run["rows"]})
    out = []
    for spec, res in run_slices(specs, run["rows"], {lab: i for i, lab in enumerate(labels)}).items():
        body = [[S.esc(v), s["n"], f"{S.pct(s['accuracy'])} {S.ci(*s['accuracy_ci'])}",
                 f"{S.pct(s['macro_f1'])} {S.ci(*s['macro_f1_ci'])}",
                 f"<span class={'flag' if s['significant'] else ''}>{100 * s['gap']:+.1f}</span>",
                 S.p_value(s["p_adjusted"])] for v, s in res["slices"].items()]
        out.append(f"<h3>by {S.esc(spec)}</h3>" + S.table(
            ["value", "rows", "accuracy % [95% CI]", "macro F1 % [95% CI]", "gap to overall (pts)",
             "p (Fisher vs rest, BH-adjusted)"], body))
    return "".join(out) + "<p class=note>Accuracy intervals: Wilson; macro F1: bootstrap. A gap in red is " \
        "significant at 5% after Benjamini-Hochberg adjustment across the slices of one column.</p>"


def counterfactual_section(cf: dict[str, Any] | None) -> str:
    if not cf:
        return ""
    o = cf["overall"]
    head = (f"<p>{o['flips']} of {o['n']} sentence pairs change label when only the group term changes: flip rate "
            f"<b>{S.pct(o['flip_rate'])}%</b> {S.ci(*o['flip_rate_ci'])}; mean |shift| of the first sentence's "
            f"label probability {o['mean_abs_shift']:.3f}. Templates: {S.esc(Path(cf['file']).name)}.</p>")
    groups = [[S.esc(g), s["n"], f"{S.pct(s['flip_rate'])} {S.ci(*s['flip_rate_ci'])}", f"{s['mean_shift']:+.3f}",
               f"{s['mean_abs_shift']:.3f}"] for g, s in cf["groups"].items()]
    pairs = [[S.esc(p["group"]), f"{S.esc(p['term_a'])} → {S.esc(p['term_b'])}", p["n"], S.pct(p["flip_rate"]),
              f"{p['mean_shift']:+.3f}", "<br>".join(f"{S.esc(e['a'])} <b>{S.esc(e['label_a'])}</b> → "
                                                     f"<b>{S.esc(e['label_b'])}</b>" for e in p["examples"])]
             for p in cf["pairs"][:12]]
    return head + S.table(["group", "pairs", "flip rate % [95% CI]", "mean shift", "mean |shift|"], groups) + \
        "<h3>Term pairs with the most flips</h3>" + S.table(
            ["group", "terms", "pairs", "flip rate %", "mean shift", "flipped examples"], pairs) + \
        "<p class=note>Shift: probability of the label predicted for the first term's sentence, second minus " \
        "first (negative: the second term lowers the model's confidence in that label).</p>"


def run_card(run: dict[str, Any]) -> str:
    meta, report, analysis = run["meta"], run["report"], run["analysis"]
    training = report.get("training", {})
    kind = (meta.get("model") or {}).get("kind", "")
    facts = [("created", meta.get("created")), ("model", f"{report.get('model')} ({kind})"),
             ("seed", meta.get("seed")), ("precision", meta.get("precision")),
             ("training time", f"{training['train_seconds']} s, {training.get('steps')} steps"
              if "train_seconds" in training else None),
             ("analysis time", f"{analysis['analysis_seconds']} s" if "analysis_seconds" in analysis else None),
             ("peak memory (process)", f"{analysis['peak_rss_mb']} MiB" if "peak_rss_mb" in analysis else None),
             ("peak GPU memory", f"{analysis['peak_gpu_mb']} MiB" if "peak_gpu_mb" in analysis else None),
             ("method", model_name(report, run["config"])),
             ("parameters trained", f"{training['trainable_parameters']:,} of {training['total_parameters']:,}"
              if "total_parameters" in training else training.get("trainable_parameters"))]
    facts += [(f"hardware: {k}", v) for k, v in (meta.get("hardware") or {}).items()]
    facts += [(f"data {k}", f"{d.get('path')}<br><code>sha256 {d.get('sha256')}</code>")
              for k, d in (meta.get("data") or {}).items() if isinstance(d, dict)]
    versions = ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items())
    rows = [[S.esc(k), v if str(k).startswith("data ") else S.esc(v)] for k, v in facts if v is not None]
    return S.table(["", ""], rows + [["library versions", S.esc(versions)]], "card") + \
        f"<h3>Resolved config</h3><pre>{S.esc(run['config_text'])}</pre>"


def ranking_tables(report: dict[str, Any], run_dir: Path) -> str:
    if report.get("task") != "recommendation":
        return ""
    from tuneforge.tasks.recommendation.report_section import ranking_section

    return ranking_section(report, run_dir)


def render_run(run_dir: str | Path) -> str:
    """The whole report page for one run directory."""
    run = load_run(Path(run_dir))
    report = run["report"]
    test = report["metrics"].get(report.get("test_split", "test"), {})
    name = model_name(report, run["config"])
    parts = [
        ("before-after", "Before / after", ranking_tables(report, run["dir"])  # a ranking task's own metrics
         or S.before_after(report, run["rows"], run["baselines"], name=name),
         f"The {S.esc(name)} model and each baseline on the same test split."),
        ("prompting", "Prompting", S.prompting(report.get("prompting")),
         "The untuned model scored with a prompt: label descriptions (encoders) or label words (decoders)."),
        ("curves", "Training", S.curves(run["metrics_log"], report.get("main_metric", "accuracy")), ""),
        ("classes", "Classes", S.classes(test), ""),
        ("calibration", "Calibration", S.calibration(test, run["rows"], name), ""),
        ("errors", "Error analysis", S.errors(run["rows"], run["explanations"]), ""),
        ("slices", "Slices", slices_section(run), "Metrics per slice of the test split (eval.slices)."),
        ("bias", "Counterfactual bias tests", counterfactual_section(run["counterfactuals"]),
         "Sentence pairs that differ only in a group term should get the same label (eval.counterfactuals)."),
        ("data", "Data audit", S.audit(run["audit"]), "Label and length distributions per split."),
        ("card", "Run card", run_card(run), ""),
    ]
    body = "".join(S.section(t, b, a, i) for a, t, b, i in parts)
    nav = [(a, t) for a, t, b, _ in parts if b]
    return page(f"{report['task']} on {report['model']}: {Path(run_dir).resolve().name}", nav, body)


def write_html_report(run_dir: str | Path) -> Path:
    out = Path(run_dir) / "report.html"
    atomic_write_text(out, render_run(run_dir))
    return out


# ---------------------------------------------------------------- comparing runs
def render_compare(run_dirs: Sequence[str | Path]) -> str:
    """Runs side by side: headline metrics with CIs, paired tests against the first run where the test rows are
    the same texts in the same order, and validation curves overlaid."""
    runs = [load_run(Path(d)) for d in run_dirs]
    first = runs[0]
    index: dict[str, int] = {}
    rows_out, curves = [], {}
    for run in runs:
        name = Path(run["dir"]).resolve().name
        test = run["report"]["metrics"].get(run["report"].get("test_split", "test"), {})
        cells = [S.esc(name), S.esc(run["report"]["model"]), S.esc((run["config"].get("peft") or {}).get("method")
                                                                   or "full")]
        if run["rows"]:
            gold, pred = S.indices(run["rows"], "gold", index), S.indices(run["rows"], "predicted", index)
            cells += [f"{S.pct(stats.accuracy(gold, pred))} {S.ci(*stats.bootstrap_ci(stats.accuracy, gold, pred))}",
                      f"{S.pct(stats.macro_f1(gold, pred))} {S.ci(*stats.bootstrap_ci(stats.macro_f1, gold, pred))}"]
        else:
            cells += [S.pct(test.get("accuracy")), S.pct(test.get("macro_f1"))]
        cells.append(_paired_vs_first(first, run, index) if run is not first else "reference")
        rows_out.append(cells)
        main = run["report"].get("main_metric", "accuracy")
        curves[name] = [(r["step"], r.get(main)) for r in run["metrics_log"] if r.get("split") == "validation"]
    body = S.table(["run", "model", "method", "accuracy % [95% CI]", "macro F1 % [95% CI]",
                    "McNemar vs the first run"], rows_out)
    chart = svg.line_chart(curves, "Validation (main metric)", y_label="score")
    links = "".join(f'<li><a href="{Path(r["dir"]).resolve().as_uri()}/report.html">'
                    f'{S.esc(Path(r["dir"]).resolve().name)}</a></li>' for r in runs)
    return page("TuneForge run comparison", [("runs", "Runs")],
                S.section("Runs", body + chart + f"<ul>{links}</ul>", "runs"))


def _paired_vs_first(first: dict[str, Any], run: dict[str, Any], index: dict[str, int]) -> str:
    a, b = first["rows"], run["rows"]
    if not a or not b or [r["text"] for r in a] != [r["text"] for r in b]:
        return "– (test rows differ)"
    gold = S.indices(a, "gold", index)
    m = stats.mcnemar(S.indices(a, "predicted", index) == gold, S.indices(b, "predicted", index) == gold)
    return f"{m['b']} vs {m['c']}: p {S.p_value(m['p_exact'])}, mid-p {S.p_value(m['p_mid'])}"

