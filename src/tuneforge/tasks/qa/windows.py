"""QA features: question + context cut into overlapping windows (doc stride), with offsets and span targets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

Offsets = list[tuple[int, int] | None]  # per token: (char start, char end) in the context, None outside it


def cut_question(question: str, tokenizer: Any, max_tokens: int) -> str:
    """Keep the question's first ``max_tokens`` tokens (cut on the original text, not a detokenised copy)."""
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_tokens:
        return question
    return question[: enc["offset_mapping"][max_tokens - 1][1]]


def answer_tokens(offsets: Offsets, start: int, end: int) -> tuple[int, int]:
    """Token positions of the first and last answer tokens in one window, or (0, 0) (the first token, "no
    answer here") when the answer does not lie wholly inside this window's part of the context.

    >>> answer_tokens([None, None, (0, 4), (5, 9), (10, 12), None], 5, 12)
    (3, 4)
    """
    ctx = [i for i, o in enumerate(offsets) if o is not None]
    if not ctx or offsets[ctx[0]][0] > start or offsets[ctx[-1]][1] < end:
        return 0, 0
    first = next(i for i in ctx if offsets[i][1] > start)
    last = next(i for i in reversed(ctx) if offsets[i][0] < end)
    return (first, last) if first <= last else (0, 0)


def encode_windows(ex: dict[str, Any], tokenizer: Any, max_length: int, doc_stride: int,
                   max_question_length: int) -> dict[str, Any]:
    """One feature per example holding all its windows; ``length`` is the longest window (for batching).

    Consecutive windows share ``doc_stride`` context tokens, so an answer cut by one window is whole in the next.
    The training target is the first gold answer.
    """
    question = cut_question(ex["question"], tokenizer, max_question_length)
    enc = tokenizer(question, ex["context"], truncation="only_second", max_length=max_length, stride=doc_stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    answers = ex.get("answers") or []
    target = (answers[0]["start"], answers[0]["start"] + len(answers[0]["text"])) if answers else None
    windows = []
    for w in range(len(enc["input_ids"])):
        offsets = [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][w], enc.sequence_ids(w))]
        start, end = answer_tokens(offsets, *target) if target else (0, 0)
        win = {k: enc[k][w] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        windows.append({**win, "offsets": offsets, "start": start, "end": end})
    return {"windows": windows, "length": max(len(w["input_ids"]) for w in windows)}


def collate(features: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """All windows of all features as rows. ``labels`` (R, 2) holds start/end targets; ``owner`` maps each row
    to its feature in this batch and ``offsets`` stay plain lists (metadata, never model inputs)."""
    rows = [(i, w) for i, f in enumerate(features) for w in f["windows"]]
    width = max(len(w["input_ids"]) for _, w in rows)
    batch: dict[str, Any] = {}
    for key, pad in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0)):
        if key in rows[0][1]:
            batch[key] = torch.tensor([w[key] + [pad] * (width - len(w[key])) for _, w in rows])
    batch["labels"] = torch.tensor([[w["start"], w["end"]] for _, w in rows])  # (R, 2)
    batch["owner"] = [i for i, _ in rows]
    batch["offsets"] = [w["offsets"] for _, w in rows]
    batch["n_features"] = len(features)
    return batch
