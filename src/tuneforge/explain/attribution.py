"""Token attributions for one input: Integrated Gradients on the word embeddings (captum) with its completeness
check, and word occlusion as a model-agnostic cross-check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from tuneforge.explain.errors import ExplainError

# (input_ids, attention_mask, token_type_ids) -> (B,) the scalar being explained, e.g. one label's logit
Target = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


@dataclass
class IGResult:
    token_attributions: list[float]  # per input token, summed over the embedding dimension
    total: float  # sum of the attributions
    difference: float  # F(input) - F(baseline): what the attributions should add up to
    steps: int

    @property
    def completeness_error(self) -> float:
        """|sum of attributions - (F(x) - F(baseline))| relative to |F(x) - F(baseline)|."""
        return abs(self.total - self.difference) / max(abs(self.difference), 1e-12)


def word_embeddings(model: nn.Module) -> nn.Embedding:
    """The token-embedding table inside ``model`` (IG interpolates only these, not positions)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and name.endswith(("word_embeddings", "embed_tokens", "wte")):
            return module
    found = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    if not found:
        raise ExplainError("no nn.Embedding in the model: token attributions need an embedding layer")
    return max(found, key=lambda m: m.num_embeddings)  # the vocabulary is the largest table


def baseline_ids(input_ids: torch.Tensor, special: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The usual IG reference for text: special tokens kept in place, every other token replaced by padding."""
    return torch.where(special.bool(), input_ids, torch.full_like(input_ids, pad_id))


def integrated_gradients(target: Target, model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         token_type_ids: torch.Tensor | None, baseline: torch.Tensor, steps: int = 50,
                         internal_batch_size: int = 25) -> IGResult:
    """IG (Sundararajan et al., 2017) of ``target`` w.r.t. the word embeddings of one input (shape (1, T)), along
    the straight line from ``baseline``'s embeddings, with Gauss-Legendre quadrature (captum's default, which
    meets the completeness axiom far more tightly than a Riemann sum at the same step count)."""
    try:
        from captum.attr import LayerIntegratedGradients
    except ImportError:
        raise ExplainError("Integrated Gradients needs captum: pip install 'tuneforge[explain]'") from None
    was_training = model.training
    model.eval()
    lig = LayerIntegratedGradients(lambda ids, mask, tti: target(ids, mask, tti), word_embeddings(model))
    attrs, delta = lig.attribute(inputs=input_ids, baselines=baseline, additional_forward_args=(
        attention_mask, token_type_ids), n_steps=steps, internal_batch_size=internal_batch_size,
        return_convergence_delta=True)
    with torch.no_grad():
        f_x = float(target(input_ids, attention_mask, token_type_ids)[0])
        f_b = float(target(baseline, attention_mask, token_type_ids)[0])
    model.train(was_training)
    per_token = attrs.sum(-1)[0].double()  # (T,)
    # captum's delta = sum - (f_x - f_b); recomputed here so the reported difference is the model's own
    total = float(per_token.sum())
    if abs((total - (f_x - f_b)) - float(delta[0])) > 1e-3 * max(1.0, abs(f_x - f_b)):
        raise ExplainError("captum's convergence delta disagrees with a direct evaluation of the target")
    return IGResult(per_token.tolist(), total, f_x - f_b, steps)


def occlusion(target: Target, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              token_type_ids: torch.Tensor | None, groups: list[list[int]], fill_id: int,
              batch_size: int = 64) -> list[float]:
    """For each group of token positions (a word), ``target(input) - target(input with the group set to
    fill_id)``: how much the score falls without that word. Needs only forward passes."""
    with torch.no_grad():
        full = float(target(input_ids, attention_mask, token_type_ids)[0])
        out: list[float] = []
        for s in range(0, len(groups), batch_size):
            chunk = groups[s:s + batch_size]
            ids = input_ids.repeat(len(chunk), 1)  # (G, T)
            for row, positions in enumerate(chunk):
                ids[row, positions] = fill_id
            mask = attention_mask.repeat(len(chunk), 1)
            tti = token_type_ids.repeat(len(chunk), 1) if token_type_ids is not None else None
            out.extend(full - float(v) for v in target(ids, mask, tti))
    return out
