"""The pooled sentence vector of a classifier (the input of its final ``classifier`` layer), captured during
forwards by a hook, per thread, for the embedding-distance out-of-scope score."""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import nn


def classifier_modules(model: Any) -> list[nn.Module]:
    """The outermost module named ``classifier`` in ``model`` and in its fp32 twin (an int8 model's ``exact``)."""
    found = []
    for root in (model, getattr(model, "exact", None)):
        if not isinstance(root, nn.Module):
            continue
        for name, module in root.named_modules():
            if name.split(".")[-1] == "classifier":
                found.append(module)
                break
    return found


class EmbeddingTap:
    """``take()`` returns the (B, H) classifier input of this thread's latest forward, once; None when none ran.

    Thread-local: a server may run forwards for different requests on different threads."""

    def __init__(self, model: Any):
        self._local = threading.local()
        modules = classifier_modules(model)
        if not modules:
            raise ValueError("the model has no `classifier` layer to read sentence vectors from")
        self._handles = [m.register_forward_hook(self._hook) for m in modules]

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
        self._local.value = inputs[0].detach().float().cpu()

    def take(self) -> torch.Tensor | None:
        value = getattr(self._local, "value", None)
        self._local.value = None
        return value

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
