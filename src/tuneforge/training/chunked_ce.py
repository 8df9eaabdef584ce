"""Linear projection + cross-entropy over a large vocabulary in token chunks: the (N, V) logits never exist at once."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
CHUNK_BYTES = 64 * 2**20  # one chunk's fp32 logits; SmolLM2's 49,152-word vocabulary → 341 tokens a chunk


def chunk_tokens(vocab: int, budget_bytes: int | None = None) -> int:
    """Tokens per chunk so that one chunk's fp32 logits stay within ``budget_bytes``.

    >>> chunk_tokens(49152)
    341
    """
    return max(1, (budget_bytes or CHUNK_BYTES) // (4 * vocab))


def compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The dtype the projection runs in: autocast's when it is on for this device (as ``F.linear`` would pick)."""
    kind = hidden.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else hidden.dtype


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         bias: torch.Tensor | None = None, reduction: str = "sum",
                         chunk: int | None = None) -> torch.Tensor:
    """``F.cross_entropy(F.linear(hidden, weight, bias).float(), targets, reduction=...)`` in chunks of tokens.

    ``hidden`` (N, H), ``weight`` (V, H), ``targets`` (N,) with ``-100`` for tokens that are not scored.
    ``reduction="sum"`` is differentiable: the gradients are computed chunk by chunk during the forward pass (the
    loss is a sum, so backward only scales them), which costs no extra projection. ``reduction="none"`` returns
    the (N,) per-token losses (0 at ignored tokens); under gradients each chunk's logits are recomputed in backward.

    >>> h, w, t = torch.randn(5, 8), torch.randn(11, 8), torch.tensor([1, 2, -100, 4, 0])
    >>> ref = F.cross_entropy(F.linear(h, w), t, reduction="sum")
    >>> torch.allclose(linear_cross_entropy(h, w, t, chunk=2), ref)
    True
    """
    if hidden.dim() != 2 or targets.shape != hidden.shape[:1]:
        raise ValueError(f"hidden must be (N, H) and targets (N,); got {tuple(hidden.shape)} and "
                         f"{tuple(targets.shape)}")
    chunk = chunk or chunk_tokens(weight.shape[0])
    dtype = compute_dtype(hidden)
    if reduction == "none":
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias)):
            return _token_losses_checkpointed(hidden, weight, bias, targets, chunk)
        return _token_losses(hidden, weight, bias, targets, chunk, dtype)
    if reduction != "sum":
        raise ValueError(f"unknown reduction {reduction!r}; known: sum, none")
    return _LinearCrossEntropySum.apply(hidden, weight, bias, targets, chunk, dtype)


def _chunk_logits(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return F.linear(h, w, b).float()  # (c, V) fp32, as the unchunked path upcasts before the softmax


@torch.no_grad()
def _token_losses(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor,
                  chunk: int, dtype: torch.dtype) -> torch.Tensor:
    out = torch.zeros(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    with torch.autocast(hidden.device.type, enabled=False):
        w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
        for s in range(0, hidden.shape[0], chunk):
            logits = _chunk_logits(hidden[s:s + chunk].to(dtype), w, b)
            out[s:s + chunk] = F.cross_entropy(logits, targets[s:s + chunk], reduction="none")
    return out


def _chunk_nll(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, t: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(F.linear(h, w, b).float(), t, reduction="none")


def _token_losses_checkpointed(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                               targets: torch.Tensor, chunk: int) -> torch.Tensor:
    """Per-token losses with gradients: each chunk keeps only its inputs and recomputes its logits in backward."""
    from torch.utils.checkpoint import checkpoint

    return torch.cat([checkpoint(_chunk_nll, hidden[s:s + chunk], weight, bias, targets[s:s + chunk],
                                 use_reentrant=False) for s in range(0, hidden.shape[0], chunk)])


class _LinearCrossEntropySum(torch.autograd.Function):
    """Summed cross-entropy whose forward also computes d(sum)/d(inputs) chunk by chunk (as Liger's fused linear
    cross-entropy does): no (N, V) tensor is kept for backward, and nothing is projected twice."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk, dtype):  # type: ignore[override]
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        with torch.autocast(hidden.device.type, enabled=False):
            w, b = weight.to(dtype), None if bias is None else bias.to(dtype)
            for s in range(0, hidden.shape[0], chunk):
                h, t = hidden[s:s + chunk].to(dtype), targets[s:s + chunk]
                logp = F.log_softmax(_chunk_logits(h, w, b), dim=-1)  # (c, V)
                total += F.nll_loss(logp, t, reduction="sum")
                if not (need_h or need_w or need_b):
                    continue
                g = _softmax_minus_onehot(logp, t).to(dtype)  # d(sum of nll) / d(logits), (c, V)
                if grad_h is not None:
                    grad_h[s:s + chunk] = g @ w
                if grad_w is not None:
                    grad_w += (g.t() @ h).float()
                if grad_b is not None:
                    grad_b += g.float().sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        grad_h, grad_w, grad_b = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes
        return (None if grad_h is None else grad_h * grad_out.to(grad_h.dtype),
                None if grad_w is None else (grad_w * grad_out).to(w_dtype),
                None if grad_b is None else (grad_b * grad_out).to(b_dtype), None, None, None)


def _softmax_minus_onehot(logp: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """exp(log-probabilities) - one-hot(targets), in place of ``logp``; rows of ignored tokens are zero."""
    g = logp.exp_()
    keep = targets != IGNORE_INDEX
    rows = keep.nonzero().squeeze(1)
    g[rows, targets[rows]] -= 1
    g[~keep] = 0
    return g
