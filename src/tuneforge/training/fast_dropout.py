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


ATTENTION = "tuneforge_sdpa"  # the transformers attention implementation registered below


def attention_probs_dropout(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            mask: torch.Tensor | None, p: float, scaling: float) -> torch.Tensor:
    """``softmax(q k^T * scaling + mask)`` with ``fast_dropout`` on the probabilities, times ``v``: the arithmetic of
    ``scaled_dot_product_attention``'s math path with dropout, with cheaper masks. ``mask`` is boolean (True =
    attend) or additive; shapes are (batch, heads, T, d). Scores and softmax run in fp32; returns (batch, T, heads, d).
    """
    scores = torch.matmul(query, key.transpose(-1, -2)).float().mul_(scaling)
    if mask is not None:
        scores = (scores.masked_fill_(~mask, torch.finfo(scores.dtype).min) if mask.dtype == torch.bool
                  else scores.add_(mask))
    probs = fast_dropout(torch.softmax(scores, dim=-1), p).to(value.dtype)
    return torch.matmul(probs, value).transpose(1, 2).contiguous()


def sdpa_fast_dropout(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      is_causal: bool | None = None, **kwargs):
    """transformers attention function: ``sdpa`` unchanged, except CPU training with attention dropout, where
    ``scaled_dot_product_attention`` falls back to its math path and draws one Bernoulli sample per probability
    (plus mask bookkeeping): ~5% of a batch-32 MiniLM SST-2 step here. That case goes to ``attention_probs_dropout``.
    Causal attention without an explicit mask and grouped-query attention stay with ``sdpa``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", False)
    simple = (module.training and 0.0 < dropout < 1.0 and query.device.type == "cpu"
              and not (causal and attention_mask is None) and key.shape[1] == query.shape[1])
    if not simple:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return attention_probs_dropout(query, key, value, attention_mask, dropout, scale), None


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(ATTENTION, sdpa_fast_dropout)
    AttentionMaskInterface.register(ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])  # the same boolean masks


def use_fast_dropout(model: nn.Module) -> int:
    """Replace every plain ``nn.Dropout`` in ``model`` by ``FastDropout`` (same ``p``) and switch transformers
    models that use ``sdpa`` attention to ``sdpa_fast_dropout``; returns how many dropout modules were swapped.

    The attention switch lives in the model's config object for this process only: ``sdpa_fast_dropout`` is
    ``sdpa`` outside CPU training, and saved configs do not record the implementation."""
    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                setattr(module, name, FastDropout(child.p, child.inplace).train(child.training))
                swapped += 1
    configs = {id(c): c for m in model.modules() if (c := getattr(m, "config", None)) is not None
               and getattr(c, "_attn_implementation", None) == "sdpa"}
    if configs:
        _register_attention()
        for config in configs.values():
            config._attn_implementation = ATTENTION
    return swapped
