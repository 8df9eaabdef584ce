"""The analysis step at the end of a run: test predictions of the tuned model and the baselines, counterfactual
bias tests, explanations of the error examples, then ``report.html``. Works from a model in memory, so training
and ``tuneforge report --recompute`` share it."""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuneforge.data.readers import ReadOptions
from tuneforge.evaluation import predictions as P
from tuneforge.evaluation.calibrate_run import collect_logits, load_calibration
from tuneforge.evaluation.calibration import softmax
from tuneforge.evaluation.evaluate import predict_features
from tuneforge.io_utils import atomic_write_json

EXPLAINED_WRONG, EXPLAINED_RIGHT = 6, 3  # error examples explained with IG (50 steps each, ~0.5 s on MiniLM CPU)
EXPLAIN_BUDGET_S = 60.0  # a 135M body takes ~10-30 s an example on 2 cores: stop starting new ones after this


def supports(task: Any) -> bool:
    return getattr(task, "name", None) == "classification" and not getattr(task, "multi_label", False)


def probabilities(model: torch.nn.Module, task: Any, features: Sequence[dict[str, Any]], batch_size: int,
                  run_dir: Path | None) -> np.ndarray:
    """(N, C) probabilities, temperature-scaled with the run's stored calibration when it has one."""
    stored = load_calibration(run_dir)
    temperature = stored["temperature"] if stored else 1.0
    return softmax(collect_logits(model, task, features, batch_size), temperature)


def text_probabilities(model: torch.nn.Module, task: Any, texts: list[str], batch_size: int,
                       run_dir: Path | None) -> np.ndarray:
    features = [task.encode(task.parse_input(t)) for t in texts]
    return probabilities(model, task, features, batch_size, run_dir)


def run_labels(model: torch.nn.Module, task: Any, features: Sequence[dict[str, Any]], cfg: Any,
               run_dir: Path) -> list[int]:
    """Predicted label indices exactly as the run scored them (its precision: bf16 with near ties redone in fp32),
    so the page's figures equal report.json's even where bf16 and fp32 disagree on a row."""
    meta = P.load_json(run_dir / "meta.json") or {}
    dtype = torch.bfloat16 if meta.get("precision") == "bf16" else None
    return [task.decide(p) for p in predict_features(model, task, features, cfg.eval.batch_size, dtype)]


def read_options(data_cfg: Any, task: Any) -> ReadOptions:
    return ReadOptions(encoding=data_cfg.encoding, line_delimiter=data_cfg.line_delimiter,
                       text_column=data_cfg.text_column, label_column=data_cfg.label_column,
                       target_suffix=data_cfg.target_suffix, task=task.name)


def finish_run_report(run_dir: Path, cfg: Any, task: Any, model: torch.nn.Module, examples: list[dict[str, Any]],
                       features: list[dict[str, Any]], baselines: dict[str, list[Any]] | None = None,
                       predictions: Sequence[Any] | None = None) -> Path:
    """Write ``predictions/``, ``counterfactuals.json`` and the explanations of the error examples, then
    ``report.html``, and log the report and model to the run's trackers; returns the report's path. Tasks other
    than single-label classification save ``predictions/test.jsonl`` from ``predictions`` (the test split's, as
    scored) and get the report from what the run already holds (metrics, curves, audit, run card)."""
    from tuneforge.evaluation.html_report import write_html_report
    from tuneforge.tracking import log_run_files

    start = time.perf_counter()
    notes: dict[str, Any] = {}
    with plain_forward(model):
        if supports(task) and examples:
            notes = _analyse(run_dir, cfg, task, model, examples, features, baselines)
        elif examples and predictions is not None:
            P.save_predictions(run_dir, P.generic_rows(task, examples, predictions), {})
    notes["analysis_seconds"] = round(time.perf_counter() - start, 2)
    notes.update(peak_memory_mb())
    if (run_dir / P.FOLDER).is_dir():
        atomic_write_json(run_dir / P.FOLDER / "analysis.json", notes)
    report = write_html_report(run_dir)
    log_run_files(run_dir, cfg.train.trackers)
    return report


@contextlib.contextmanager
def plain_forward(model: torch.nn.Module) -> Iterator[None]:
    """Run ``model`` in fp32 even when accelerate left its bf16 autocast wrapper on ``forward`` (unwrap_model
    keeps it): IG's completeness and the stored probabilities need the fp32 model."""
    original = getattr(model, "_original_forward", None)
    if original is None:
        yield
        return
    wrapped = model.forward
    model.forward = original
    try:
        yield
    finally:
        model.forward = wrapped


def _analyse(run_dir: Path, cfg: Any, task: Any, model: torch.nn.Module, examples: list[dict[str, Any]],
             features: list[dict[str, Any]], baselines: dict[str, list[Any]] | None) -> dict[str, Any]:
    """Predictions, counterfactuals and explanations of a single-label classifier's test split."""
    from tuneforge.evaluation.slices import read_columns

    probs = probabilities(model, task, features, cfg.eval.batch_size, run_dir)
    meta = read_columns(examples, cfg.eval.slices, read_options(cfg.data, task), cfg.data.format)
    rows = P.tuned_rows(examples, probs, task.labels, meta, run_labels(model, task, features, cfg, run_dir))
    P.save_predictions(run_dir, rows, {name: P.baseline_rows(preds, task.labels)
                                       for name, preds in (baselines or {}).items()})
    if cfg.eval.counterfactuals:
        _counterfactuals(run_dir, cfg, task, model)
    return {"explanations": _explain_errors(run_dir, task, model, rows)}


def _counterfactuals(run_dir: Path, cfg: Any, task: Any, model: torch.nn.Module) -> None:
    from tuneforge.evaluation.counterfactual import load_cases, resolve_template_file, run_counterfactuals

    path = resolve_template_file(cfg.eval.counterfactuals, base=run_dir)
    result = run_counterfactuals(load_cases(path), lambda texts: text_probabilities(
        model, task, texts, cfg.eval.batch_size, run_dir), task.labels)
    atomic_write_json(run_dir / "counterfactuals.json", {"file": str(path), **result})


def _explain_errors(run_dir: Path, task: Any, model: torch.nn.Module, rows: Sequence[dict[str, Any]]) -> str:
    """IG + occlusion for the error examples, explaining the predicted label: what a reader asks of a wrong
    answer is "why did it say X?"."""
    from tuneforge.explain import ExplainError, explain_inputs

    picked = P.error_examples(rows, EXPLAINED_WRONG, EXPLAINED_RIGHT)
    ids = picked["wrong"] + picked["right"]
    try:
        items = [{"text": rows[i]["text"], **({"text_pair": rows[i]["text_pair"]} if "text_pair" in rows[i]
                                              else {})} for i in ids]
        found = []
        start = time.perf_counter()
        for it in items:  # one at a time, so a large model stops at the time budget instead of running on
            if found and time.perf_counter() - start > EXPLAIN_BUDGET_S:
                break
            found.extend(explain_inputs(model, task, [it if "text_pair" in it else it["text"]]))
    except (ExplainError, ImportError) as e:
        return f"not explained: {e}"
    atomic_write_json(run_dir / P.FOLDER / "explanations.json", {str(i): e for i, e in zip(ids, found)})
    if len(found) < len(ids):
        return f"{len(found)} of {len(ids)} examples explained (the rest after the {EXPLAIN_BUDGET_S:.0f} s budget)"
    return f"{len(found)} examples explained"


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process so far (training included), and of the GPU when one was used, MiB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    out = {"peak_rss_mb": round(rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024, 1)}
    if torch.cuda.is_available():
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out
