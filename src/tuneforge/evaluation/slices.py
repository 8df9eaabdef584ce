"""Metrics per slice of the test split (a metadata column, the source file, a length bucket), each with a
confidence interval, and the gap to the rest of the split flagged when it is significant after FDR control."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.data.readers import LOC, BadRows, DataError, ReadOptions, read_file, split_loc
from tuneforge.evaluation import stats

BUILTIN = ("length", "source")  # slices every example has; anything else names a column of the data file
LENGTH_BUCKETS = 4  # quartiles of the word count: enough rows per bucket for an interval on small test sets


def slice_metrics(gold: Sequence[int], pred: Sequence[int], groups: Sequence[Any], alpha: float = 0.05,
                  min_size: int = 1, seed: int = 0) -> dict[str, Any]:
    """Accuracy (Wilson 95% CI) and macro F1 (bootstrap 95% CI) per group value, the gap to the overall accuracy,
    and whether that gap is significant: Fisher's exact test of the slice against the rest of the split, p-values
    adjusted by Benjamini-Hochberg across the slices.

    >>> r = slice_metrics([0, 0, 1, 1], [0, 0, 1, 0], ["a", "a", "b", "b"])
    >>> r["overall"]["accuracy"], r["slices"]["b"]["accuracy"], r["slices"]["b"]["gap"]
    (0.75, 0.5, -0.25)
    """
    gold_a, pred_a = np.asarray(gold, dtype=int), np.asarray(pred, dtype=int)
    keys = np.asarray([str(g) for g in groups], dtype=object)
    if not (len(gold_a) == len(pred_a) == len(keys)):
        raise ValueError(f"slice_metrics: {len(gold_a)} gold, {len(pred_a)} predicted, {len(keys)} group values")
    correct = gold_a == pred_a
    overall = float(correct.mean()) if len(correct) else float("nan")
    out: dict[str, dict[str, Any]] = {}
    for value in sorted(set(keys.tolist()), key=_natural):
        sel = keys == value
        n = int(sel.sum())
        if n < min_size:
            continue
        k = int(correct[sel].sum())
        lo, hi = stats.wilson_ci(k, n)
        f1 = stats.macro_f1(gold_a[sel], pred_a[sel])
        f1_ci = stats.bootstrap_ci(stats.macro_f1, gold_a[sel], pred_a[sel], n_resamples=500, seed=seed)
        p = stats.fisher_gap(k, n, int(correct[~sel].sum()), int((~sel).sum()))
        out[value] = {"n": n, "accuracy": k / n, "accuracy_ci": [lo, hi], "macro_f1": f1, "macro_f1_ci": list(f1_ci),
                      "gap": k / n - overall, "p_value": p}
    adjusted = stats.benjamini_hochberg([s["p_value"] for s in out.values()])
    for s, q in zip(out.values(), adjusted):
        s["p_adjusted"] = q
        s["significant"] = bool(q < alpha)
    return {"overall": {"n": int(len(correct)), "accuracy": overall}, "slices": out}


def length_buckets(texts: Sequence[str], buckets: int = LENGTH_BUCKETS) -> list[str]:
    """Each text's word-count bucket, cut at quantiles so buckets hold similar row counts: labels like
    ``"6-9 words"``."""
    counts = np.asarray([len(t.split()) for t in texts])
    if not len(counts):
        return []
    edges = np.unique(np.quantile(counts, np.linspace(0, 1, buckets + 1)).round().astype(int))
    out = []
    for c in counts:
        i = int(np.clip(np.searchsorted(edges, c, side="right") - 1, 0, max(0, len(edges) - 2)))
        lo, hi = edges[i], edges[min(i + 1, len(edges) - 1)]
        hi = hi if i + 2 >= len(edges) else hi - 1  # half-open buckets except the last
        out.append(f"{lo}-{hi} words" if hi > lo else f"{lo} word" + ("" if lo == 1 else "s"))
    return out


def group_values(spec: str, rows: Sequence[dict[str, Any]]) -> list[Any]:
    """The slice key of every prediction row: ``length``, ``source`` (the file it came from) or a metadata column
    saved with the row (``meta``)."""
    if spec == "length":
        return length_buckets([r["text"] for r in rows])
    if spec == "source":
        return [Path(split_loc(r.get("loc") or "?:?")[0]).name for r in rows]
    missing = [i for i, r in enumerate(rows) if spec not in (r.get("meta") or {})]
    if missing:
        r = rows[missing[0]]
        raise DataError(r.get("loc") or "<predictions>", None, f"eval.slices: no column {spec!r} for this row "
                        f"({len(missing)} of {len(rows)} rows lack it)", field=spec)
    return [r["meta"][spec] for r in rows]


def read_columns(examples: Sequence[dict[str, Any]], columns: Sequence[str], opts: ReadOptions,
                 fmt: str = "auto") -> list[dict[str, Any]]:
    """Metadata columns of each parsed example, read back from the file and line its ``_loc`` names (the task's
    parser keeps only text and labels). A column missing from a row is an error naming the file and line."""
    columns = [c for c in columns if c not in BUILTIN]
    if not columns:
        return [{} for _ in examples]
    by_file: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for ex in examples:
        path, _ = split_loc(ex.get(LOC) or "?:?")
        if path not in by_file and Path(path).is_file():
            by_file[path] = {r[LOC]: r for r in read_file(path, fmt, opts, BadRows(skip=True))}
    out = []
    for ex in examples:
        loc = ex.get(LOC) or "?:?"
        rec = by_file.get(split_loc(loc)[0], {}).get(loc)
        if rec is None:
            raise DataError(split_loc(loc)[0], None, f"eval.slices: cannot find the row {loc} to read its columns")
        absent = [c for c in columns if c not in rec]
        if absent:
            path, line = split_loc(loc)
            raise DataError(path, int(line) if line.isdigit() else None,
                            f"eval.slices: no column {absent[0]!r}; columns here: "
                            f"{', '.join(k for k in rec if k != LOC)}", field=absent[0])
        out.append({c: rec[c] for c in columns})
    return out


def run_slices(specs: Sequence[str], rows: Sequence[dict[str, Any]], label_index: dict[str, int]) -> dict[str, Any]:
    """``eval.slices`` over saved prediction rows (``text``, ``gold``, ``predicted``, ``loc``, ``meta``)."""
    gold = [label_index.get(r["gold"], -1) for r in rows]
    pred = [label_index.get(r["predicted"], -2) for r in rows]
    return {spec: slice_metrics(gold, pred, group_values(spec, rows)) for spec in specs}


def _natural(value: str) -> tuple:
    """Sort "10-14 words" after "6-9 words"."""
    head = value.split("-")[0].split()[0] if value else ""
    return (0, int(head), value) if head.isdigit() else (1, 0, value)
