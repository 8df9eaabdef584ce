"""Which language a metric should assume, and how Chinese text is cut into units for scoring.

English metrics split on whitespace; Chinese has no spaces, so a whitespace F1 collapses to exact match and
rouge-score (which keeps only ASCII letters and digits) sees nothing. For Chinese, TuneForge scores characters,
as the CMRC 2018 official evaluation does: each CJK character is one unit, runs of other characters are split
into words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

LANGUAGES = ("auto", "en", "zh")

# CJK Unified Ideographs (+ extension A and compatibility ideographs)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_OTHER_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def cjk_share(texts: Iterable[str]) -> float:
    """Share of CJK ideographs among the non-space characters of ``texts``.

    >>> round(cjk_share(["酒店很好 ok"]), 2)
    0.67
    """
    cjk = other = 0
    for text in texts:
        for ch in text:
            if ch.isspace():
                continue
            if _CJK.match(ch):
                cjk += 1
            else:
                other += 1
    return cjk / max(1, cjk + other)


def detect_language(texts: Iterable[str], threshold: float = 0.2) -> str:
    """``zh`` when at least ``threshold`` of the characters are CJK ideographs, else ``en`` (whitespace words).

    >>> detect_language(["今天天气很好"]), detect_language(["a sunny day"])
    ('zh', 'en')
    """
    return "zh" if cjk_share(texts) >= threshold else "en"


def resolve_language(setting: str, texts: Iterable[str]) -> str:
    """``setting`` (``auto`` | ``en`` | ``zh``) → ``en`` or ``zh``; ``auto`` looks at ``texts``."""
    if setting not in LANGUAGES:
        raise ValueError(f"unknown language {setting!r}; known: {', '.join(LANGUAGES)}")
    return detect_language(texts) if setting == "auto" else setting


def char_units(text: str) -> list[str]:
    """Every CJK character alone; other runs split into words and punctuation (lower-cased).

    >>> char_units("北京大学 Peking University!")
    ['北', '京', '大', '学', 'peking', 'university', '!']
    """
    out: list[str] = []
    run: list[str] = []
    for ch in text.lower():
        if _CJK.match(ch):
            if run:
                out.extend(_OTHER_WORD.findall("".join(run)))
                run = []
            out.append(ch)
        else:
            run.append(ch)
    if run:
        out.extend(_OTHER_WORD.findall("".join(run)))
    return out


def drop_partial_char(text: str) -> str:
    """``text`` without the U+FFFD that an unfinished multi-byte character decodes to at its end (a byte-level
    tokenizer spends 2-4 tokens on one Chinese character, and a token budget can stop inside it).

    >>> drop_partial_char("你好\ufffd\ufffd")
    '你好'
    """
    return text.rstrip("\ufffd")


class CharTokenizer:
    """The ``tokenize(text)`` object rouge-score accepts: ROUGE over :func:`char_units` (punctuation dropped)."""

    def tokenize(self, text: str) -> list[str]:
        return [u for u in char_units(text) if any(c.isalnum() for c in u)]
