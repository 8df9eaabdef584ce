"""Per-example test predictions saved in the run (``predictions/``): the tuned model's rows with confidence and top
scores, each baseline's predicted labels in the same order; what the report's paired tests, slices and error
analysis are computed from."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.data.readers import LOC
from tuneforge.io_utils import atomic_write_text

FOLDER = "predictions"
TOP_SCORES = 5  # the report shows the runner-up labels; all C scores would make large label sets heavy


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line ({e.msg})") from None
    return rows


def tuned_rows(examples: Sequence[dict[str, Any]], probs: np.ndarray, labels: Sequence[str],
               meta: Sequence[dict[str, Any]] | None = None,
               predicted: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """One row per test example: text, gold, predicted, confidence (the predicted label's probability) and the
    top scores, the file and line it came from and any slice columns. ``predicted`` (label indices) overrides the
    argmax of ``probs``: the labels the run's metrics were computed from, so page and report.json agree."""
    rows = []
    for i, (ex, p) in enumerate(zip(examples, probs)):
        top = np.argsort(-p)[:TOP_SCORES]
        k = int(top[0]) if predicted is None else int(predicted[i])
        rows.append({"id": i, "text": ex["text"], **({"text_pair": ex["text_pair"]} if "text_pair" in ex else {}),
                     "gold": ex["labels"][0], "predicted": labels[k], "confidence": float(p[k]),
                     "scores": {labels[int(j)]: round(float(p[j]), 6) for j in top}, "loc": ex.get(LOC),
                     **({"meta": meta[i]} if meta is not None and meta[i] else {})})
    return rows


def baseline_rows(predictions: Sequence[Any], labels: Sequence[str]) -> list[dict[str, Any]]:
    """A baseline's predicted label per test row (label indices, or probability rows, become label names)."""
    out = []
    for i, p in enumerate(predictions):
        k = int(np.argmax(p)) if isinstance(p, (list, tuple, np.ndarray)) else int(p)
        out.append({"id": i, "predicted": labels[k]})
    return out


GOLD_KEYS = ("references", "answers", "tags", "relation", "labels")  # an example's target, by task


def example_text(task: Any, ex: dict[str, Any]) -> str:
    """What a reader of the predictions wants to see of the input: the last user turn of a conversation, the
    question of a QA example, else the example's text."""
    if isinstance(ex.get("messages"), list):
        users = [m["content"] for m in ex["messages"] if m.get("role") == "user"]
        return users[-1] if users else ""
    for key in ("question", "text"):
        if isinstance(ex.get(key), str):
            return ex[key]
    return task.audit_view()[0](ex)


def generic_rows(task: Any, examples: Sequence[dict[str, Any]], predictions: Sequence[Any]) -> list[dict[str, Any]]:
    """One row per test example for any task: text, gold (the example's target), predicted (the task's
    ``format_prediction``: label and scores, entities, answer span, generated text) and the file and line."""
    rows = []
    for i, (ex, pred) in enumerate(zip(examples, predictions)):
        gold = next((ex[k] for k in GOLD_KEYS if k in ex), None)
        rows.append({"id": i, "text": example_text(task, ex), "gold": gold,
                     "predicted": task.format_prediction(pred, ex), "loc": ex.get(LOC)})
    return rows


def save_predictions(run_dir: Path, rows: Sequence[dict[str, Any]],
                     baselines: dict[str, list[dict[str, Any]]]) -> None:
    folder = run_dir / FOLDER
    folder.mkdir(exist_ok=True)
    write_jsonl(folder / "test.jsonl", rows)
    for name, brows in baselines.items():
        if len(brows) != len(rows):
            raise ValueError(f"baseline {name}: {len(brows)} predictions for {len(rows)} test rows")
        write_jsonl(folder / f"baseline_{name}.jsonl", brows)


def load_predictions(run_dir: Path) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The single-label classifier's rows and each baseline's (``[]`` and ``{}`` when the run saved none, or saved
    the generic rows of another task)."""
    folder = run_dir / FOLDER
    if not (folder / "test.jsonl").is_file():
        return [], {}
    rows = read_jsonl(folder / "test.jsonl")
    if rows and "confidence" not in rows[0]:  # generic rows of another task: no per-label analysis to draw
        return [], {}
    baselines = {p.stem.removeprefix("baseline_"): read_jsonl(p) for p in sorted(folder.glob("baseline_*.jsonl"))}
    return rows, baselines


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def error_examples(rows: Sequence[dict[str, Any]], wrong: int = 10, right: int = 10) -> dict[str, list[int]]:
    """Row ids of the most confident wrong predictions and the least confident right ones.

    >>> rows = [{"id": i, "gold": g, "predicted": p, "confidence": c} for i, (g, p, c) in
    ...         enumerate([("a", "b", .9), ("a", "a", .6), ("b", "a", .7), ("b", "b", .99)])]
    >>> error_examples(rows, 1, 1)
    {'wrong': [0], 'right': [1]}
    """
    bad = sorted((r for r in rows if r["gold"] != r["predicted"]), key=lambda r: -r["confidence"])
    good = sorted((r for r in rows if r["gold"] == r["predicted"]), key=lambda r: r["confidence"])
    return {"wrong": [r["id"] for r in bad[:wrong]], "right": [r["id"] for r in good[:right]]}
