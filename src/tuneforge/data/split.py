"""Seeded, stratified train/validation/test splits of one record list."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Hashable
from typing import Any

Record = dict[str, Any]


def stratified_split(records: list[Record], fractions: dict[str, float], seed: int,
                     key: Callable[[Record], Hashable] | None = None,
                     group: Callable[[Record], Hashable] | None = None) -> dict[str, list[Record]]:
    """Split ``records`` into ``"train"`` plus the named held-out parts, keeping each key's proportions.

    Every stratum is shuffled with ``seed`` and each held-out part takes ``round(n * fraction)`` of it
    (largest remainders first, so totals match the requested sizes). Strata of one record stay in train.
    Order inside each split follows the input order, so results do not depend on hash seeds.

    ``group`` (e.g. the normalised text): records of one group end up in one split, the split drawn for the group's
    first record in input order (a draw with the target fractions, so expected sizes stay on target), so carving
    never puts a copy of a train text in validation or test. Records without a duplicate are placed exactly as
    without ``group``; sizes move by the duplicates moved.

    >>> parts = stratified_split([{"y": i % 2} for i in range(10)], {"test": 0.2}, seed=0, key=lambda r: r["y"])
    >>> len(parts["train"]), len(parts["test"])
    (8, 2)
    """
    if sum(fractions.values()) >= 1:
        raise ValueError(f"held-out fractions {fractions} leave nothing to train on")
    key = key or (lambda r: 0)
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        groups[key(rec)].append(i)
    rng = random.Random(seed)
    assignment: dict[int, str] = {}
    names = list(fractions)
    for k in sorted(groups, key=repr):
        idx = groups[k][:]
        rng.shuffle(idx)
        counts = _allocate(len(idx), [fractions[n] for n in names]) if len(idx) > 1 else [0] * len(names)
        start = 0
        for name, c in zip(names, counts):
            for i in idx[start:start + c]:
                assignment[i] = name
            start += c
    if group is not None:
        first: dict[Hashable, str] = {}
        for i in range(len(records)):
            part = first.setdefault(group(records[i]), assignment.get(i, "train"))
            if part == "train":
                assignment.pop(i, None)
            else:
                assignment[i] = part
    out: dict[str, list[Record]] = {"train": [], **{n: [] for n in names}}
    for i, rec in enumerate(records):
        out[assignment.get(i, "train")].append(rec)
    return out


def _allocate(n: int, fractions: list[float]) -> list[int]:
    """Integer counts for each fraction of n, never taking the last record from train."""
    raw = [n * f for f in fractions]
    counts = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True)
    for i in order:
        if sum(counts) < round(sum(raw)) and sum(counts) < n - 1:
            counts[i] += 1
    while sum(counts) > n - 1:
        counts[counts.index(max(counts))] -= 1
    return counts
