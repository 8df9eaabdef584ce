"""Token classification model: a pretrained body, dropout and a linear layer over every token state."""

from __future__ import annotations

import torch
from torch import nn

from tuneforge.tasks.backbone import token_states


class TokenClassifier(nn.Module):
    """``backbone`` (an ``AutoModel``) → dropout → linear per token. Returns ``{"logits": (B, T, num_tags)}``."""

    def __init__(self, backbone: nn.Module, num_tags: int, dropout: float = 0.1):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(backbone.config.hidden_size, num_tags)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, **_: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = token_states(self.backbone, input_ids, attention_mask, token_type_ids)  # (B, T, H)
        return {"logits": self.classifier(self.dropout(hidden))}  # (B, T, num_tags)
