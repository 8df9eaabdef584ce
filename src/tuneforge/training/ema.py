"""An exponential moving average of the trainable weights (Polyak averaging), for ``train.ema_decay``.

After every optimizer step ``shadow = d * shadow + (1 - d) * weight``, with ``d = min(decay, (1 + n) / (10 + n))``
after ``n`` updates, so the average is not dominated by the pretrained starting point early on (timm's warm-up).
The shadow is kept in fp32 whatever the weights' dtype. Validation, the best checkpoint and the returned model use
the averaged weights (``swapped``); the optimizer keeps stepping the raw ones, and step checkpoints store both, so
resume stays exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from tuneforge.training.checkpoint import CheckpointError

FILE = "ema.safetensors"


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.shadow = [p.detach().float().clone() for p in self.params]
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        d = self.current_decay()
        self.updates += 1
        # .float() returns fp32 weights as they are, without a copy
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1.0 - d)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for p, s in zip(self.params, self.shadow):
            p.copy_(s)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The averaged weights in the model for the duration; the raw ones back afterwards."""
        backup = [p.detach().clone() for p in self.params]
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, b in zip(self.params, backup):
                    p.copy_(b)

    def save(self, folder: Path) -> None:
        state = {n: s.contiguous() for n, s in zip(self.names, self.shadow)}
        save_file(state, str(Path(folder) / FILE), metadata={"updates": str(self.updates), "decay": str(self.decay)})

    def load(self, folder: Path) -> None:
        path = Path(folder) / FILE
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; train.ema_decay is set but this checkpoint has no weight "
                                  f"average")
        try:
            with safe_open(str(path), "pt") as f:  # one read: tensors and the update count
                saved = set(f.keys())
                missing = [n for n in self.names if n not in saved]
                if missing:
                    raise CheckpointError(f"{path}: no average for {missing[:5]}; was the checkpoint written with "
                                          f"other trainable parameters?")
                for shadow, n in zip(self.shadow, self.names):
                    shadow.copy_(f.get_tensor(n))
                self.updates = int((f.metadata() or {}).get("updates", 0))
        except CheckpointError:
            raise
        except Exception as e:  # safetensors' own error, a bad update count, a shape that does not fit
            raise CheckpointError(f"{path}: cannot read the weight average ({e})") from None
