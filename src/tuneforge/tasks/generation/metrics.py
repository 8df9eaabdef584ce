"""Generation metrics: ROUGE-1/2/L (rouge-score), BLEU and chrF (sacrebleu), exact match; several references each.

Scales: ROUGE F1 and exact match are fractions in [0, 1] like accuracy elsewhere; BLEU and chrF keep sacrebleu's
0–100 scale, as papers report them. rouge-score's default tokenizer keeps only ASCII letters and digits, so ROUGE
is meaningful for English-like targets only; use BLEU/chrF for other languages.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_WORD = re.compile(r"\w+", re.UNICODE)


def normalise_answer(text: str) -> str:
    """Lower-case words only, for exact match: ``"Hello, World!"`` → ``"hello world"``."""
    return " ".join(_WORD.findall(text.lower()))


def rouge_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean over examples of the best F1 against any of the example's references (rouge-score's ``score_multi``)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for hyp, rs in zip(hyps, refs):
        best = scorer.score_multi(list(rs), hyp)
        for key in totals:
            totals[key] += best[key].fmeasure
    n = max(1, len(hyps))
    return {k: v / n for k, v in totals.items()}


def sacrebleu_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """Corpus BLEU and chrF over every reference; examples with fewer references get ``None`` in the extra streams."""
    import sacrebleu

    streams = [[rs[k] if k < len(rs) else None for rs in refs] for k in range(max(len(rs) for rs in refs))]
    return {"bleu": float(sacrebleu.corpus_bleu(list(hyps), streams).score),
            "chrf": float(sacrebleu.corpus_chrf(list(hyps), streams).score)}


def generation_metrics(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """All metrics for ``hyps[i]`` against the references ``refs[i]`` (at least one each).

    >>> generation_metrics(["a cat sat"], [["a cat sat", "the cat sat"]])["exact_match"]
    1.0
    """
    pairs = [(h, [r for r in rs if r]) for h, rs in zip(hyps, refs)]
    pairs = [(h, rs) for h, rs in pairs if rs]
    if not pairs:
        return {"count": 0}
    hyps = [h for h, _ in pairs]
    refs = [rs for _, rs in pairs]
    exact = sum(normalise_answer(h) in {normalise_answer(r) for r in rs} for h, rs in pairs) / len(pairs)
    return {**rouge_scores(hyps, refs), **sacrebleu_scores(hyps, refs), "exact_match": exact,
            "generated_words": sum(len(h.split()) for h in hyps) / len(hyps),
            "references_per_example": sum(len(rs) for rs in refs) / len(refs), "count": len(pairs)}
