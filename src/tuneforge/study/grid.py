"""Run a study's grid cell by cell, each in its own process; finished cells are skipped on a rerun."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from statistics import fmean
from typing import Any

from tuneforge.io_utils import atomic_write_json
from tuneforge.study.spec import Cell, StudySpec, budget_overrides, cell_overrides, cells


def grid_facts(spec: StudySpec) -> dict[str, Any]:
    """Train size and label count of the base config's split (for percentage budgets), computed once and kept
    in the study folder so a resumed study sizes its budgets the same way."""
    path = spec.output_dir / "grid.json"
    if path.is_file():
        return json.loads(path.read_text())
    from tuneforge.config import load_config
    from tuneforge.run import prepare

    overrides = [] if spec.split_seed is None else [f"data.split.seed={spec.split_seed}"]
    prepared = prepare(load_config(spec.base, overrides + ["data.shots_per_class=null"]), encode=False)
    facts = {"train_size": len(prepared.data.splits["train"]), "labels": prepared.task.labels,
             "test_split": prepared.test_split, "test_size": len(prepared.data.splits[prepared.test_split])}
    atomic_write_json(path, facts)
    return facts


def cell_file(spec: StudySpec, cell: Cell) -> Path:
    return spec.output_dir / "cells" / cell.key / "cell.json"


def run_one(spec: StudySpec, cell: Cell, facts: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """One cell in a fresh process (its peak RSS is its own, a crash or hang stays inside it)."""
    out = cell_file(spec, cell)
    out.parent.parent.mkdir(parents=True, exist_ok=True)
    budget = budget_overrides(cell.budget, facts["train_size"], len(facts["labels"]))
    cmd = [sys.executable, "-m", "tuneforge.study.cell", str(spec.base), str(out), *cell_overrides(spec, cell, budget)]
    log = out.parent.parent / f"{out.parent.name}.log"  # beside the cell folder, which the run may clear
    with open(log, "w", encoding="utf-8") as fh:
        try:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return {"status": f"failed (timeout after {timeout:.0f} s)", "log": str(log)}
    if rc != 0 or not out.is_file():
        return {"status": f"failed (exit {rc})", "log": str(log)}
    return {"status": "ok", **json.loads(out.read_text())}


def estimate_left(seconds: dict[tuple[str, Any], list[float]], left: list[Cell]) -> float:
    """Seconds the cells in ``left`` should take: each (method, budget) at its own mean so far (seeds of one
    cell cost alike; budgets and methods do not), one not seen yet at the mean over every finished cell."""
    every = [s for v in seconds.values() for s in v]
    overall = fmean(every) if every else 0.0
    return sum(fmean(seconds[(c.method, c.budget)]) if (c.method, c.budget) in seconds else overall for c in left)


def run_study(spec: StudySpec, timeout: float | None = None, progress: bool = True) -> dict[str, Any]:
    """Every cell of ``spec`` (skipping those with a cell.json), then the summary: study.json, study.md and the
    learning curve, all in ``spec.output_dir``."""
    from tqdm import tqdm

    from tuneforge.study.report import write_outputs

    spec.output_dir.mkdir(parents=True, exist_ok=True)
    facts = grid_facts(spec)
    grid = cells(spec)
    results: dict[Cell, dict[str, Any]] = {}
    todo = []
    for cell in grid:
        if cell_file(spec, cell).is_file():
            results[cell] = {"status": "ok", **json.loads(cell_file(spec, cell).read_text())}
        else:
            todo.append(cell)
    bar = tqdm(total=len(grid), initial=len(grid) - len(todo), disable=not progress, unit="cell",
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
    seconds: dict[tuple[str, Any], list[float]] = {}
    for done, cell in enumerate(todo):
        bar.set_description(cell.key)
        start = time.perf_counter()
        results[cell] = run_one(spec, cell, facts, timeout)
        seconds.setdefault((cell.method, cell.budget), []).append(time.perf_counter() - start)
        left = estimate_left(seconds, todo[done + 1:])
        bar.set_postfix_str(f"ETA {left / 60:.1f} min, last {results[cell].get('status')}")
        bar.update(1)
        write_outputs(spec, grid, results, facts)  # a stopped study still has a summary of what finished
    bar.close()
    return write_outputs(spec, grid, results, facts)
