"""Uncertainty and significance for evaluation results: bootstrap CIs, Wilson intervals, McNemar's test,
approximate randomisation, Benjamini-Hochberg, and reliability bins. Plain numpy/scipy on per-example arrays."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

Metric = Callable[[np.ndarray, np.ndarray], float]  # (gold, pred) label indices -> a score


def accuracy(gold: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(gold) == np.asarray(pred))) if len(gold) else float("nan")


def macro_f1(gold: np.ndarray, pred: np.ndarray, n_labels: int | None = None) -> float:
    """Macro F1 over the labels present in gold or predictions (as scikit-learn's default label set).

    >>> round(macro_f1(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])), 4)  # F1 0.6667 and 0.8
    0.7333
    """
    gold, pred = np.asarray(gold, dtype=int), np.asarray(pred, dtype=int)
    if not len(gold):
        return float("nan")
    k = int(max(gold.max(initial=0), pred.max(initial=0)) + 1) if n_labels is None else n_labels
    valid_g, valid_p = gold >= 0, pred >= 0
    tp = np.bincount(gold[(gold == pred) & valid_g], minlength=k)[:k]
    n_gold = np.bincount(gold[valid_g], minlength=k)[:k]
    n_pred = np.bincount(pred[valid_p], minlength=k)[:k]
    present = (n_gold + n_pred) > 0
    f1 = np.divide(2 * tp, n_gold + n_pred, out=np.zeros(k), where=present)
    return float(f1[present].mean())


METRICS: dict[str, Metric] = {"accuracy": accuracy, "macro_f1": macro_f1}


def bootstrap_ci(metric: Metric, gold: Sequence[int], pred: Sequence[int], n_resamples: int = 1000,
                 confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``metric(gold, pred)``, resampling examples with replacement (paired).

    Percentile rather than BCa: BCa's jackknife costs one metric call per example, too slow for a report
    over thousands of rows, and the two agree closely for accuracy-like statistics at these sizes.
    """
    gold, pred = np.asarray(gold), np.asarray(pred)
    if len(gold) < 2:
        return (float("nan"), float("nan"))
    res = sps.bootstrap((gold, pred), metric, paired=True, vectorized=False, n_resamples=n_resamples,
                        confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def wilson_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion: sound for small slices and rates near 0 or 1.

    >>> tuple(round(x, 4) for x in wilson_ci(8, 10))
    (0.4902, 0.9433)
    """
    if n == 0:
        return (float("nan"), float("nan"))
    ci = sps.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, Any]:
    """McNemar's exact test on paired correctness, and its mid-p variant (Fagerland et al., 2013).

    ``b`` = rows only A gets right, ``c`` = rows only B gets right; under H0 b ~ Binomial(b + c, 1/2).
    Exact two-sided p = min(1, 2 P(X <= min(b, c))); mid-p subtracts P(X = min(b, c)) from it, which keeps the
    size close to nominal without the exact test's conservatism.

    >>> r = mcnemar([1, 1, 0, 0] + [1] * 6 + [0] * 2, [1, 0, 1, 1] + [0] * 6 + [1] * 2)
    >>> r["b"], r["c"], round(r["p_exact"], 6), round(r["p_mid"], 6)
    (7, 4, 0.548828, 0.387695)
    """
    a, b_ = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError(f"paired test needs equal lengths, got {a.size} and {b_.size}")
    b, c = int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    n, k = b + c, min(b, c)
    if n == 0:
        return {"b": b, "c": c, "p_exact": 1.0, "p_mid": 1.0}
    p_exact = min(1.0, 2.0 * float(sps.binom.cdf(k, n, 0.5)))
    p_mid = p_exact - float(sps.binom.pmf(k, n, 0.5)) if b != c else 1.0 - float(sps.binom.pmf(k, n, 0.5))
    return {"b": b, "c": c, "p_exact": p_exact, "p_mid": max(0.0, p_mid)}


def approximate_randomisation(metric: Metric, gold: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int],
                              n_rounds: int = 1000, seed: int = 0) -> dict[str, float]:
    """Paired approximate randomisation test (Noreen, 1989) of ``metric(A) - metric(B)``, for metrics such as
    macro F1 that do not decompose over examples: each round swaps A's and B's predictions on a random half of
    the rows. Two-sided p = (r + 1) / (n_rounds + 1), r = rounds with |diff| >= the observed |diff|."""
    gold, pa, pb = np.asarray(gold), np.asarray(pred_a), np.asarray(pred_b)
    observed = metric(gold, pa) - metric(gold, pb)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_rounds):
        swap = rng.random(len(gold)) < 0.5
        diff = metric(gold, np.where(swap, pb, pa)) - metric(gold, np.where(swap, pa, pb))
        hits += abs(diff) >= abs(observed) - 1e-12
    return {"difference": float(observed), "p_value": (hits + 1) / (n_rounds + 1), "rounds": n_rounds}


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Adjusted p-values controlling the false discovery rate across many slices."""
    if not len(p_values):
        return []
    return [float(p) for p in sps.false_discovery_control(np.asarray(p_values, dtype=float), method="bh")]


def fisher_gap(correct_in: int, n_in: int, correct_out: int, n_out: int) -> float:
    """Two-sided Fisher exact p-value: is accuracy inside a slice different from accuracy outside it?"""
    if n_in == 0 or n_out == 0:
        return 1.0
    table = [[correct_in, n_in - correct_in], [correct_out, n_out - correct_out]]
    return float(sps.fisher_exact(table).pvalue)


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], bins: int = 15) -> list[dict[str, Any]]:
    """Equal-width confidence bins (range, count, mean confidence, accuracy), binned as the calibration figures are."""
    from tuneforge.evaluation.calibration import reliability_bins as calibration_bins

    return calibration_bins(confidence, correct, bins)
