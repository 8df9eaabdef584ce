"""The hybrid ranker: the bi-encoder's text score combined with behavioural features (popularity, recency, the
user's genre affinity) by a logistic regression fit on the validation users, re-ranking the text model's top N.

Features of (user, item), all from training interactions: text score; log(1 + training count); log(1 + days
between the item's last training interaction and the user's last known one, 0 when later); the share of the user's
recent history items that share a genre with the item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tuneforge.tasks.recommendation.metrics import rank_scores

FEATURES = ("text_score", "log_popularity", "log_days_since_seen", "genre_affinity")
NEVER_DAYS = 1e5  # an item nobody touched in training: "very long ago"


def genre_sets(catalogue: Any, field: str = "genres") -> list[frozenset[str]]:
    return [frozenset(g for g in (f.get(field) or "").split(", ") if g) for f in catalogue.fields]


def features(text: np.ndarray, rows: Sequence[int], counts: np.ndarray, last_seen: np.ndarray, now: float,
             history_rows: Sequence[int], genres: list[frozenset[str]]) -> np.ndarray:
    """(len(rows), 4) features of one user's candidate ``rows`` (``text``: the user's scores over the catalogue)."""
    rows = np.asarray(rows, dtype=np.int64)
    seen = last_seen[rows]
    days = np.where(np.isfinite(seen), np.maximum(0.0, now - seen) / 86400.0, NEVER_DAYS)
    liked = [genres[h] for h in history_rows]
    affinity = np.array([sum(1 for g in liked if g & genres[r]) / max(1, len(liked)) for r in rows])
    return np.stack([text[rows], np.log1p(counts[rows]), np.log1p(days), affinity], axis=1)


def candidates(text: np.ndarray, exclude: Sequence[int], n: int) -> list[int]:
    """The text model's top ``n`` rows, the user's earlier items removed (same order as ``rank_scores``)."""
    return rank_scores(text, [], exclude, n)["top"]


def fit_on_listed_targets(candidates: list[tuple[list[int], np.ndarray]], targets: list[set[int]],
                          seed: int = 0) -> tuple[Any, int]:
    """The ranker fit on the users whose target is among their candidates, drawn as at test time (a target
    appended from below the list would teach that a low text score marks the positive); (ranker, users used)."""
    xs, ys = [], []
    for (top, x), wanted in zip(candidates, targets):
        y = np.array([r in wanted for r in top], dtype=int)
        if y.any():
            xs.append(x)
            ys.append(y)
    if not ys:
        raise ValueError("no validation user has their target among the candidates: nothing to fit a ranker on")
    return fit_ranker(xs, ys, seed), len(ys)


def fit_ranker(rows_x: list[np.ndarray], rows_y: list[np.ndarray], seed: int = 0) -> Any:
    """A standardised logistic regression over the stacked candidates (positives weighted up to balance)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = np.concatenate(rows_x), np.concatenate(rows_y)
    if y.min() == y.max():
        raise ValueError("the hybrid ranker needs positives and negatives among the validation candidates")
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000,
                                                               random_state=seed))
    return model.fit(x, y)


def rerank(text: np.ndarray, top: list[int], hybrid: np.ndarray, targets: Sequence[int], exclude: Sequence[int],
           k: int) -> dict[str, Any]:
    """A ranking whose first ``len(top)`` places follow ``hybrid`` (ties: text order) and the rest the text order.

    >>> rerank(np.array([.9, .8, .7, .1]), [0, 1, 2], np.array([0., 2., 1.]), [2], [], 2)
    {'top': [1, 2], 'ranks': [2]}
    """
    order = [top[i] for i in np.lexsort((np.arange(len(top)), -np.asarray(hybrid)))]
    place = {row: i + 1 for i, row in enumerate(order)}
    text_ranks = rank_scores(text, targets, exclude, k)["ranks"]
    return {"top": order[:k], "ranks": [place.get(t, r) for t, r in zip(targets, text_ranks)]}
