"""Few-shot data: stratified seeded k-shot draws, demonstration selection and order, contextual calibration."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from tuneforge.data.readers import LOC

Example = dict[str, Any]


@dataclass
class ShotDraw:
    """The k-shot training set and where each example came from (``file:line``, else its train index)."""

    examples: list[Example]
    ids: list[str]
    per_class: dict[str, int]
    short_classes: dict[str, int] = field(default_factory=dict)  # classes with fewer than k examples: how many


def example_id(ex: Example, index: int) -> str:
    return str(ex.get(LOC) or f"train[{index}]")


def draw_shots(train: Sequence[Example], k: int, seed: int, key: Callable[[Example], Hashable]) -> ShotDraw:
    """k examples of every class (``key``), drawn with ``seed``; the result keeps the train split's order.

    A class with fewer than k examples gives all it has and is listed in ``short_classes``.

    >>> exs = [{"text": str(i), "labels": ["a" if i % 3 else "b"]} for i in range(30)]
    >>> d = draw_shots(exs, 2, seed=1, key=lambda e: e["labels"][0]); d.per_class
    {'a': 2, 'b': 2}
    """
    if k < 1:
        raise ValueError(f"data.shots_per_class must be >= 1, got {k}")
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(train):
        by_class[str(key(ex))].append(i)
    rng = random.Random(seed)
    chosen: list[int] = []
    per_class, short = {}, {}
    for cls in sorted(by_class):  # sorted: the draw must not depend on file order of first appearance
        pool = by_class[cls]
        take = pool if len(pool) <= k else rng.sample(pool, k)
        if len(pool) < k:
            short[cls] = len(pool)
        per_class[cls] = len(take)
        chosen.extend(take)
    chosen.sort()
    return ShotDraw([train[i] for i in chosen], [example_id(train[i], i) for i in chosen], per_class, short)


# ---------------------------------------------------------------- demonstrations for in-context learning
def select_demonstrations(pool_labels: Sequence[str], labels: Sequence[str], k: int, strategy: str,
                          rng: random.Random, similarity: torch.Tensor | None = None) -> list[int]:
    """Indices into the pool: ``k`` per label, at ``random`` or the ``nearest`` by ``similarity`` (P,) to the
    query. Labels with no pool example are skipped (the caller reports the draw)."""
    chosen: list[int] = []
    for lab in labels:
        idx = [i for i, p in enumerate(pool_labels) if p == lab]
        if strategy == "random":
            chosen.extend(rng.sample(idx, min(k, len(idx))))
        elif strategy == "nearest":
            if similarity is None:
                raise ValueError("nearest-neighbour selection needs the query's similarity to the pool")
            chosen.extend(sorted(idx, key=lambda i: -float(similarity[i]))[:k])
        else:
            raise ValueError(f"unknown demonstration selection {strategy!r}; known: random, nearest")
    return chosen


def order_demonstrations(chosen: list[int], order: str, rng: random.Random,
                         similarity: torch.Tensor | None = None) -> list[int]:
    """``random`` (shuffled), ``grouped`` (as selected: by label) or ``similar_last`` (the most similar demonstration
    sits next to the query, where recency bias helps it most)."""
    if order == "random":
        out = list(chosen)
        rng.shuffle(out)
        return out
    if order == "grouped":
        return list(chosen)
    if order == "similar_last":
        if similarity is None:
            raise ValueError("order similar_last needs the query's similarity to the pool")
        return sorted(chosen, key=lambda i: float(similarity[i]))
    raise ValueError(f"unknown demonstration order {order!r}; known: random, grouped, similar_last")


# ---------------------------------------------------------------- calibration
def contextual_calibration(log_scores: torch.Tensor, content_free: torch.Tensor) -> torch.Tensor:
    """Divide each label's probability by its probability for a content-free input, then renormalise
    (Zhao et al. 2021, diagonal W = 1/p_cf, b = 0). In log space: log_softmax(s) - log_softmax(s_cf).

    ``log_scores``: (N, L) label log-scores; ``content_free``: (L,) or (N, L) for per-query prompts.
    Returns (N, L) calibrated log-probabilities.

    >>> contextual_calibration(torch.log(torch.tensor([[0.7, 0.3]])), torch.log(torch.tensor([0.7, 0.3]))).exp()
    tensor([[0.5000, 0.5000]])
    """
    p = torch.log_softmax(log_scores.float(), -1) - torch.log_softmax(content_free.float(), -1)
    return torch.log_softmax(p, -1)
