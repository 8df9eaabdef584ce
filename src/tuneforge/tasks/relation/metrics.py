"""Relation metrics: the official SemEval-2010 Task 8 score ((9+1)-way, direction-aware macro-F1) and accuracy."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

_DIRECTION = re.compile(r"\(e[12],e[12]\)$")


def undirected(label: str) -> str:
    """``"Cause-Effect(e2,e1)"`` → ``"Cause-Effect"``; labels without a direction are unchanged."""
    return _DIRECTION.sub("", label)


def semeval_scores(pred: Sequence[str], gold: Sequence[str], negative: str = "Other") -> dict[str, Any]:
    """Scores as ``semeval2010_task8_scorer-v1.2.pl`` computes its official (iii), as fractions, not percent.

    Labels are collapsed to their undirected relation (9 + Other). A prediction is correct only when the
    directed labels match. Right relation with the wrong direction counts as a wrong proposal of that relation
    (precision denominator) and a miss (recall). Macro-F1 averages the per-relation F1 over the relations present
    in the gold labels, leaving out ``negative``; relations predicted but absent from the gold count for nothing.
    """
    correct: Counter[str] = Counter()
    proposed: Counter[str] = Counter()
    wrong_dir: Counter[str] = Counter()
    answer: Counter[str] = Counter(undirected(g) for g in gold)
    for p, g in zip(pred, gold):
        pu, gu = undirected(p), undirected(g)
        if p == g:
            correct[gu] += 1
            proposed[pu] += 1
        elif pu == gu:
            wrong_dir[gu] += 1
        else:
            proposed[pu] += 1
    per_class: dict[str, dict[str, float | int]] = {}
    for lab in sorted(answer):
        precision = correct[lab] / (proposed[lab] + wrong_dir[lab]) if proposed[lab] else 0.0
        recall = correct[lab] / answer[lab]
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[lab] = {"precision": precision, "recall": recall, "f1": f1, "support": answer[lab],
                          "wrong_direction": wrong_dir[lab]}
    relations = [lab for lab in per_class if lab != negative]
    n = max(1, len(relations))
    micro_ok = sum(correct[lab] for lab in relations)
    micro_p_den = sum(proposed[lab] + wrong_dir[lab] for lab in relations)
    micro_r_den = sum(answer[lab] for lab in relations)
    micro_p = micro_ok / micro_p_den if micro_p_den else 0.0
    micro_r = micro_ok / micro_r_den if micro_r_den else 0.0
    return {
        "semeval_macro_f1": sum(per_class[lab]["f1"] for lab in relations) / n,
        "semeval_macro_precision": sum(per_class[lab]["precision"] for lab in relations) / n,
        "semeval_macro_recall": sum(per_class[lab]["recall"] for lab in relations) / n,
        "semeval_micro_f1": 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0,
        "per_class": per_class,
    }


def relation_metrics(pred: Sequence[str], gold: Sequence[str], negative: str = "Other") -> dict[str, Any]:
    """The official score plus directed (e.g. 19-way) accuracy and its confusion matrix (rows gold)."""
    labels = sorted(set(gold) | set(pred))
    index = {lab: i for i, lab in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for p, g in zip(pred, gold):
        matrix[index[g]][index[p]] += 1
    accuracy = sum(p == g for p, g in zip(pred, gold)) / len(gold) if gold else 0.0
    return {**semeval_scores(pred, gold, negative), "accuracy": accuracy,
            "confusion_matrix": {"labels": labels, "matrix": matrix}, "count": len(gold)}
