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
        self.candidates = [list(c) for c in candidates]
        self.pad_id = pad_id
        self.chunk_rows = chunk_rows

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_ids: torch.Tensor,
                position_ids: torch.Tensor | None = None, segment_ids: torch.Tensor | None = None,
                prompt_ids: torch.Tensor | None = None, prompt_mask: torch.Tensor | None = None,
                **_: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            loss, keep = answer_nll(self.backbone, input_ids, attention_mask, target_ids, position_ids, segment_ids,
                                    reduction="sum")
            return {"loss_sum": loss, "loss_count": keep.sum().float()}
        return {"logits": self.label_scores(prompt_ids, prompt_mask)}

    def label_scores(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
        """(B, P) left-padded prompts → (B, L) summed log-probabilities of each label's answer tokens.

        Every (prompt, label) pair becomes one right-padded row, laid out exactly like a training row (positions
        from 0, so prompt-learning PEFT methods, which ignore position ids, score correctly too).
        """
        prompts = [row[mask.bool()].tolist() for row, mask in zip(prompt_ids.cpu(), prompt_mask.cpu())]
        pairs = [(p, c) for p in prompts for c in self.candidates]
        scores = [self._score_rows(pairs[s:s + self.chunk_rows], prompt_ids.device)
                  for s in range(0, len(pairs), self.chunk_rows)]
        return torch.cat(scores).view(len(prompts), len(self.candidates))

    def _score_rows(self, pairs: list[tuple[list[int], list[int]]], device: torch.device) -> torch.Tensor:
        width = max(len(p) + len(c) for p, c in pairs)
        ids = torch.full((len(pairs), width), self.pad_id, dtype=torch.long)
        targets = torch.full((len(pairs), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(pairs), width), dtype=torch.long)
        for i, (p, c) in enumerate(pairs):
            ids[i, :len(p) + len(c)] = torch.tensor(p + c)
            targets[i, len(p):len(p) + len(c)] = torch.tensor(c)  # score the answer only
            mask[i, :len(p) + len(c)] = 1
        nll, keep = answer_nll(self.backbone, ids.to(device), mask.to(device), targets.to(device))
        dense = torch.zeros(keep.shape, device=nll.device)  # (rows, T-1)
        dense[keep] = -nll
        return dense.sum(-1)
