"""QA metrics: exact match and token F1 as the official SQuAD v1.1 script computes them (fractions, not percent),
with the SQuAD v2.0 rule for unanswerable questions; for Chinese, as the official CMRC 2018 script does.

CMRC 2018 (``language="zh"``): answers are cut by ``mixed_segmentation`` (every Chinese character alone, other
runs into words), F1 is over the longest common *substring* of the two segment lists, and exact match compares
the strings with the script's punctuation removed. The script splits non-Chinese runs with nltk's
``word_tokenize``; here a regex (words and single punctuation marks) does it, which differs only on English
contractions such as ``don't``."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tuneforge.evaluation.language import resolve_language

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


# the official CMRC 2018 script's sp_char list, in its order ('……' is two characters there and never matches one)
CMRC_PUNCT = frozenset(['-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=',
                        '，', '。', '：', '？', '！', '“', '”', '；', '’', '《', '》', '……', '·', '、',
                        '「', '」', '（', '）', '－', '～', '『', '』'])
_CMRC_CHINESE = re.compile(r"[\u4e00-\u9fa5]")
_WORDS = re.compile(r"\w+|[^\w\s]")


def mixed_segmentation(text: str, rm_punc: bool = False) -> list[str]:
    """CMRC 2018: lower-case and strip; each Chinese character (and each listed punctuation mark, unless
    ``rm_punc`` drops it) is one segment; runs of anything else are split into words.

    >>> mixed_segmentation("《红楼梦》Dream of 1791", rm_punc=True)
    ['红', '楼', '梦', 'dream', 'of', '1791']
    """
    out: list[str] = []
    run = ""
    for ch in str(text).lower().strip():
        if rm_punc and ch in CMRC_PUNCT:
            continue
        if _CMRC_CHINESE.match(ch) or ch in CMRC_PUNCT:
            if run:
                out.extend(_WORDS.findall(run))
                run = ""
            out.append(ch)
        else:
            run += ch
    if run:
        out.extend(_WORDS.findall(run))
    return out


def longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest run of consecutive segments shared by ``a`` and ``b`` (the script's ``find_lcs``)."""
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


def cmrc_f1(prediction: str, ground_truth: str) -> float:
    pred, gold = mixed_segmentation(prediction, rm_punc=True), mixed_segmentation(ground_truth, rm_punc=True)
    common = longest_common_substring(gold, pred)
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def cmrc_exact_match(prediction: str, ground_truth: str) -> float:
    def strip(s: str) -> str:
        return "".join(ch for ch in str(s).lower().strip() if ch not in CMRC_PUNCT)
    return float(strip(prediction) == strip(ground_truth))


def score_one(prediction: str, answers: Sequence[str], language: str = "en") -> tuple[float, float]:
    """(exact match, F1), each the max over the gold answers. No gold answers (SQuAD v2.0 unanswerable):
    both are 1 when the prediction is empty after normalising, else 0. ``language="zh"``: the CMRC 2018 rules."""
    if not answers:
        hit = float(normalize_answer(prediction) == "")
        return hit, hit
    em, f1 = (cmrc_exact_match, cmrc_f1) if language == "zh" else (exact_match_score, f1_score)
    return max(em(prediction, a) for a in answers), max(f1(prediction, a) for a in answers)


def qa_metrics(predictions: Sequence[str], answers: Sequence[Sequence[str]],
               language: str = "auto") -> dict[str, Any]:
    """``exact_match`` and ``f1`` averaged over questions; has/no-answer splits when unanswerables exist.
    ``language``: ``en`` (SQuAD), ``zh`` (CMRC 2018) or ``auto`` (``zh`` when the gold answers are Chinese)."""
    language = resolve_language(language, (a for ans in answers for a in ans))
    scores = [score_one(p, a, language) for p, a in zip(predictions, answers)]
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
