"""Generation metrics: ROUGE-1/2/L (rouge-score), BLEU and chrF (sacrebleu), exact match; several references each.

Scales: ROUGE F1 and exact match are fractions in [0, 1] like accuracy elsewhere; BLEU and chrF keep sacrebleu's
0–100 scale, as papers report them.

Language (``auto`` looks at the references): English text is scored as rouge-score and sacrebleu do by default
(ROUGE over lower-cased ASCII words with stemming, BLEU with the 13a tokenizer). Chinese text is scored over
characters: ROUGE with each CJK character one unit (other runs split into words), BLEU with sacrebleu's ``zh``
tokenizer, exact match on the text with punctuation and spaces removed. rouge-score's default tokenizer would
drop every Chinese character.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tuneforge.evaluation.language import CharTokenizer, char_units, resolve_language

_WORD = re.compile(r"\w+", re.UNICODE)


def normalise_answer(text: str) -> str:
    """Lower-case words only, for exact match: ``"Hello, World!"`` → ``"hello world"``."""
    return " ".join(_WORD.findall(text.lower()))


def rouge_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]], language: str = "en") -> dict[str, float]:
    """Mean over examples of the best F1 against any of the example's references (rouge-score's ``score_multi``);
    over characters for ``zh``."""
    from rouge_score import rouge_scorer

    if language == "zh":
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=CharTokenizer())
    else:
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for hyp, rs in zip(hyps, refs):
        best = scorer.score_multi(list(rs), hyp)
        for key in totals:
            totals[key] += best[key].fmeasure
    n = max(1, len(hyps))
    return {k: v / n for k, v in totals.items()}


def sacrebleu_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]], language: str = "en") -> dict[str, float]:
    """Corpus BLEU and chrF over every reference; examples with fewer references get ``None`` in the extra streams.
    BLEU tokenizes with ``13a``, or ``zh`` for Chinese."""
    import sacrebleu

    streams = [[rs[k] if k < len(rs) else None for rs in refs] for k in range(max(len(rs) for rs in refs))]
    tokenize = "zh" if language == "zh" else "13a"
    return {"bleu": float(sacrebleu.corpus_bleu(list(hyps), streams, tokenize=tokenize).score),
            "chrf": float(sacrebleu.corpus_chrf(list(hyps), streams).score)}


def normalise_chinese(text: str) -> str:
    """Characters and words without punctuation or spaces, for Chinese exact match: ``"你好，世界！"`` → ``"你好世界"``."""
    return "".join(u for u in char_units(text) if any(c.isalnum() for c in u))


def generation_metrics(hyps: Sequence[str], refs: Sequence[Sequence[str]], language: str = "auto") -> dict[str, Any]:
    """All metrics for ``hyps[i]`` against the references ``refs[i]`` (at least one each). ``language``:
    ``en``, ``zh`` or ``auto`` (``zh`` when the references are Chinese).

    >>> generation_metrics(["a cat sat"], [["a cat sat", "the cat sat"]])["exact_match"]
    1.0
    """
    pairs = [(h, [r for r in rs if r]) for h, rs in zip(hyps, refs)]
    pairs = [(h, rs) for h, rs in pairs if rs]
    if not pairs:
        return {"count": 0}
    hyps = [h for h, _ in pairs]
    refs = [rs for _, rs in pairs]
    language = resolve_language(language, (r for rs in refs for r in rs))
    norm = normalise_chinese if language == "zh" else normalise_answer
    words = (lambda h: len(char_units(h))) if language == "zh" else (lambda h: len(h.split()))
    exact = sum(norm(h) in {norm(r) for r in rs} for h, rs in pairs) / len(pairs)
    return {**rouge_scores(hyps, refs, language), **sacrebleu_scores(hyps, refs, language), "exact_match": exact,
            "generated_words": sum(words(h) for h in hyps) / len(hyps),
            "references_per_example": sum(len(rs) for rs in refs) / len(refs), "count": len(pairs)}
