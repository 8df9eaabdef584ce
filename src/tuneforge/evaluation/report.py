"""The before/after report: baselines and the tuned model on one frozen test split → report.json + report.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.io_utils import atomic_write_json, atomic_write_text

HEADLINE = ("accuracy", "macro_f1", "micro_f1", "f1", "precision", "recall", "exact_match", "semeval_macro_f1",
            "rougeL", "bleu", "chrf", "subset_accuracy")


UNTRAINED_NAMES = {"zero_shot": "zero-shot (no training)", "icl": "in-context (no training)", "setfit": "SetFit"}


def model_name(report: dict[str, Any], config: dict[str, Any] | None = None) -> str:
    """What the run's own model is called: ``fine-tuned``, or the prompting method that made it."""
    method = ((config or {}).get("fewshot") or {}).get("method") or report.get("training", {}).get("method")
    if report.get("training", {}).get("steps") == 0 and method not in UNTRAINED_NAMES:
        method = "zero_shot"  # train.epochs 0: evaluated as is
    return UNTRAINED_NAMES.get(method, "fine-tuned")


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def headline(metrics: dict[str, Any]) -> list[str]:
    keys = [k for k in HEADLINE if k in metrics]
    return keys or [k for k in scalars(metrics) if k != "count"][:4]


def build_report(task: str, model: str, main_metric: str, metrics: dict[str, dict[str, Any]],
                 baselines: dict[str, dict[str, Any]], extra: dict[str, Any]) -> dict[str, Any]:
    """``metrics.<split>.<metric>`` for the tuned model, ``baselines.<name>.<metric>`` on the test split."""
    return {"task": task, "model": model, "main_metric": main_metric, "metrics": metrics, "baselines": baselines,
            **extra}


def comparison_table(report: dict[str, Any], split: str = "test") -> str:
    """A plain-text table: each baseline and the tuned model, on the same test split."""
    tuned = report["metrics"].get(split, {})
    cols = headline(tuned)
    rows = [(name, m) for name, m in report["baselines"].items()] + [(model_name(report), tuned)]
    width = max([len(r[0]) for r in rows] + [10])
    out = [f"{'model':<{width}}  " + "  ".join(f"{c:>9}" for c in cols)]
    for name, m in rows:
        out.append(f"{name:<{width}}  " + "  ".join(_cell(m.get(c)) for c in cols))
    return "\n".join(out)


def _cell(v: Any) -> str:
    return f"{v:>9.4f}" if isinstance(v, (int, float)) else f"{'-':>9}"


def write_report(run_dir: Path, report: dict[str, Any]) -> None:
    atomic_write_json(run_dir / "report.json", report)
    atomic_write_text(run_dir / "report.md", render_markdown(report))


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# TuneForge report: {report['task']} on `{report['model']}`", ""]
    title = "Before / after fine-tuning" if model_name(report) == "fine-tuned" else "Baselines and the run's model"
    lines += [f"## {title} (test split)", "", "```", comparison_table(report), "```", ""]
    train = report.get("training", {})
    if train:
        lines += ["## Training", ""] + [f"- {k}: {v}" for k, v in train.items()] + [""]
    test = report["metrics"].get("test", {})
    per_class = test.get("per_class")
    if per_class:
        lines += ["## Per-class (test)", "", "| label | precision | recall | f1 | support |", "|---|---|---|---|---|"]
        for lab, m in per_class.items():
            lines.append(f"| {lab} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
        lines.append("")
    cm = test.get("confusion_matrix")
    if cm and len(cm["labels"]) <= 20:
        labels = cm["labels"]
        lines += ["## Confusion matrix (rows = gold, columns = predicted)", "",
                  "| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        for lab, row in zip(labels, cm["matrix"]):
            lines.append(f"| **{lab}** | " + " | ".join(str(x) for x in row) + " |")
        lines.append("")
    audit = report.get("audit_warnings")
    if audit:
        lines += ["## Data audit warnings", ""] + [f"- {w}" for w in audit] + [""]
    return "\n".join(lines)
