"""Classification model: a pretrained body, a pooling step and a linear layer over the pooled vector.

Pooling ``pooler`` keeps the checkpoint's own pretrained pooler (BERT: dense + tanh on ``[CLS]``), exactly as
``AutoModelForSequenceClassification`` does. It stays inside the body (``backbone.pooler``), so freezing the body
freezes it and exports of the body carry it. ``mean_pooler`` (the ``auto`` choice for encoders that have a pooler)
concatenates the mean of the token states and that pooler's output."""

from __future__ import annotations

import torch
from torch import nn

from tuneforge.tasks.backbone import token_states


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """(B, T, H) token states → (B, H). ``mean`` over real tokens, ``cls`` = first token, ``last`` = last real one."""
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    if how == "cls":
        return hidden[:, 0]
    if how == "last":
        last = mask.long().sum(1) - 1  # right padding: index of the last real token
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    raise ValueError(f"unknown pooling {how!r}")


def pool_states(module: nn.Module, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``module.pooling`` applied to (B, T, H) states, through ``module.backbone.pooler`` for ``pooler`` and
    ``mean_pooler`` ((B, 2H): the mean over real tokens, then the pooler's output)."""
    if module.pooling == "pooler":
        return module.backbone.pooler(hidden)  # BertPooler: tanh(dense(hidden[:, 0]))
    if module.pooling == "mean_pooler":
        return torch.cat([pool(hidden, mask, "mean"), module.backbone.pooler(hidden)], dim=-1)
    return pool(hidden, mask, module.pooling)


class SequenceClassifier(nn.Module):
    """``backbone`` (an ``AutoModel``) → pool → dropout → linear. Returns ``{"logits": (B, num_labels)}``."""

    def __init__(self, backbone: nn.Module, num_labels: int, pooling: str = "mean", dropout: float = 0.1):
        super().__init__()
        if pooling in ("pooler", "mean_pooler"):
            if getattr(backbone, "pooler", None) is None:
                raise ValueError(f"head.pooling={pooling} needs a body with a pretrained pooler (BERT/RoBERTa-style); "
                                 f"{type(backbone).__name__} has none. Use mean, cls or last")
        elif getattr(backbone, "pooler", None) is not None:
            # the pooler is unused with mean/cls/last pooling; an unused trainable module also breaks DDP's
            # gradient reduction, so drop it.
            backbone.pooler = None
        self.backbone = backbone
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        width = backbone.config.hidden_size * (2 if pooling == "mean_pooler" else 1)
        self.classifier = nn.Linear(width, num_labels)
        nn.init.normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        hidden = token_states(self.backbone, input_ids, attention_mask, token_type_ids)  # (B, T, H)
        return pool_states(self, hidden, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, **_: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.features(input_ids, attention_mask, token_type_ids)
        return {"logits": self.classifier(self.dropout(pooled))}


def default_pooling(model_kind: str, requested: str, backbone: nn.Module | None = None) -> str:
    """``auto``: ``last`` for decoders; for encoders ``mean_pooler`` when ``backbone`` has a pretrained pooler, else
    ``mean``. Mean pooling alone is steady on small sets but ends lower on large ones, the pooler alone the other way
    round; the two concatenated kept both (README, "Tasks and methods")."""
    if requested != "auto":
        return requested
    if model_kind == "decoder":
        return "last"
    return "mean_pooler" if getattr(backbone, "pooler", None) is not None else "mean"
