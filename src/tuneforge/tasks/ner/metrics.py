"""NER metrics: strict entity-level precision/recall/F1, overall and per type (seqeval, IOB2), and entity spans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqeval.metrics import classification_report
from seqeval.scheme import IOB2, Entities


def entity_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Strict IOB2 entities as (first word, end word exclusive, type); an I- without its B- opens nothing.

    >>> entity_spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"])
    [(0, 2, 'PER'), (4, 5, 'LOC')]
    """
    return [(e.start, e.end, e.tag) for e in Entities([list(tags)], IOB2).entities[0]]


def entity_metrics(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Micro P/R/F1 over entities (an entity counts only if its type and both boundaries match) and per type."""
    gold_n = sum(len(entity_spans(g)) for g in gold)
    pred_n = sum(len(entity_spans(p)) for p in pred)
    precision = recall = f1 = 0.0
    per_class: dict[str, dict[str, float | int]] = {}
    if gold_n or pred_n:  # seqeval divides by zero on a corpus without entities
        report = classification_report([list(g) for g in gold], [list(p) for p in pred], mode="strict",
                                       scheme=IOB2, output_dict=True, zero_division=0)
        micro = report["micro avg"]
        precision, recall, f1 = float(micro["precision"]), float(micro["recall"]), float(micro["f1-score"])
        per_class = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                         "f1": float(v["f1-score"]), "support": int(v["support"])}
                     for k, v in sorted(report.items()) if not k.endswith("avg")}
    tokens = sum(len(g) for g in gold)
    token_acc = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p)) / tokens if tokens else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "per_class": per_class,
            "token_accuracy": token_acc, "entities_gold": gold_n, "entities_predicted": pred_n, "count": len(gold)}
