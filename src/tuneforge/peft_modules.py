"""In-house PEFT modules: the bottleneck adapter (Houlsby / Pfeiffer) and the virtual-token stripper.

peft has no bottleneck adapter, and the ``adapters`` library pins ``transformers~=4.57`` (we run 5.x), so the
adapter lives here: a small residual MLP attached to the output projection of each transformer sub-layer by a
forward hook. The base model's own parameters and state-dict keys stay untouched; the adapter's weights sit
under ``<output module>.bottleneck.*`` so a checkpoint of trainable parameters carries them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tuneforge.training.freezing import transformer_layers

# Output projections, relative to one transformer block: BERT/MiniLM, Llama/Qwen/Mistral, GPT-2, DistilBERT, Phi.
ATTENTION_OUTPUTS = ("attention.output.dense", "self_attn.o_proj", "attn.c_proj", "attention.out_lin",
                     "self_attn.dense")
FFN_OUTPUTS = ("output.dense", "mlp.down_proj", "mlp.c_proj", "ffn.lin2", "mlp.fc2")
PLACEMENTS = {"pfeiffer": ("ffn",), "houlsby": ("attention", "ffn")}


class Bottleneck(nn.Module):
    """``h + up(act(down(h)))``; ``up`` starts at zero so the adapted model starts as the base model."""

    def __init__(self, hidden: int, size: int, dropout: float = 0.0):
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(size, hidden)
        nn.init.normal_(self.down.weight, std=0.02)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.dropout(self.act(self.down(h))))


def _run_bottleneck(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
    # Resolved through ``module`` (not a closure) so deep copies of the model call their own adapter.
    return module.bottleneck(output)


def _find(layer: nn.Module, candidates: tuple[str, ...], what: str) -> nn.Module:
    for name in candidates:
        try:
            return layer.get_submodule(name)
        except AttributeError:
            continue
    raise ValueError(f"cannot find the {what} output projection in {type(layer).__name__}; tried {candidates}")


def add_bottleneck_adapters(backbone: nn.Module, size: int, kind: str = "pfeiffer", dropout: float = 0.0) -> int:
    """Freeze ``backbone`` and attach bottleneck adapters in every transformer block. Returns how many.

    ``pfeiffer``: after the feed-forward output only. ``houlsby``: after the attention output and the
    feed-forward output, with the LayerNorms trainable too (as in Houlsby et al., 2019).

    >>> # n = add_bottleneck_adapters(bert, size=64, kind="houlsby")  # 2 per layer
    """
    if kind not in PLACEMENTS:
        raise ValueError(f"unknown adapter kind {kind!r}; known: {', '.join(PLACEMENTS)}")
    backbone.requires_grad_(False)
    hidden = backbone.config.hidden_size
    count = 0
    for layer in transformer_layers(backbone):
        for place in PLACEMENTS[kind]:
            target = _find(layer, ATTENTION_OUTPUTS if place == "attention" else FFN_OUTPUTS, place)
            target.add_module("bottleneck", Bottleneck(hidden, size, dropout))
            target.register_forward_hook(_run_bottleneck)
            count += 1
    if kind == "houlsby":
        for name, module in backbone.named_modules():
            if isinstance(module, nn.LayerNorm) or name.endswith(("layernorm", "layer_norm", "LayerNorm")):
                module.requires_grad_(True)
    return count


class VirtualTokenStripper(nn.Module):
    """Prompt tuning and P-tuning prepend ``n`` virtual tokens to the input embeddings, so the body's outputs are
    ``n`` positions longer than the ``attention_mask`` the task head holds. This drops those positions again, so
    every head (mean/cls pooling, token tagging, span heads, LM logits) sees states aligned with its own input.

    peft already extends the attention mask with ones for the virtual tokens. peft drops ``token_type_ids`` for
    prompt learning (BERT then uses segment 0 everywhere); we drop them here so that happens once, silently.
    """

    def __init__(self, peft_model: nn.Module, num_virtual_tokens: int):
        super().__init__()
        self.peft_model = peft_model
        self.num_virtual_tokens = num_virtual_tokens

    def __getattr__(self, name: str) -> Any:
        """Everything else is the peft model's (``generate``, ``active_peft_config``, ``get_input_embeddings``,
        ``config``, ...), so task heads that know peft keep working."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("peft_model")
            if inner is None:  # during __init__ or unpickling
                raise
            return getattr(inner, name)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **kwargs: Any) -> Any:
        out = self.peft_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        n, length = self.num_virtual_tokens, input_ids.shape[1]
        for key in ("last_hidden_state", "logits"):
            value = out.get(key)
            if value is not None and value.shape[1] == length + n:
                out[key] = value[:, n:]  # (B, n + T, ...) → (B, T, ...)
        if out.get("hidden_states") is not None:
            out["hidden_states"] = tuple(h[:, n:] if h.shape[1] == length + n else h for h in out["hidden_states"])
        return out

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> Any:
        """Grow the vocabulary (a task's new special tokens); peft keeps its own handle on the embedding table,
        which must follow, or prompt tuning would embed the new ids with the old, smaller table."""
        out = self.peft_model.base_model.resize_token_embeddings(*args, **kwargs)
        self.peft_model.word_embeddings = self.peft_model.base_model.get_input_embeddings()
        return out
