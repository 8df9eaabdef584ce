"""Ranking maths: target ranks over the full catalogue, HR@K, NDCG@K, MRR, coverage, bootstrap intervals and the
cold-start slice. Every model (tuned, untuned, popularity, ALS) is scored by ``rank_scores`` → ``ranking_metrics``.

Protocol: full ranking. Each user's scores cover every catalogue item; the items the user interacted with before
the target are removed; ties are broken by catalogue order (the first row wins), the same order as the top-K list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneforge.evaluation.stats import bootstrap_ci


def rank_scores(scores: np.ndarray, targets: Sequence[int], exclude: Sequence[int], k: int) -> dict[str, Any]:
    """One user's ranking: ``{"top": the first k rows, "ranks": the 1-based rank of each target row}``.

    ``scores`` (I,) over the catalogue; ``exclude`` rows (the user's earlier items, minus the targets) are left
    out of the ranking. Rank = 1 + items scored higher + equal-scored items earlier in the catalogue.

    >>> rank_scores(np.array([0.1, 0.9, 0.5, 0.9]), targets=[2], exclude=[1], k=2)
    {'top': [3, 2], 'ranks': [2]}
    """
    s = np.asarray(scores, dtype=np.float64).copy()
    drop = [e for e in exclude if e not in set(targets)]
    s[drop] = -np.inf
    order = np.lexsort((np.arange(len(s)), -s))  # by score descending, then catalogue row
    top = [int(i) for i in order[:k] if np.isfinite(s[i])]
    ranks = []
    for t in targets:
        higher = int((s > s[t]).sum())
        tied_before = int((s[:t] == s[t]).sum())
        ranks.append(1 + higher + tied_before)
    return {"top": top, "ranks": ranks}


def per_user(ranks: Sequence[int], k: int) -> tuple[float, float, float]:
    """(HR@k, NDCG@k, reciprocal rank) of one user with several possible targets.

    HR: any target in the top k. NDCG: binary gains over the targets in the top k, divided by the ideal DCG of
    min(#targets, k) hits. RR: 1 / the best target rank (over the full ranking).
    >>> per_user([3], 10)
    (1.0, 0.5, 0.3333333333333333)
    """
    if not ranks:
        raise ValueError("a test user without targets")
    best = min(ranks)
    dcg = sum(1.0 / math.log2(r + 1) for r in ranks if r <= k)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(ranks), k)))
    return float(best <= k), dcg / ideal, 1.0 / best


def _mean(_: np.ndarray, values: np.ndarray) -> float:
    return float(np.mean(values))


def summarise(rows: list[tuple[float, float, float]], k: int, bootstrap: int, seed: int = 0) -> dict[str, Any]:
    """Means of per-user (HR, NDCG, RR) with percentile-bootstrap 95% intervals (users resampled)."""
    out: dict[str, Any] = {"n": len(rows)}
    if not rows:
        return out
    arr = np.asarray(rows, dtype=np.float64)  # (N, 3)
    for j, name in enumerate((f"hr@{k}", f"ndcg@{k}", "mrr")):
        out[name] = float(arr[:, j].mean())
        if bootstrap and len(rows) > 1:
            lo, hi = bootstrap_ci(_mean, np.zeros(len(rows)), arr[:, j], n_resamples=bootstrap, seed=seed)
            out[f"{name}_ci"] = [round(lo, 5), round(hi, 5)]
    return out


def ranking_metrics(rankings: list[dict[str, Any]], catalogue_size: int, k: int, cold: Sequence[bool] | None = None,
                    bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """HR@k, NDCG@k, MRR (means and intervals), coverage@k (distinct items in all top-k lists / catalogue), and
    the same on the cold-start users (``cold[i]``: user i's target is a rarely seen item) under ``cold_start``."""
    rows = [per_user(r["ranks"], k) for r in rankings]
    out = summarise(rows, k, bootstrap, seed)
    shown = {i for r in rankings for i in r["top"][:k]}
    out[f"coverage@{k}"] = len(shown) / max(1, catalogue_size)
    out["protocol"] = f"full ranking over {catalogue_size} items, the user's earlier items removed"
    if cold is not None:
        picked = [row for row, c in zip(rows, cold) if c]
        out["cold_start"] = summarise(picked, k, bootstrap, seed)
        for key in (f"hr@{k}", f"ndcg@{k}", "mrr"):  # flat copies: the report's tables and curves read numbers
            if key in out["cold_start"]:
                out[f"cold_{key}"] = out["cold_start"][key]
    return out
