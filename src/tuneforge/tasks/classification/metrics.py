"""Classification metrics via scikit-learn: accuracy, macro/micro F1, per-class P/R/F1, confusion matrix.

Gold labels never seen in train cannot be predicted (the head has no output for them), but their rows are not
dropped: they count as errors everywhere. Single-label: such rows carry gold ``-1`` and form one extra class,
``UNSEEN``, in micro/weighted F1 (so micro F1 equals accuracy) and in the confusion matrix (its row shows what the
model predicted for them). Multi-label: each row's unseen labels become one extra gold column that is never
predicted (subset accuracy and micro F1 count them as misses). Macro F1 and the per-class table stay over the labels
the model was trained on; rows with unseen gold labels still count as false positives there for what was predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

UNSEEN = "<unseen in train>"


def single_label_metrics(pred: Sequence[int], gold: Sequence[int], names: Sequence[str]) -> dict[str, Any]:
    """``gold`` may hold -1 for labels unseen in train; see the module docstring."""
    labels = list(range(len(names)))
    unseen = sum(1 for g in gold if g == -1)
    every = labels + [-1] if unseen else labels  # -1 last: the extra confusion-matrix row and column
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    out = {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(gold, pred, labels=every, average="micro", zero_division=0)),
        "weighted_f1": float(f1_score(gold, pred, labels=every, average="weighted", zero_division=0)),
        "per_class": {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, n in enumerate(names)},
        "confusion_matrix": {"labels": list(names) + ([UNSEEN] if unseen else []),
                             "matrix": confusion_matrix(gold, pred, labels=every).tolist()},
        "count": len(gold),
    }
    if unseen:
        out["unseen_in_train"] = unseen
    return out


def multi_label_metrics(pred: np.ndarray, gold: np.ndarray, names: Sequence[str],
                        unseen: np.ndarray | None = None) -> dict[str, Any]:
    """Binary indicator matrices (N, L); ``unseen`` (N,) marks rows with a gold label never seen in train."""
    p, r, f, s = precision_recall_fscore_support(gold, pred, zero_division=0)
    macro = float(f1_score(gold, pred, average="macro", zero_division=0))
    count = int(gold.shape[0])
    extra = 0 if unseen is None else int(np.asarray(unseen).sum())
    if extra:  # one more gold column the model never predicts: those rows are wrong, their labels missed
        gold = np.column_stack([gold, np.asarray(unseen, dtype=gold.dtype)])
        pred = np.column_stack([pred, np.zeros(count, dtype=pred.dtype)])
    subset = float(accuracy_score(gold, pred))  # exact match of the whole label set; "accuracy" is its alias
    out = {
        "subset_accuracy": subset,
        "accuracy": subset,
        "macro_f1": macro,
        "micro_f1": float(f1_score(gold, pred, average="micro", zero_division=0)),
        "per_class": {n: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, n in enumerate(names)},
        "count": count,
    }
    if extra:
        out["unseen_in_train"] = extra
    return out
