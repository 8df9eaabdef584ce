"""Extractive QA model: a pretrained body and a linear layer giving start and end logits for every token."""

from __future__ import annotations

import torch
from torch import nn

from tuneforge.tasks.backbone import token_states


class SpanExtractor(nn.Module):
    """``backbone`` → linear(H, 2) per token. Returns ``{"start_logits": (B, T), "end_logits": (B, T)}``."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.qa_outputs = nn.Linear(backbone.config.hidden_size, 2)
        nn.init.normal_(self.qa_outputs.weight, std=0.02)
        nn.init.zeros_(self.qa_outputs.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, **_: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = token_states(self.backbone, input_ids, attention_mask, token_type_ids)  # (B, T, H)
        start, end = self.qa_outputs(hidden).unbind(-1)  # (B, T) each
        return {"start_logits": start, "end_logits": end}
