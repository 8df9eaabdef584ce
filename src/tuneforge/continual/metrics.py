"""The accuracy matrix R[i][j] (after stage i, on stage j's test split) and the scores read from it."""

from __future__ import annotations

from collections.abc import Sequence

Matrix = Sequence[Sequence[float]]


def _check(r: Matrix) -> int:
    n = len(r)
    if n == 0 or any(len(row) != n for row in r):
        raise ValueError(f"R must be a non-empty square matrix (stages x stages); got {[len(row) for row in r]}")
    return n


def average_accuracy(r: Matrix, after: int | None = None) -> float:
    """Mean accuracy over the stages seen so far, after stage ``after`` (default: the last).

    >>> average_accuracy([[0.9, 0.1], [0.7, 0.8]])
    0.75
    """
    n = _check(r)
    i = n - 1 if after is None else after
    return sum(r[i][: i + 1]) / (i + 1)


def backward_transfer(r: Matrix) -> float:
    """BWT (Lopez-Paz & Ranzato, 2017): mean over earlier stages of R[T-1][j] - R[j][j]. Negative = forgetting.

    >>> round(backward_transfer([[0.9, 0.1], [0.7, 0.8]]), 6)
    -0.2
    """
    n = _check(r)
    if n < 2:
        return 0.0
    return sum(r[n - 1][j] - r[j][j] for j in range(n - 1)) / (n - 1)


def forgetting(r: Matrix) -> float:
    """Average forgetting (Chaudhry et al., 2018): mean over earlier stages of the best accuracy any earlier row had
    on it minus the final accuracy. Negative when later stages improved it.

    >>> round(forgetting([[0.9, 0.1], [0.7, 0.8]]), 6)
    0.2
    """
    n = _check(r)
    if n < 2:
        return 0.0
    return sum(max(r[i][j] for i in range(j, n - 1)) - r[n - 1][j] for j in range(n - 1)) / (n - 1)


def forward_transfer(r: Matrix, before: Sequence[float]) -> float:
    """FWT (Lopez-Paz & Ranzato, 2017): mean over stages j >= 1 of R[j-1][j] - b[j], where ``before`` (b) holds each
    stage's accuracy before any training (the untuned backbone with that stage's freshly initialised head).

    >>> round(forward_transfer([[0.9, 0.3], [0.7, 0.8]], [0.5, 0.25]), 6)
    0.05
    """
    n = _check(r)
    if len(before) != n:
        raise ValueError(f"before has {len(before)} values for {n} stages")
    if n < 2:
        return 0.0
    return sum(r[j - 1][j] - before[j] for j in range(1, n)) / (n - 1)


def summarise(r: Matrix, before: Sequence[float]) -> dict[str, float | list[float]]:
    """Every score in one dict, for report.json."""
    n = _check(r)
    return {"average_accuracy": average_accuracy(r), "backward_transfer": backward_transfer(r),
            "forgetting": forgetting(r), "forward_transfer": forward_transfer(r, before),
            "average_accuracy_per_stage": [average_accuracy(r, i) for i in range(n)]}
