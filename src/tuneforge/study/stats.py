"""Statistics of a study cell: mean ± sd over seeds, a bootstrap 95% CI and a paired test between two methods.

Accuracy is the mean of a (seeds, examples) 0/1 matrix. The bootstrap resamples seeds and test examples
together (two levels), so the interval covers both the draw of the k labelled examples and the finite test set.
"""

from __future__ import annotations

import numpy as np


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value).

    >>> mean_sd([0.8, 0.9, 1.0])
    (0.9, 0.1)
    """
    a = np.asarray(values, dtype=float)
    return round(float(a.mean()), 10), round(float(a.std(ddof=1)) if len(a) > 1 else 0.0, 10)


def bootstrap_ci(correct: np.ndarray, iters: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean accuracy of ``correct`` (S, N) under resampling of seeds and examples."""
    rng = np.random.default_rng(seed)
    s, n = correct.shape
    stats = np.empty(iters)
    for b in range(iters):
        rows = rng.integers(0, s, s)
        cols = rng.integers(0, n, n)
        stats[b] = correct[np.ix_(rows, cols)].mean()
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, iters: int = 5000, seed: int = 0) -> dict[str, float]:
    """Paired test of accuracy(a) - accuracy(b) on the same test examples (and the same seeds, i.e. the same
    k-shot draws): the per-example difference averaged over seeds, resampled over examples.

    Returns the observed difference, its 95% interval and a two-sided p-value (twice the smaller tail of the
    bootstrap distribution of the centred difference).
    """
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired test needs the same test examples: {a.shape[1]} vs {b.shape[1]}")
    diff = a.mean(0) - b.mean(0)  # (N,) per-example difference, averaged over each method's seeds
    rng = np.random.default_rng(seed)
    n = len(diff)
    boots = np.array([diff[rng.integers(0, n, n)].mean() for _ in range(iters)])
    observed = float(diff.mean())
    centred = boots - observed
    p = 2 * min(float((centred >= abs(observed)).mean()), float((centred <= -abs(observed)).mean()))
    p = max(p, 1.0 / iters) if observed != 0 else 1.0
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {"difference": observed, "ci_low": float(lo), "ci_high": float(hi), "p_value": min(1.0, p),
            "examples": n}
