"""Optimiser and schedule builders: AdamW/SGD, no decay on bias/LayerNorm, linear/cosine/constant warmup."""

from __future__ import annotations

import math
import re

import torch
from torch import nn

NO_DECAY_HINTS = ("bias", "layernorm", "layer_norm", "ln_", "norm.weight", "rmsnorm")


LAYER_INDEX = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
EMBEDDING_HINTS = ("embed", "wte", "wpe")


def layer_depths(names: list[str]) -> tuple[dict[str, int], int]:
    """Depth of each parameter for layer-wise lr decay: 0 = embeddings, i + 1 = transformer block i, and
    ``n_layers + 1`` for everything above the blocks (final norm, pooler, head). Returns (depths, n_layers)."""
    index = {n: int(m.group(1)) for n in names if (m := LAYER_INDEX.search(n))}
    n_layers = max(index.values(), default=-1) + 1
    depths = {}
    for n in names:
        if n in index:
            depths[n] = index[n] + 1
        elif any(h in n.lower() for h in EMBEDDING_HINTS):
            depths[n] = 0
        else:
            depths[n] = n_layers + 1
    return depths, n_layers


def param_groups(model: nn.Module, weight_decay: float, lr: float, head_lr: float | None,
                 head_prefixes: tuple[str, ...] = ("classifier", "head", "qa_outputs"),
                 layer_decay: float | None = None) -> list[dict]:
    """Split trainable parameters into decay / no-decay groups (and a head group when ``head_lr`` is set).

    ``layer_decay`` (layer-wise lr decay, as in ELECTRA/BEiT fine-tuning): the top block trains at ``lr``, each block
    below at ``layer_decay`` times the one above, the embeddings one step below the bottom block; parameters above
    the blocks (head, final norm) keep ``lr`` (or ``head_lr``)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    depths, n_layers = layer_depths([n for n, _ in named]) if layer_decay is not None else ({}, 0)
    groups: dict[tuple[bool, bool, int], list[torch.nn.Parameter]] = {}
    for name, p in named:
        lname = name.lower()
        no_decay = p.ndim < 2 or any(h in lname for h in NO_DECAY_HINTS)
        is_head = head_lr is not None and name.split(".")[0] in head_prefixes
        depth = n_layers + 1 if is_head else depths.get(name, n_layers + 1)
        groups.setdefault((no_decay, is_head, depth), []).append(p)
    out = []
    for (no_decay, is_head, depth), params in sorted(groups.items()):
        scale = layer_decay ** max(0, n_layers - depth) if layer_decay is not None else 1.0
        out.append({"params": params, "weight_decay": 0.0 if no_decay else weight_decay,
                    "lr": head_lr if is_head else lr * scale})
    return out


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, head_lr: float | None = None,
                    momentum: float = 0.9, layer_decay: float | None = None) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay, lr, head_lr, layer_decay=layer_decay)
    if not groups:
        raise ValueError("no trainable parameters: check freeze.policy and peft.method")
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=_can_fuse(groups) or None)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; known: adamw, sgd")


def _can_fuse(groups: list[dict]) -> bool:
    """Fused AdamW updates every tensor in one kernel: on CPU ~8x faster than the per-tensor loop (MiniLM: 11 vs
    93 ms a step, a quarter of a training step). It needs floating-point tensors on CPU or CUDA."""
    return all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"])


def lr_lambda(kind: str, warmup: int, total: int):
    """Multiplier on the peak lr at optimizer step ``s`` (0-based)."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        progress = min(max(progress, 0.0), 1.0)
        if kind == "linear":
            return 1.0 - progress
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        raise ValueError(f"unknown scheduler {kind!r}; known: linear, cosine, constant")

    return f


def build_scheduler(optimizer: torch.optim.Optimizer, kind: str, warmup_ratio: float, total: int):
    warmup = int(round(warmup_ratio * total))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(kind, warmup, total))
