"""Label scoring with a causal LM: log p(label answer | prompt) for every label; training is plain SFT."""

from __future__ import annotations

import torch
from torch import nn

from tuneforge.tasks.generation.data import IGNORE
from tuneforge.tasks.generation.head import answer_nll


class LabelScorer(nn.Module):
    """Train mode: the answer-token loss (``loss_sum``, ``loss_count``). Eval mode: ``logits`` (B, L), the summed
    log-likelihood of each label's answer tokens after each prompt; the best label is the most likely one."""

    def __init__(self, backbone: nn.Module, candidates: list[list[int]], pad_id: int, chunk_rows: int = 256):
        super().__init__()
        self.backbone = backbone
        width = max(len(c) for c in candidates)
        ids = torch.full((len(candidates), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(candidates), width), dtype=torch.long)
        for i, c in enumerate(candidates):
            ids[i, :len(c)] = torch.tensor(c)
            mask[i, :len(c)] = 1
        self.register_buffer("cand_ids", ids, persistent=False)  # (L, C)
        self.register_buffer("cand_mask", mask, persistent=False)  # (L, C)
        self.chunk_rows = chunk_rows

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_ids: torch.Tensor,
                position_ids: torch.Tensor | None = None, segment_ids: torch.Tensor | None = None,
                prompt_ids: torch.Tensor | None = None, prompt_mask: torch.Tensor | None = None,
                **_: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            nll, keep = answer_nll(self.backbone, input_ids, attention_mask, target_ids, position_ids, segment_ids)
            return {"loss_sum": nll.sum(), "loss_count": keep.sum().float()}
        return {"logits": self.label_scores(prompt_ids, prompt_mask)}

    def label_scores(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """(B, P) left-padded prompts → (B, L) summed log-probabilities of each label's answer tokens."""
        b, p = prompt_ids.shape
        n_labels, c = self.cand_ids.shape
        ids = torch.cat([prompt_ids[:, None].expand(b, n_labels, p), self.cand_ids[None].expand(b, n_labels, c)], -1)
        mask = torch.cat([prompt_mask[:, None].expand(b, n_labels, p),
                          self.cand_mask[None].expand(b, n_labels, c)], -1)
        ids, mask = ids.reshape(b * n_labels, p + c), mask.reshape(b * n_labels, p + c)  # (B·L, P+C)
        targets = torch.where(mask.bool(), ids, torch.full_like(ids, IGNORE))
        targets[:, :p] = IGNORE  # score the answer only
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens count from 0
        scores = []
        for s in range(0, ids.shape[0], self.chunk_rows):
            part = slice(s, s + self.chunk_rows)
            nll, keep = answer_nll(self.backbone, ids[part], mask[part], targets[part], positions[part])
            dense = torch.zeros(keep.shape, device=nll.device)  # (rows, P+C-1)
            dense[keep] = -nll
            scores.append(dense.sum(-1))
        return torch.cat(scores).view(b, n_labels)
