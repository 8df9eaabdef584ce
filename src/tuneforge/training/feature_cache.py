"""Frozen-feature cache: when the bottom of a classifier is frozen (head_only, top_k), run it once, not every epoch.

What is cached, read from ``requires_grad`` (so any freezing that leaves a frozen bottom qualifies):

* the whole backbone frozen (``head_only``): the pooled vector of each example, ``(H,)``; training then runs only
  dropout + the linear layer;
* embeddings and layers ``[0, s)`` frozen, layers ``[s, L)`` trainable (``top_k``): the hidden states entering layer
  ``s``, ``(T_i, H)`` per example, unpadded; training runs only the top layers, the pooling and the head.

The frozen part runs in **eval mode** (no dropout), once, under the training autocast dtype. Without the cache the
frozen layers run in train mode every step, so their dropout is active: the two paths give identical results only
when the backbone's dropout is 0 (``train.dropout=0``; the head's own dropout is applied identically on both paths,
tests/test_feature_cache.py checks this). With dropout, the cached path trains the top on clean frozen features,
which is what the frozen layers produce at inference anyway.

Memory: ``N × H`` floats for head_only; ``Σ T_i × H`` floats for top_k (SST-2 train, MiniLM: ~1.4 GB in fp32).
Only BERT-style encoders (``embeddings`` + ``encoder.layer``) inside ``SequenceClassifier`` are cached; anything
else (PEFT wrappers, decoders, other heads) trains on the ordinary path. A self-check on the first batch compares
the split forward with the model's own forward and falls back when they disagree.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from tuneforge.evaluation.evaluate import autocast_context, model_inputs
from tuneforge.tasks.base import Batch, Feature, Task
from tuneforge.tasks.classification.head import SequenceClassifier, pool_states
from tuneforge.training.batching import by_length
from tuneforge.training.freezing import transformer_layers

MAX_CACHE_BYTES = 8 * 2**30  # beyond this the cache would crowd out training; run the frozen layers instead
SELF_CHECK_ATOL = 1e-4


@dataclass(frozen=True)
class CachePlan:
    kind: str  # "pooled": the whole backbone is frozen | "hidden": embeddings + layers[:start] are frozen
    start: int  # first trainable layer ("hidden"); the number of layers ("pooled")


def plan_cache(model: nn.Module) -> CachePlan | None:
    """What can be cached, from ``requires_grad``; None when no frozen bottom can be skipped.

    >>> # plan_cache(model_with_top_2_of_6_trainable) == CachePlan("hidden", 4)
    """
    if not isinstance(model, SequenceClassifier):
        return None
    backbone = model.backbone
    if hasattr(backbone, "peft_config"):  # a PEFT wrapper may change the inputs (virtual tokens): never cached
        return None
    if not hasattr(backbone, "embeddings") or not hasattr(getattr(backbone, "encoder", None), "layer"):
        return None
    try:
        layers = transformer_layers(backbone)
    except ValueError:
        return None
    if layers != list(backbone.encoder.layer):
        return None
    if not any(p.requires_grad for p in backbone.parameters()):
        return CachePlan("pooled", len(layers))
    trainable = [i for i, layer in enumerate(layers) if any(p.requires_grad for p in layer.parameters())]
    if not trainable:  # something outside the stack trains (e.g. the embeddings) and nothing inside it
        return None
    start = trainable[0]
    top = {id(p) for layer in layers[start:] for p in layer.parameters()}
    if getattr(backbone, "pooler", None) is not None:  # the pretrained pooler sits above the stack
        top |= {id(p) for p in backbone.pooler.parameters()}
    if start == 0 or any(p.requires_grad for p in backbone.parameters() if id(p) not in top):
        return None  # the embeddings (or something outside the stack) train: nothing below can be cached
    return CachePlan("hidden", start)


def run_layers(backbone: nn.Module, hidden: torch.Tensor, attention_mask: torch.Tensor, lo: int,
               hi: int) -> torch.Tensor:
    """Encoder layers ``[lo, hi)`` of a BERT-style body on ``hidden`` (B, T, H), as ``BertModel.forward`` runs them."""
    from transformers.masking_utils import create_bidirectional_mask

    mask = create_bidirectional_mask(config=backbone.config, inputs_embeds=hidden, attention_mask=attention_mask)
    for layer in backbone.encoder.layer[lo:hi]:
        out = layer(hidden, mask)
        hidden = out[0] if isinstance(out, tuple) else out  # (B, T, H)
    return hidden


class CachedClassifier(nn.Module):
    """A ``SequenceClassifier`` run from cached inputs (``pooled`` or ``hidden``).

    It registers the model's own children under the same names, so parameter names, checkpoints, the optimizer's
    groups and ``load_weights`` are those of the full model, and training it trains the full model's tensors.
    """

    def __init__(self, model: SequenceClassifier, plan: CachePlan):
        super().__init__()
        for name, child in model.named_children():
            self.add_module(name, child)
        self.pooling = model.pooling
        self.plan = plan

    def forward(self, attention_mask: torch.Tensor | None = None, pooled: torch.Tensor | None = None,
                hidden: torch.Tensor | None = None, **_: torch.Tensor) -> dict[str, torch.Tensor]:
        if pooled is None:
            n_layers = len(self.backbone.encoder.layer)
            hidden = run_layers(self.backbone, hidden, attention_mask, self.plan.start, n_layers)  # (B, T, H)
            pooled = pool_states(self, hidden, attention_mask)  # (B, H)
        return {"logits": self.classifier(self.dropout(pooled))}


class CachedTask:
    """The task with one change: ``collate`` also stacks (or pads) the cached tensors. Everything else delegates."""

    def __init__(self, task: Task, kind: str):
        self._task = task
        self.kind = kind

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)

    def collate(self, features: Sequence[Feature]) -> Batch:
        batch = self._task.collate(features)  # labels (and the attention mask) exactly as the task builds them
        batch.pop("token_type_ids", None)  # input_ids stay: the loop counts samples by them; the model ignores them
        if self.kind == "pooled":
            batch.pop("attention_mask", None)  # no token runs through the model: the loop counts none
            batch["pooled"] = torch.stack([f["pooled"] for f in features])  # (B, H)
        else:
            batch["hidden"] = pad_sequence([f["hidden"] for f in features], batch_first=True)  # (B, T, H)
        return batch


@torch.no_grad()
def compute_cache(model: SequenceClassifier, task: Task, features: Sequence[Feature], plan: CachePlan,
                  device: torch.device, dtype: torch.dtype | None, batch_size: int = 128) -> list[Feature] | None:
    """``features`` with the frozen part's output added (``pooled`` or ``hidden``); None if the self-check fails."""
    was_training = model.training
    model.eval()
    out: list[Feature | None] = [None] * len(features)
    checked = False
    try:
        with autocast_context(device, dtype):
            for idx in by_length([f["length"] for f in features], batch_size):
                batch = task.collate([features[i] for i in idx])
                inputs = model_inputs(batch, device)
                mask = inputs["attention_mask"]
                if plan.kind == "pooled":
                    values = model.features(**inputs).float().cpu()  # (B, H)
                    rows = list(values)
                else:
                    emb = model.backbone.embeddings(input_ids=inputs["input_ids"],
                                                    token_type_ids=inputs.get("token_type_ids"))  # (B, T, H)
                    hidden = run_layers(model.backbone, emb, mask, 0, plan.start)
                    if not checked and not _split_matches(model, inputs, hidden, plan):
                        return None
                    rows = [hidden[j, :features[i]["length"]].float().cpu().clone() for j, i in enumerate(idx)]
                checked = True
                for i, row in zip(idx, rows):
                    out[i] = {**features[i], plan.kind: row}
    finally:
        model.train(was_training)
    return out  # type: ignore[return-value]


def _split_matches(model: SequenceClassifier, inputs: dict[str, torch.Tensor], hidden: torch.Tensor,
                   plan: CachePlan) -> bool:
    """The bottom + top split reproduces the model's own pooled output on one batch (eval mode)."""
    top = run_layers(model.backbone, hidden, inputs["attention_mask"], plan.start, len(model.backbone.encoder.layer))
    split = pool_states(model, top, inputs["attention_mask"]).float()
    whole = model.features(**inputs).float()
    return bool(torch.allclose(split, whole, atol=SELF_CHECK_ATOL, rtol=0))


def cache_frozen_features(model: nn.Module, task: Task, train: Sequence[Feature], val: Sequence[Feature],
                          device: torch.device, dtype: torch.dtype | None, verbose: bool = False,
                          batch_size: int = 128) -> tuple[nn.Module, Any, Sequence[Feature], Sequence[Feature]]:
    """``(model, task, train, val)`` to train on: cached versions when the model has a frozen bottom, else unchanged.

    >>> # model, task, train, val = cache_frozen_features(model, task, train, val, device, torch.bfloat16)
    """
    plan = plan_cache(model)
    if plan is None:
        return model, task, train, val
    width = model.backbone.config.hidden_size
    n_floats = width * (len(train) + len(val)) if plan.kind == "pooled" else \
        width * sum(f["length"] for f in (*train, *val))
    if n_floats * 4 > MAX_CACHE_BYTES:
        if verbose:
            print(f"frozen-feature cache skipped: it would take {n_floats * 4 / 2**30:.1f} GiB")
        return model, task, train, val
    start = time.perf_counter()
    cached_train = compute_cache(model, task, train, plan, device, dtype, batch_size)
    cached_val = compute_cache(model, task, val, plan, device, dtype, batch_size) if cached_train is not None else None
    if cached_train is None or cached_val is None:
        if verbose:
            print("frozen-feature cache skipped: the split forward does not reproduce the model's (self-check)")
        return model, task, train, val
    if verbose:
        what = "pooled vectors" if plan.kind == "pooled" else f"hidden states entering layer {plan.start}"
        print(f"frozen-feature cache: {what} for {len(train) + len(val):,} examples "
              f"({n_floats * 4 / 2**20:.0f} MiB) in {time.perf_counter() - start:.1f} s; frozen layers ran in "
              f"eval mode (no dropout)")
    return CachedClassifier(model, plan), CachedTask(task, plan.kind), cached_train, cached_val
