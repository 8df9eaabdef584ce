"""Assemble a trainable model: backbone + task head, then the freezing policy or PEFT wrapper."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from tuneforge.models import ResolvedModel, enable_gradient_checkpointing, load_backbone
from tuneforge.tasks.base import Task
from tuneforge.training.freezing import (
    apply_freezing,
    count_parameters,
    freeze_word_embeddings,
    input_embeddings,
)
from tuneforge.training.loop import LossTerm, StepHook


@dataclass
class BuiltModel:
    model: nn.Module
    step_hooks: list[StepHook] = field(default_factory=list)
    parameters: dict[str, int] = field(default_factory=dict)
    loss_terms: list[LossTerm] = field(default_factory=list)  # regularisers fit adds to the loss (AdaLoRA's)


def build_model(task: Task, resolved: ResolvedModel, dropout: float | None, freeze_policy: str, freeze_k: int,
                peft: Any | None, total_steps: int | None = None,
                attention_dropout: float | None = None, freeze_embeddings: bool = False,
                gradient_checkpointing: bool = False) -> BuiltModel:
    """The same code path builds the model for training and for loading a run, so weights always fit.

    ``freeze_embeddings`` is ``freeze.embeddings`` (see ``freeze_word_embeddings``);
    ``gradient_checkpointing`` is ``train.gradient_checkpointing`` (see ``enable_gradient_checkpointing``).
    """
    backbone = load_backbone(resolved.path, dropout=dropout, causal_lm=task.needs_lm_head,
                             attention_dropout=attention_dropout)
    hooks: list[StepHook] = []
    terms: list[LossTerm] = []
    if peft is not None and peft.method:
        # lazily: peft is only needed for PEFT runs
        from tuneforge.peft_methods import apply_peft, loss_terms_for

        backbone, hooks = apply_peft(backbone, peft, task_type=task.peft_task_type,
                                     total_steps=total_steps)
        terms = loss_terms_for(backbone, peft)
    if gradient_checkpointing:
        enable_gradient_checkpointing(backbone)
    rows = _vocab_rows(backbone)
    model = task.build_model(backbone)
    if peft is not None and peft.method:
        counts = count_parameters(model)
    else:
        apply_freezing(model, freeze_policy, freeze_k)
        freeze_word_embeddings(model, freeze_embeddings,
                               vocab_grew=_vocab_rows(model.backbone) != rows)
        counts = count_parameters(model)
    return BuiltModel(model, hooks, counts, terms)


def _vocab_rows(body: nn.Module) -> int | None:
    """Rows of the input-embedding matrix (None when the body has none): compared before and after the task head is
    built, to tell whether the task grew the vocabulary."""
    return getattr(input_embeddings(body), "num_embeddings", None)
