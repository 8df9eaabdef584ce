"""Seeded batch samplers. Length-grouped batches cut padding; the order depends only on (seed, epoch)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence


class BatchSampler:
    """Yields lists of indices. ``length_grouped``: shuffle, sort chunks of ``50 × batch_size`` by length,
    cut into batches, shuffle the batches. Deterministic for a given (seed, epoch), so a resumed run can
    skip exactly the batches it has already seen.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, shuffle: bool = True,
                 length_grouped: bool = True, mega: int = 50):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.length_grouped = length_grouped
        self.mega = mega
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        if self.shuffle:
            rng.shuffle(idx)
        if not self.length_grouped:
            return [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        chunk = self.batch_size * self.mega
        out: list[list[int]] = []
        for c in range(0, len(idx), chunk):
            part = sorted(idx[c:c + chunk], key=lambda i: self.lengths[i])
            out.extend(part[i:i + self.batch_size] for i in range(0, len(part), self.batch_size))
        if self.shuffle:
            rng.shuffle(out)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


def by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Inference batches: indices sorted by length, longest first (so memory peaks early)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
