"""The bi-encoder: one shared body embeds the user's history text and the item texts (mean pooling, unit length);
a user-item score is their cosine similarity, so retrieval over the catalogue is a matrix product."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tuneforge.tasks.backbone import token_states
from tuneforge.tasks.classification.head import pool


class BiEncoder(nn.Module):
    """``forward`` → ``{"user": (B, H)}`` and, with item ids, ``{"items": (M, H)}``; both L2-normalised."""

    def __init__(self, backbone: nn.Module, pooling: str = "mean"):
        super().__init__()
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None  # unused: mean pooling; an unused trainable module breaks DDP's reduction
        self.backbone = backbone
        self.pooling = pooling

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = token_states(self.backbone, input_ids, attention_mask)  # (B, T, H)
        return F.normalize(pool(hidden, attention_mask, self.pooling).float(), dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                item_input_ids: torch.Tensor | None = None, item_attention_mask: torch.Tensor | None = None,
                **_: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"user": self.embed(input_ids, attention_mask)}
        if item_input_ids is not None:
            out["items"] = self.embed(item_input_ids, item_attention_mask)
        return out


def in_batch_loss(user: torch.Tensor, items: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None,
                  temperature: float) -> torch.Tensor:
    """Per-user softmax cross-entropy over every item of the batch (B, M), the user's own target at ``labels``.

    ``mask`` (B, M) marks other users' targets and sampled negatives that are in fact this user's positives:
    they are left out of the softmax instead of being pushed down (false negatives).
    >>> u = F.normalize(torch.randn(2, 4), dim=-1); in_batch_loss(u, u, torch.arange(2), None, 0.05).shape
    torch.Size([2])
    """
    logits = user @ items.T / temperature  # (B, M)
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, labels, reduction="none")
