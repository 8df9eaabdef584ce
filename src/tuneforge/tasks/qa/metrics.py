"""QA metrics: exact match and token F1 as the official SQuAD v1.1 script computes them (fractions, not percent),
with the SQuAD v2.0 rule for unanswerable questions."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation, drop the articles a/an/the, collapse whitespace (the script's order).

    >>> normalize_answer("The  Eiffel-Tower!")
    'eiffeltower'
    """
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def f1_score(prediction: str, ground_truth: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(ground_truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def score_one(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """(exact match, F1), each the max over the gold answers. No gold answers (SQuAD v2.0 unanswerable):
    both are 1 when the prediction is empty after normalising, else 0."""
    if not answers:
        hit = float(normalize_answer(prediction) == "")
        return hit, hit
    return (max(exact_match_score(prediction, a) for a in answers),
            max(f1_score(prediction, a) for a in answers))


def qa_metrics(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, Any]:
    """``exact_match`` and ``f1`` averaged over questions; has/no-answer splits when unanswerables exist."""
    scores = [score_one(p, a) for p, a in zip(predictions, answers)]
    n = max(1, len(scores))
    out: dict[str, Any] = {"exact_match": sum(s[0] for s in scores) / n, "f1": sum(s[1] for s in scores) / n,
                           "count": len(scores)}
    no_ans = [s for s, a in zip(scores, answers) if not a]
    if no_ans:
        has = [s for s, a in zip(scores, answers) if a]
        for name, part in (("has_answer", has), ("no_answer", no_ans)):
            out[f"{name}_exact_match"] = sum(s[0] for s in part) / max(1, len(part))
            out[f"{name}_f1"] = sum(s[1] for s in part) / max(1, len(part))
            out[f"{name}_count"] = len(part)
    return out
