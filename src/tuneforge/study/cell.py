"""One study cell in its own process: ``python -m tuneforge.study.cell CONFIG OUT.json [a.b=v ...]``.

It trains (or prompts) through ``tuneforge.runner.train``, then writes what the study needs: the report's
numbers, the test predictions next to the gold labels (for the paired test), wall time and this process's
peak RSS.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from tuneforge.io_utils import atomic_write_json


def test_predictions(run_dir: Path, cfg: Any, split: str) -> tuple[list[str], list[str]]:
    """(predicted, gold) labels of ``split``: from predictions.json for runs without weights, else the run's
    Predictor on the split as ``prepare`` reads it again (same files, same split seed)."""
    examples = _split_examples(cfg, split)
    gold = [ex["labels"][0] for ex in examples]
    saved = run_dir / "predictions.json"
    if saved.is_file():
        return json.loads(saved.read_text())[split], gold
    from tuneforge.inference.predictor import Predictor

    pred = Predictor.from_run_dir(run_dir, precision="fp32")
    return [r["label"] for r in pred.predict([ex["text"] for ex in examples])], gold


def _split_examples(cfg: Any, split: str) -> list[dict[str, Any]]:
    """The examples of ``split``: read from its own file when it has one (no need to read and carve train
    again), else as ``prepare`` carves them."""
    from tuneforge.data.load import split_paths
    from tuneforge.data.readers import BadRows, ReadOptions, read_file
    from tuneforge.models import resolve_model
    from tuneforge.run import make_task, prepare

    files = split_paths(getattr(cfg.data, split, None))
    if not files:
        return prepare(cfg, encode=False).data.splits[split]
    d = cfg.data
    task = make_task(cfg, resolve_model(cfg.model))
    opts = ReadOptions.from_data(d, task.name)
    bad = BadRows(skip=d.skip_bad_rows)
    examples = [ex for path in files for ex in task.parse(read_file(path, d.format, opts, bad, role=split), bad)]
    limit = {"test": d.test_limit, "validation": d.validation_limit}.get(split)
    return examples[:limit] if limit else examples


def run_cell(config: str, out: str, overrides: list[str]) -> dict[str, Any]:
    from tuneforge.config import load_config
    from tuneforge.runner import train

    cfg = load_config(config, overrides)
    start = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - start
    report = result.report
    split = report["test_split"]
    predicted, gold = test_predictions(result.run_dir, cfg, split)
    shots_file = result.run_dir / "shots.json"
    shots = json.loads(shots_file.read_text()) if shots_file.is_file() else {}
    training = report.get("training", {})
    cell = {"main_metric": report["main_metric"], "test_split": split,
            "test": {k: v for k, v in report["metrics"][split].items() if isinstance(v, (int, float))},
            "predicted": predicted, "gold": gold, "per_class": shots.get("per_class"),
            "train_seconds": training.get("train_seconds"), "wall_seconds": round(wall, 1),
            "trainable_parameters": training.get("trainable_parameters"),
            # ru_maxrss is in KiB on Linux: this process's own peak, not the study's
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "run_dir": str(result.run_dir)}
    atomic_write_json(out, cell)
    return cell


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit("usage: python -m tuneforge.study.cell CONFIG OUT.json [key=value ...]")
    run_cell(sys.argv[1], sys.argv[2], sys.argv[3:])
