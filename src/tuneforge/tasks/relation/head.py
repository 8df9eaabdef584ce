"""Relation model: a pretrained body; the states at the two entity-start markers, concatenated, feed a linear layer."""

from __future__ import annotations

import torch
from torch import nn

from tuneforge.tasks.backbone import token_states


def marker_states(hidden: torch.Tensor, e1_pos: torch.Tensor, e2_pos: torch.Tensor) -> torch.Tensor:
    """(B, T, H) token states and (B,) marker positions → (B, 2H): ``[h[e1_pos]; h[e2_pos]]``."""
    rows = torch.arange(hidden.size(0), device=hidden.device)
    return torch.cat([hidden[rows, e1_pos.to(hidden.device)], hidden[rows, e2_pos.to(hidden.device)]], dim=-1)


class RelationClassifier(nn.Module):
    """``backbone`` → states at ``[E1]`` and ``[E2]`` → dropout → linear. Returns ``{"logits": (B, num_labels)}``."""

    def __init__(self, backbone: nn.Module, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * backbone.config.hidden_size, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, e1_pos: torch.Tensor,
                e2_pos: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                **_: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = token_states(self.backbone, input_ids, attention_mask, token_type_ids)  # (B, T, H)
        return {"logits": self.classifier(self.dropout(marker_states(hidden, e1_pos, e2_pos)))}


def add_marker_embeddings(backbone: nn.Module, vocab_size: int) -> None:
    """Grow the input embeddings to the tokenizer's size (new rows for the markers); a no-op when they fit.

    The new rows are the mean embedding plus noise from a fixed seed, never the global RNG: under freezing
    policies or PEFT they are not trained, hence not saved, and serving must rebuild exactly the same rows.
    """
    old = backbone.get_input_embeddings().num_embeddings
    if old >= vocab_size:
        return
    backbone.resize_token_embeddings(vocab_size, mean_resizing=False)
    weight = backbone.get_input_embeddings().weight
    with torch.no_grad():
        base = weight[:old].float()
        noise = torch.randn(vocab_size - old, weight.size(1), generator=torch.Generator().manual_seed(0))
        weight[old:] = (base.mean(0) + noise * base.std(0)).to(weight.dtype)
