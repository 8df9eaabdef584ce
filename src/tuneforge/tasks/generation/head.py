"""The causal-LM wrapper: answer-token losses (packed rows kept apart by a block-diagonal mask) and decoding."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tuneforge.tasks.generation.data import IGNORE
from tuneforge.training.chunked_ce import linear_cross_entropy


def block_causal_mask(segment_ids: torch.Tensor, attn_implementation: str) -> torch.Tensor:
    """(R, T) example ids → (R, 1, T, T) mask: a token sees earlier tokens of its own example only.

    sdpa takes booleans (True = attend); eager adds the mask to the scores, so it gets 0 / a large negative.
    Padding (id -1) sees earlier padding, so no row of the mask is empty.
    """
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (R, T, T)
    t = segment_ids.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=segment_ids.device).tril()
    allowed = (same & causal)[:, None]  # (R, 1, T, T)
    if attn_implementation == "eager":
        return torch.zeros(allowed.shape, device=allowed.device).masked_fill(~allowed, torch.finfo(torch.float32).min)
    return allowed


def decoding_kwargs(gen: Any) -> dict[str, Any]:
    """The ``generation`` config section → ``generate()`` arguments (sampling knobs only when sampling)."""
    kwargs: dict[str, Any] = {"max_new_tokens": gen.max_new_tokens, "num_beams": gen.num_beams,
                              "do_sample": gen.do_sample}
    if gen.do_sample:
        kwargs.update(temperature=gen.temperature, top_p=gen.top_p)
    return kwargs


def unwrap_lm(backbone: nn.Module) -> nn.Module:
    """The transformers model under a PEFT wrapper (LoRA layers are injected into it in place)."""
    return backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone


def is_prompt_learning(backbone: nn.Module) -> bool:
    cfg = getattr(backbone, "active_peft_config", None)
    return bool(getattr(cfg, "is_prompt_learning", False))


def answer_nll(backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_ids: torch.Tensor,
               position_ids: torch.Tensor | None = None, segment_ids: torch.Tensor | None = None,
               reduction: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """(nll of every answer token (N,), or their sum with ``reduction="sum"``; the (R, T-1) map of where they are:
    column t predicts token t+1).

    The vocabulary projection runs only at answer positions, in chunks of tokens (training/chunked_ce.py): never over
    the whole (R, T, V) logits, nor even the (N, V) logits of all answer tokens at once. ``"none"`` is for scoring
    without gradients; training takes ``"sum"``.
    """
    keep = target_ids[:, 1:] != IGNORE  # (R, T-1)
    targets = target_ids[:, 1:][keep]  # (N,)
    if is_prompt_learning(backbone):  # virtual tokens are prepended inside PEFT's forward, which returns all logits
        if segment_ids is not None:
            raise ValueError("generation.packing does not work with prompt-learning PEFT methods")
        logits = backbone(input_ids=input_ids, attention_mask=attention_mask).logits
        logits = logits[:, -input_ids.shape[1]:-1][keep]  # (N, V)
        return F.cross_entropy(logits.float(), targets, reduction=reduction), keep
    lm = unwrap_lm(backbone)
    mask = attention_mask
    if segment_ids is not None:
        mask = block_causal_mask(segment_ids, lm.config._attn_implementation)
    hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=mask, position_ids=position_ids,
                              use_cache=False).last_hidden_state  # (R, T, H)
    head = lm.get_output_embeddings()
    nll = linear_cross_entropy(hidden[:, :-1][keep], head.weight, targets, bias=head.bias, reduction=reduction)
    return nll, keep


class CausalLM(nn.Module):
    """``backbone`` (an ``AutoModelForCausalLM``, maybe PEFT-wrapped) as a task model.

    Training returns ``{"loss_sum", "loss_count"}`` over answer tokens. Eval mode returns ``token_nll`` (R, T) of
    the reference answers and, when prompts are given, the generated ``sequences`` (B, N) of new tokens.
    """

    def __init__(self, backbone: nn.Module, decoding: dict[str, Any], stop_ids: list[int], pad_id: int):
        super().__init__()
        self.backbone = backbone
        self.decoding = dict(decoding)
        self.stop_ids = list(stop_ids)
        self.pad_id = pad_id

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, target_ids: torch.Tensor,
                position_ids: torch.Tensor | None = None, segment_ids: torch.Tensor | None = None,
                prompt_ids: torch.Tensor | None = None, prompt_mask: torch.Tensor | None = None,
                **_: torch.Tensor) -> dict[str, torch.Tensor]:
        token_nll = torch.zeros(input_ids.shape, device=input_ids.device)  # (R, T): token t's nll at column t
        if self.training or (target_ids[:, 1:] != IGNORE).any():  # prediction inputs have no answer to score
            nll, keep = answer_nll(self.backbone, input_ids, attention_mask, target_ids, position_ids,
                                   segment_ids, reduction="sum" if self.training else "none")
            if self.training:
                return {"loss_sum": nll, "loss_count": keep.sum().float()}
            token_nll[:, 1:][keep] = nll
        out = {"token_nll": token_nll}
        if prompt_ids is not None:
            out["sequences"] = self.generate(prompt_ids, prompt_mask)
        return out

    @torch.no_grad()
    def generate(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None = None,
                 streamer: Any = None, **overrides: Any) -> torch.Tensor:
        """New tokens only, (B, N), padded with ``pad_id`` after each stop token."""
        kwargs = {**self.decoding, **overrides}
        out = self.backbone.generate(input_ids=prompt_ids, attention_mask=prompt_mask, eos_token_id=self.stop_ids,
                                     pad_token_id=self.pad_id, streamer=streamer, **kwargs)
        return out[:, prompt_ids.shape[1]:]
