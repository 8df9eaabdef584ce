"""Which logits a one-head stage's cross-entropy runs over: all labels, the classes seen so far, or this stage's own.

In a class-incremental sequence the softmax over every label pushes the logits of absent classes (the earlier
stages' ones) down at every step, and that bias towards the newest classes is most of what the head forgets.
Masking the logits outside a row's allowed classes removes that push (the "labels trick": Zeno et al., 2018;
van de Ven et al., 2022): masked logits get no gradient from the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

LOSS_MASKS = ("none", "seen", "current")


def class_masks(labels: Sequence[str], current: set[str], earlier: set[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(current, seen): boolean vectors over the head's outputs; seen = this stage's classes and the earlier ones.

    >>> [m.tolist() for m in class_masks(["a", "b", "c"], {"b"}, {"a"})]
    [[False, True, False], [True, True, False]]
    """
    cur = torch.tensor([lab in current for lab in labels], dtype=torch.bool)
    seen = torch.tensor([lab in current or lab in earlier for lab in labels], dtype=torch.bool)
    return cur, seen


def row_masks(targets: torch.Tensor, mode: str, current: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """(B, C) allowed logits per row. ``seen``: every row over the classes seen so far. ``current``: a row of this
    stage's classes over those alone, any other row (replayed from an earlier stage) over the classes seen so far,
    so its own class is never masked. Ignored targets (-100) keep the seen mask.

    >>> cur, seen = torch.tensor([False, True, False]), torch.tensor([True, True, False])
    >>> row_masks(torch.tensor([1, 0]), "current", cur, seen).tolist()
    [[False, True, False], [True, True, False]]
    """
    if mode not in LOSS_MASKS or mode == "none":
        raise ValueError(f"unknown loss mask {mode!r}; known: seen, current")
    b = targets.shape[0]
    allowed = seen.to(targets.device).expand(b, -1).clone()
    if mode == "current":
        valid = targets != -100
        own = torch.zeros(b, dtype=torch.bool, device=targets.device)
        own[valid] = current.to(targets.device)[targets[valid]]
        allowed[own] = current.to(targets.device)
    return allowed


def mask_logits(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Masked logits set to -inf: softmax gives them 0 and cross-entropy no gradient (the target is never masked)."""
    return logits.float().masked_fill(~allowed, float("-inf"))


class MaskedLoss:
    """A classification task whose training loss runs over each row's allowed logits; everything else (collate,
    predict, metrics) is the wrapped task's, so prediction and scoring still see every label."""

    def __init__(self, task: Any, mode: str, current: torch.Tensor, seen: torch.Tensor) -> None:
        if getattr(task, "multi_label", False):
            raise ValueError("continual.loss_mask needs single-label classification (one softmax over the labels)")
        self._task, self._mode, self._current, self._seen = task, mode, current, seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        allowed = row_masks(batch["labels"].to(outputs["logits"].device), self._mode, self._current, self._seen)
        return self._task.loss({**outputs, "logits": mask_logits(outputs["logits"], allowed)}, batch)
