"""Dropout for CPU training with cheaper random numbers.

PyTorch's CPU dropout draws one Bernoulli sample per element (``bernoulli_``, ~4.9 ns per element on this 2-core
machine): 12% of a batch-32 MiniLM SST-2 training step in bf16. Here one 64-bit random word from the same generator
(``torch.empty(int64).random_``) gives four 16-bit lanes, and an element is kept when its lane is at or above the
threshold ``round(p * 65536)``: ~1.4 ns per element forward, 0.07 backward (``bench/bench_mfu.py``).

Same distribution, different stream: every element is dropped independently with probability
``round(p * 65536) / 65536`` (``p`` to within 8e-6) and survivors are scaled by the exact inverse of the keep rate, so
the output is unbiased, as with ``nn.Dropout``. Draws come from torch's default CPU generator, which checkpoints save
and restore, so seeded runs and exact resume behave as before. GPU tensors (fused Philox dropout is already fast)
and evaluation mode go through ``torch.nn.functional.dropout`` unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LANES = 65536  # 16-bit lanes


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype) -> torch.Tensor:
    """Mask of ``shape`` in ``dtype``: 0 where dropped, ``1 / keep_rate`` where kept (``0 <= p < 1``)."""
    n = math.prod(shape)
    dropped = round(p * LANES)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # full 64-bit range: 4 fair lanes
    lanes = words.view(torch.int16)[:n].view(shape)
    return (lanes >= dropped - LANES // 2).to(dtype).mul_(LANES / (LANES - dropped))


class _ScaledMask(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:  # type: ignore[override]
        mask = keep_mask(x.shape, p, x.dtype)
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or not 0.0 < p < 1.0:
        return nn.functional.dropout(x, p, training)
    return _ScaledMask.apply(x, p)


class FastDropout(nn.Dropout):
    """Drop-in ``nn.Dropout`` (same ``p``, state dict and ``isinstance``) that draws its mask with ``keep_mask``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:  # rare; keep the exact in-place semantics of the original
            return super().forward(x)
        return fast_dropout(x, self.p, self.training)


def use_fast_dropout(model: nn.Module) -> int:
    """Replace every plain ``nn.Dropout`` in ``model`` by ``FastDropout`` (same ``p``); returns how many.

    Attention-probability dropout inside ``scaled_dot_product_attention`` is not a module and is left to PyTorch.
    """
    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                setattr(module, name, FastDropout(child.p, child.inplace))
                swapped += 1
    return swapped
