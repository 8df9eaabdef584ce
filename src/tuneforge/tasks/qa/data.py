"""QA data: the SQuAD v1.1 / v2.0 JSON reader and checks that every answer sits where its offset says.

Published sets carry answers whose offset is wrong (CMRC 2018 dev: 200 of 9,657). One bad answer does not drop
the question: an answer whose text occurs elsewhere in the context moves to the nearest occurrence; one whose text
is not in the context at all stays a reference for the metrics but is not a training span. Both are listed under
``repairs`` in the audit. A question none of whose answers is in the context is an error (or a skipped row)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuneforge.data.readers import (
    LOC,
    READERS,
    BadRows,
    DataError,
    ReadOptions,
    Record,
    json_error,
    load_json,
    read_text,
    record_error,
    split_loc,
)

Example = dict[str, Any]




@READERS.decorator("squad")
def read_squad(path: Path, opts: ReadOptions, bad: BadRows) -> list[Record]:
    """``{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}`` → one record per question.

    Each record's location is ``file:data[i].paragraphs[j].qas[k]``.
    """
    try:
        obj = load_json(read_text(path, opts.encoding))
    except ValueError as e:
        raise json_error(path, None, e) from None
    articles = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(articles, list):
        raise DataError(path, None, 'expected SQuAD JSON: {"data": [{"paragraphs": [...]}]}', field="data")
    records: list[Record] = []
    for i, article in enumerate(articles):
        try:
            records.extend(flatten_article(article, f"{path}:data[{i}]"))
        except DataError as e:
            bad.report(e)
    return records


def flatten_article(article: Any, where: str) -> list[Record]:
    path, at = split_loc(where)
    paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
    if not isinstance(paragraphs, list):
        raise DataError(path, at, "an article needs a list of paragraphs", field="paragraphs")
    out: list[Record] = []
    for j, para in enumerate(paragraphs):
        qas = para.get("qas") if isinstance(para, dict) else None
        if not isinstance(qas, list):
            raise DataError(path, f"{at}.paragraphs[{j}]", "a paragraph needs context and a list of qas", field="qas")
        for k, qa in enumerate(qas):
            rec = dict(qa) if isinstance(qa, dict) else {"question": qa}
            rec.update(context=para.get("context"), title=article.get("title", ""),
                       **{LOC: f"{where}.paragraphs[{j}].qas[{k}]"})
            out.append(rec)
    return out


def parse_records(records: list[Record], bad: BadRows) -> list[Example]:
    out: list[Example] = []
    for rec in records:
        try:
            if "paragraphs" in rec:  # a whole article, from the generic json reader
                out.extend(parse_one(r) for r in flatten_article(rec, rec.get(LOC, "?:?")))
            else:
                out.append(parse_one(rec))
        except DataError as e:
            bad.report(e)
    return out


def parse_one(rec: Record, need_answers: bool = True) -> Example:
    """Validate one question. Answers must match the context at ``answer_start``; an empty answer list is
    allowed only for SQuAD v2.0 questions marked ``is_impossible``."""
    question, context = rec.get("question"), rec.get("context")
    if not isinstance(question, str) or not question.strip():
        raise record_error(rec, "question", "empty question")
    if not isinstance(context, str) or not context.strip():
        raise record_error(rec, "context", "empty context")
    ex: Example = {"id": str(rec.get("id", "")), "question": question.strip(), "context": context,
                   "title": rec.get("title", ""), LOC: rec.get(LOC)}
    if not need_answers:
        return ex
    impossible = bool(rec.get("is_impossible", False))
    answers = rec.get("answers", [])
    if not isinstance(answers, list):
        raise record_error(rec, "answers", f"answers must be a list, got {type(answers).__name__}")
    if impossible:
        answers = []  # SQuAD v2.0 keeps plausible_answers apart; answers of an impossible question are empty
    elif not answers:
        raise record_error(rec, "answers", "no answers; an unanswerable question needs is_impossible: true (SQuAD v2.0)")
    spans, references, repairs = [], [], []
    first_error: DataError | None = None
    for i, answer in enumerate(answers):
        try:
            spans.append(_check_answer(rec, context, answer, i))
        except DataError as e:
            text = answer.get("text") if isinstance(answer, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise
            first_error = first_error or e
            moved = nearest_occurrence(context, text, answer.get("answer_start"))
            if moved is None:
                references.append(text)
                repairs.append(_repair(e, "kept as a reference for the metrics, not a training span"))
            else:
                spans.append({"text": text, "start": moved})
                repairs.append(_repair(e, f"moved to the occurrence at {moved}"))
    if answers and not spans:
        raise first_error if first_error else record_error(rec, "answers", "no answer found in the context")
    ex["answers"] = spans
    if references:
        ex["reference_answers"] = references  # gold texts that are not spans of the context (metrics only)
    if repairs:
        ex["repairs"] = repairs
    ex["is_impossible"] = impossible
    return ex


def nearest_occurrence(context: str, text: str, start: Any) -> int | None:
    """Offset of the occurrence of ``text`` in ``context`` closest to ``start`` (None: it does not occur).

    >>> nearest_occurrence("ab ab ab", "ab", 4)
    3
    """
    hits, at = [], context.find(text)
    while at >= 0:
        hits.append(at)
        at = context.find(text, at + 1)
    if not hits:
        return None
    near = start if isinstance(start, int) and not isinstance(start, bool) else 0
    return min(hits, key=lambda h: (abs(h - near), h))


def _repair(error: DataError, action: str) -> dict[str, Any]:
    return {"file": error.path, "line": error.line, "field": error.field, "reason": str(error), "action": action}


def _check_answer(rec: Record, context: str, answer: Any, i: int) -> dict[str, Any]:
    field = f"answers[{i}]"
    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str) or not answer["text"]:
        raise record_error(rec, field, f"expected {{text, answer_start}} with non-empty text, got {answer!r}")
    text, start = answer["text"], answer.get("answer_start")
    if not isinstance(start, int) or isinstance(start, bool):
        raise record_error(rec, f"{field}.answer_start", f"answer_start must be an integer, got {start!r}")
    if not 0 <= start <= len(context) - len(text):
        raise record_error(rec, f"{field}.answer_start", f"answer {text!r} at {start} runs outside the context "
                                                  f"(length {len(context)})")
    if context[start:start + len(text)] != text:
        raise record_error(rec, f"{field}.answer_start", f"answer {text!r} does not match the context at {start}: "
                                                  f"{context[start:start + len(text)]!r}")
    return {"text": text, "start": start}
