"""Running a pretrained body inside a task head: token states from ids, mask and optional segment ids."""

from __future__ import annotations

import torch
from torch import nn


def token_states(backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T) ids → (B, T, H) last hidden states. Segment ids are passed only when given (decoders have none)."""
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        kwargs["token_type_ids"] = token_type_ids
    return backbone(**kwargs).last_hidden_state
