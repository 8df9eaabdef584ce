"""Classification metrics via scikit-learn: accuracy, macro/micro F1, per-class P/R/F1, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def single_label_metrics(pred: Sequence[int], gold: Sequence[int], names: Sequence[str]) -> dict[str, Any]:
    """``gold`` may hold -1 for labels unseen in train; they count as errors and stay in the confusion matrix."""
    labels = list(range(len(names)))
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(gold, pred, labels=labels, average="micro", zero_division=0)),
        "weighted_f1": float(f1_score(gold, pred, labels=labels, average="weighted", zero_division=0)),
        "per_class": {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, n in enumerate(names)},
        "confusion_matrix": {"labels": list(names),
                             "matrix": confusion_matrix(gold, pred, labels=labels).tolist()},
        "count": len(gold),
    }


def multi_label_metrics(pred: np.ndarray, gold: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Binary indicator matrices (N, L)."""
    p, r, f, s = precision_recall_fscore_support(gold, pred, zero_division=0)
    return {
        "subset_accuracy": float(accuracy_score(gold, pred)),
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(gold, pred, average="micro", zero_division=0)),
        "per_class": {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, n in enumerate(names)},
        "count": int(gold.shape[0]),
    }
