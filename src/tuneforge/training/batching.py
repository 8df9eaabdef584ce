"""Seeded batch samplers. Length-grouped batches cut padding; the order depends only on (seed, epoch)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence


class BatchSampler:
    """Yields lists of indices. Deterministic for a given (seed, epoch), so a resumed run can skip exactly the
    batches it has already seen.

    ``length_grouped``: shuffle, sort chunks of ``50 × batch_size`` by length, cut into batches of ``batch_size``,
    shuffle the batches.

    ``max_tokens`` (``train.batch_tokens``, length-grouped only): a micro-batch also holds at most ``max_tokens``
    padded tokens (items × the longest item's length, what the collator pads to), so short items go in big batches
    and long ones in small batches, up to ``batch_size`` items each. The batch *shapes* are cut once, from the
    sorted lengths of the whole split, and stay the same every epoch, so the epoch length is fixed (schedules,
    resume and accelerate's sharding need that). Each epoch deals the items into those shapes anew: sorted by
    (length, a per-epoch random key), so items of equal length trade batches, then the batches are shuffled. An
    item longer than ``max_tokens`` gets a batch of its own.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, shuffle: bool = True,
                 length_grouped: bool = True, mega: int = 50, max_tokens: int | None = None):
        if max_tokens is not None and not length_grouped:
            raise ValueError("a token budget (train.batch_tokens) needs length-grouped batches")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.length_grouped = length_grouped
        self.mega = mega
        self.epoch = 0
        self.sizes = token_budget_sizes(sorted(self.lengths), batch_size, max_tokens) if max_tokens else None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        if self.sizes is not None:
            keys = [rng.random() if self.shuffle else 0.0 for _ in idx]
            order = sorted(idx, key=lambda i: (self.lengths[i], keys[i]))
            out, start = [], 0
            for size in self.sizes:
                out.append(order[start:start + size])
                start += size
            if self.shuffle:
                rng.shuffle(out)
            return out
        if self.shuffle:
            rng.shuffle(idx)
        if not self.length_grouped:
            return [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        chunk = self.batch_size * self.mega
        out = []
        for c in range(0, len(idx), chunk):
            part = sorted(idx[c:c + chunk], key=lambda i: self.lengths[i])
            out.extend(part[i:i + self.batch_size] for i in range(0, len(part), self.batch_size))
        if self.shuffle:
            rng.shuffle(out)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.sizes) if self.sizes is not None else num_batches(self.lengths, self.batch_size)


def token_budget_sizes(sorted_lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[int]:
    """Item counts of consecutive batches over ascending ``sorted_lengths``: each batch as full as ``batch_size``
    items and ``items × longest ≤ max_tokens`` allow (at least one item)."""
    sizes: list[int] = []
    count = 0
    for length in sorted_lengths:  # ascending: the item being added is the batch's longest
        if count and (count + 1 > batch_size or (count + 1) * max(1, length) > max_tokens):
            sizes.append(count)
            count = 0
        count += 1
    if count:
        sizes.append(count)
    return sizes


def num_batches(lengths: Sequence[int], batch_size: int, max_tokens: int | None = None) -> int:
    """Micro-batches per epoch of a :class:`BatchSampler` over ``lengths`` (length-grouped when ``max_tokens``)."""
    if max_tokens:
        return len(token_budget_sizes(sorted(lengths), batch_size, max_tokens))
    return (len(lengths) + batch_size - 1) // batch_size


def by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Inference batches: indices sorted by length, longest first (so memory peaks early)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
