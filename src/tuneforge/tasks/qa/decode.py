"""QA decoding: the best span per window (start ≤ end, inside the context, at most N tokens), then per question."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tuneforge.tasks.qa.windows import Offsets


def best_spans(start_logits: torch.Tensor, end_logits: torch.Tensor, context: torch.Tensor,
               max_answer_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(R, T) logits and (R, T) context mask → best score, start and end token per row (score -inf: no span).

    A span (s, e) scores ``start[s] + end[e]`` and is allowed when s ≤ e < s + max_answer_length and both
    tokens belong to the context.
    """
    t = start_logits.size(1)
    scores = start_logits.float().unsqueeze(2) + end_logits.float().unsqueeze(1)  # (R, T, T): [r, s, e]
    pos = torch.arange(t, device=scores.device)
    width = pos.view(1, t) - pos.view(t, 1)  # (T, T): e - s
    allowed = (width >= 0) & (width < max_answer_length)
    allowed = allowed.unsqueeze(0) & context.unsqueeze(2) & context.unsqueeze(1)  # (R, T, T)
    scores = scores.masked_fill(~allowed, float("-inf"))
    best, flat = scores.flatten(1).max(-1)  # (R,)
    return best, flat // t, flat % t


def decode_batch(start_logits: torch.Tensor, end_logits: torch.Tensor, offsets: Sequence[Offsets],
                 owner: Sequence[int], n_features: int, max_answer_length: int, allow_no_answer: bool,
                 null_threshold: float = 0.0) -> list[dict[str, Any]]:
    """One answer per feature: the highest-scoring span over its windows, as character offsets in the context.

    With ``allow_no_answer`` (SQuAD v2.0), the answer is empty when the smallest null score over the windows
    (``start[0] + end[0]``) exceeds the best span score by more than ``null_threshold``.
    """
    width = start_logits.size(1)
    context = torch.tensor([[o is not None for o in row] + [False] * (width - len(row)) for row in offsets],
                           device=start_logits.device)
    score, s, e = best_spans(start_logits, end_logits, context, max_answer_length)
    null = (start_logits[:, 0] + end_logits[:, 0]).float()
    out: list[dict[str, Any]] = [{"start": None, "end": None, "score": float("-inf"), "no_answer": True,
                                  "null_score": float("inf")} for _ in range(n_features)]
    for r, f in enumerate(owner):
        best = out[f]
        best["null_score"] = min(best["null_score"], float(null[r]))
        if float(score[r]) > best["score"]:
            best.update(score=float(score[r]), start=offsets[r][int(s[r])][0], end=offsets[r][int(e[r])][1],
                        no_answer=False)
    for best in out:
        if allow_no_answer and best["null_score"] > best["score"] + null_threshold:
            best.update(start=None, end=None, no_answer=True)
    return out
