"""The training loop's CPU speed-ups, listed in one place: each is exact (the same maths as the plain loop), has a
config switch or a condition under which it applies, and enters ``fit()`` through ``install`` / ``Speedups``.

| name             | what it saves                                                        | switch / condition            |
|------------------|----------------------------------------------------------------------|-------------------------------|
| memory keeping   | page faults of the big per-step gradient blocks (glibc keeps them)   | encoders (allocator.py)       |
| fast dropout     | cheaper dropout masks on CPU, attention included                     | train.fast_dropout            |
| feature cache    | the frozen bottom of head_only / top_k runs runs once, not per epoch  | train.feature_cache           |
| active vocabulary| word-embedding rows no training token uses get no dense gradient     | train.active_vocab, AdamW     |
| clip in optimizer| gradient clipping inside fused AdamW's own pass over the gradients   | fused AdamW, no grad scaler   |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch import nn

from tuneforge.tasks.base import Feature, Task
from tuneforge.training import active_vocab
from tuneforge.training.allocator import keep_freed_memory, mmap_threshold_mb
from tuneforge.training.fast_dropout import use_fast_dropout
from tuneforge.training.feature_cache import cache_frozen_features
from tuneforge.training.steps import clip_in_fused_step, fused_adamw


@dataclass
class Speedups:
    """What ``install`` put in place, and the two moments of a step where the speed-ups act."""

    model: nn.Module  # the model to train: the cached-features model when the feature cache applies
    task: Task  # likewise the task (its collate stacks the cached tensors)
    train: Sequence[Feature]
    val: Sequence[Feature]
    active: active_vocab.ActiveRowsEmbedding | None = None
    fused_clip: torch.optim.Optimizer | None = None  # set by ``after_prepare`` when clipping can ride in AdamW
    trainable: list[nn.Parameter] | None = None

    def after_prepare(self, model: nn.Module, optimizer: torch.optim.Optimizer, accelerator: Accelerator) -> None:
        """Clip inside fused AdamW's pass over the gradients; FSDP/DeepSpeed and fp16 scaling clip their own way."""
        plain = accelerator.scaler is None and accelerator.distributed_type in (
            DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
        self.fused_clip = fused_adamw(optimizer) if plain else None
        self.trainable = [p for p in model.parameters() if p.requires_grad]

    def clip_gradients(self, model: nn.Module, accelerator: Accelerator, max_norm: float | None) -> None:
        if not max_norm:
            return
        if self.fused_clip is not None:
            grads = [p.grad for p in self.trainable or () if p.grad is not None]
            clip_in_fused_step(self.fused_clip, grads, max_norm)
        else:
            accelerator.clip_grad_norm_(model.parameters(), max_norm)

    def after_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.fused_clip is not None:
            self.fused_clip.grad_scale = None  # type: ignore[attr-defined]
        if self.active is not None:
            self.active.after_optimizer_step(optimizer)

    def uninstall(self, model: nn.Module) -> None:
        """Put the full embedding matrix back (end of training, or a stop on a non-finite loss)."""
        if self.active is not None:
            active_vocab.uninstall(model, self.active)
            self.active = None


def install(model: nn.Module, task: Task, train: Sequence[Feature], val: Sequence[Feature], cfg: Any,
            device: torch.device, autocast_dtype: torch.dtype | None, has_loss_terms: bool,
            verbose: bool) -> Speedups:
    """Apply every speed-up that ``cfg`` (the train section) allows to this model and data."""
    # glibc: reuse big per-step gradient blocks (encoders), or map mid-size activations (causal LMs): allocator.py
    decoder_body = task.needs_lm_head or getattr(task, "model_kind", "encoder") == "decoder"  # e.g. SmolLM2 + a head
    keep_freed_memory(mmap_threshold_mb(decoder_body))
    if cfg.fast_dropout:
        use_fast_dropout(model)  # same drop rates and scaling, cheaper masks on CPU (fast_dropout.py)
    if cfg.feature_cache:  # head_only / top_k: the frozen bottom runs once here, not every epoch (feature_cache.py)
        model, task, train, val = cache_frozen_features(model, task, train, val, device, autocast_dtype,
                                                        verbose=verbose)
    fast = Speedups(model, task, train, val)
    if cfg.active_vocab and cfg.optimizer == "adamw" and not cfg.ema_decay and not has_loss_terms:
        pad_id = getattr(task.tokenizer, "pad_token_id", None)
        fast.active = active_vocab.install(model, train, [pad_id])
        if fast.active is not None and verbose:
            rows, vocab = fast.active.weight.shape[0], fast.active.inner.weight.shape[0]
            print(f"active vocabulary: training {rows:,} of {vocab:,} word-embedding rows ({rows / vocab:.0%}); "
                  f"the rest only decay (train.active_vocab)")
    return fast
