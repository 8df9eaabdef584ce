"""Confidence maths for classifiers: temperature scaling, ECE, reliability bins, out-of-scope scores, abstention
thresholds and the coverage/risk curve. Plain numpy on (N, C) logits; the run-level wiring is in ``abstention.py``.

Written here rather than taken from a library: each piece is a few lines of numpy, and the calibration packages
that exist (netcal, torch-uncertainty) pull in heavy dependencies for these same formulas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp

SCORES = ("max_softmax", "energy")
RULES = ("oos_recall", "coverage", "precision")
DEFAULT_TARGETS = {"oos_recall": 0.7, "coverage": 0.9, "precision": 0.9}


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    logp = log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: Sequence[int], bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T minimising validation NLL of ``softmax(logits / T)`` (Guo et al., 2017).

    NLL is convex in 1/T, so a bounded 1-D search over log T finds the one minimum.

    >>> round(fit_temperature(np.array([[4.0, 0.0]] * 3 + [[0.0, 4.0]]), [0, 0, 0, 0]), 3)  # T = 4 / ln 3
    3.641
    """
    labels = np.asarray(labels, dtype=int)
    if len(labels) == 0:
        return 1.0
    res = minimize_scalar(lambda log_t: nll(logits, labels, math.exp(log_t)),
                          bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-6})
    return float(math.exp(res.x))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1))


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], bins: int = 15) -> list[dict[str, Any]]:
    """Equal-width confidence bins over [0, 1]: each bin's range, row count, mean confidence and accuracy.

    A confidence equal to a bin's upper edge belongs to that bin (the last bin holds 1.0)."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    # ceil(c * bins) - 1: (0, 1/b] → bin 0, ..., ((b-1)/b, 1] → bin b-1; 0 joins bin 0
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        sel = idx == b
        n = int(sel.sum())
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "count": n,
                    "confidence": float(conf[sel].mean()) if n else None,
                    "accuracy": float(ok[sel].mean()) if n else None})
    return out


def ece(confidence: Sequence[float], correct: Sequence[bool], bins: int = 15) -> float:
    """Expected calibration error: sum over bins of |accuracy - mean confidence| weighted by the bin's share."""
    total = len(confidence)
    if total == 0:
        return 0.0
    return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"])
                     for b in reliability_bins(confidence, correct, bins) if b["count"]))


def oos_score(logits: np.ndarray, name: str, temperature: float = 1.0) -> np.ndarray:
    """Higher = more in-scope. ``max_softmax``: the calibrated top probability. ``energy``: T·logsumexp(z / T), the
    negative free energy (Liu et al., 2020), which keeps the logits' scale that softmax normalises away."""
    z = np.asarray(logits, dtype=np.float64)
    if name == "max_softmax":
        return softmax(z, temperature).max(-1)
    if name == "energy":
        return temperature * logsumexp(z / temperature, axis=-1)
    raise ValueError(f"unknown OOS score {name!r}; known: {', '.join(SCORES)}")


def distance_score(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Cosine similarity to the nearest class centroid (centroids of training embeddings): higher = in-scope."""
    e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=-1, keepdims=True), 1e-12)
    c = centroids / np.maximum(np.linalg.norm(centroids, axis=-1, keepdims=True), 1e-12)
    return (e @ c.T).max(-1)


def auroc(in_scope: Sequence[float], oos: Sequence[float]) -> float | None:
    """Probability that an in-scope row scores above an OOS row (ties count half); None without both kinds."""
    if len(in_scope) == 0 or len(oos) == 0:
        return None
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(in_scope)), np.zeros(len(oos))]
    return float(roc_auc_score(y, np.r_[np.asarray(in_scope, float), np.asarray(oos, float)]))


# ---------------------------------------------------------------- thresholds: answer when score >= threshold
def threshold_for_coverage(scores: Sequence[float], target: float) -> float:
    """The highest threshold that still answers at least ``target`` of the rows."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if len(s) == 0:
        return -math.inf
    k = max(1, math.ceil(target * len(s) - 1e-9))
    return float(s[min(k, len(s)) - 1])


def threshold_for_precision(scores: Sequence[float], correct: Sequence[bool], target: float) -> float:
    """The lowest threshold whose answered rows are at least ``target`` accurate (the widest such coverage);
    +inf (answer nothing) when no threshold reaches it. Ties in score are answered together."""
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s, ok = s[order], np.asarray(correct, dtype=np.float64)[order]
    precision = np.cumsum(ok) / np.arange(1, len(s) + 1)
    # only positions where the next score differs are real cut points (equal scores share one fate)
    cut = np.r_[s[1:] < s[:-1], True]
    good = np.nonzero((precision >= target - 1e-12) & cut)[0]
    return float(s[good[-1]]) if len(good) else math.inf


def threshold_for_oos_recall(oos_scores: Sequence[float], target: float) -> float:
    """The lowest threshold that rejects (score < threshold) at least ``target`` of the OOS rows: the most in-scope
    rows answered at that OOS recall."""
    s = np.sort(np.asarray(oos_scores, dtype=np.float64))
    if len(s) == 0:
        return -math.inf
    k = max(1, math.ceil(target * len(s) - 1e-9))
    return float(np.nextafter(s[k - 1], math.inf))


def select_threshold(rule: str, target: float | None, scores: np.ndarray, correct: np.ndarray,
                     is_oos: np.ndarray) -> tuple[float, str, float]:
    """(threshold, rule used, target) from validation rows. ``auto``: oos_recall with OOS rows, else coverage."""
    if rule == "auto":
        rule = "oos_recall" if is_oos.any() else "coverage"
    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; known: auto, {', '.join(RULES)}")
    target = DEFAULT_TARGETS[rule] if target is None else float(target)
    if rule == "oos_recall":
        if not is_oos.any():
            raise ValueError("calibration.rule oos_recall needs out-of-scope rows in validation (eval.oos_label)")
        return threshold_for_oos_recall(scores[is_oos], target), rule, target
    ins = ~is_oos
    if rule == "coverage":
        return threshold_for_coverage(scores[ins], target), rule, target
    return threshold_for_precision(scores[ins], correct[ins], target), rule, target


def abstention_metrics(scores: np.ndarray, correct: np.ndarray, is_oos: np.ndarray,
                       threshold: float) -> dict[str, float]:
    """At ``threshold``: in-scope coverage and accuracy (right intent and answered / all in-scope rows), the
    accuracy of what was answered, and OOS recall (OOS rows rejected / all OOS rows) when there are OOS rows."""
    answered = scores >= threshold
    ins = ~is_oos
    n_in = max(1, int(ins.sum()))
    out = {"in_scope_coverage": float(answered[ins].sum() / n_in),
           "in_scope_accuracy": float((answered & correct & ins).sum() / n_in),
           "answered_accuracy": float((answered & correct & ins).sum() / max(1, int((answered & ins).sum())))}
    if is_oos.any():
        out["oos_recall"] = float((~answered[is_oos]).sum() / is_oos.sum())
    return out


def coverage_risk_curve(scores: np.ndarray, correct: np.ndarray, points: int = 50) -> dict[str, Any]:
    """Risk (error rate of the answered rows) against coverage when answering the top-k scores, at ``points``
    evenly spaced coverages, plus the area under the whole curve (AURC; lower is better)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    err = 1.0 - np.asarray(correct, dtype=np.float64)[order]
    n = len(err)
    if n == 0:
        return {"coverage": [], "risk": [], "threshold": [], "aurc": None}
    risk = np.cumsum(err) / np.arange(1, n + 1)
    ks = sorted({max(1, round(n * (i + 1) / points)) for i in range(points)})
    s = np.asarray(scores, dtype=np.float64)[order]
    return {"coverage": [round(k / n, 4) for k in ks], "risk": [round(float(risk[k - 1]), 4) for k in ks],
            "threshold": [float(s[k - 1]) for k in ks], "aurc": float(risk.mean())}


def oos_curve(scores: np.ndarray, correct: np.ndarray, is_oos: np.ndarray, points: int = 50) -> dict[str, list]:
    """OOS recall against in-scope accuracy over thresholds at evenly spaced in-scope coverages."""
    ins_scores = np.sort(scores[~is_oos])[::-1]
    out: dict[str, list] = {"threshold": [], "in_scope_coverage": [], "in_scope_accuracy": [], "oos_recall": []}
    if len(ins_scores) == 0:
        return out
    for i in range(points):
        t = float(ins_scores[min(len(ins_scores), max(1, round(len(ins_scores) * (i + 1) / points))) - 1])
        m = abstention_metrics(scores, correct, is_oos, t)
        out["threshold"].append(t)
        for k in ("in_scope_coverage", "in_scope_accuracy", "oos_recall"):
            out[k].append(round(m.get(k, 0.0), 4))
    return out
