"""Train only the word-embedding rows that the training data uses (``train.active_vocab``).

Full fine-tuning gives the word-embedding matrix (MiniLM: 30522 x 384, half of the model's parameters) a dense
gradient every step, though a batch touches a few hundred rows and all of SST-2's training set 11,572 (38%). That
dense gradient is zero-filled, scattered into, normed and clipped, and AdamW reads and writes seven matrices of its
size, every step: 17% of a batch-32 SST-2 step on 2 cores (159 ms a step vs 132 with frozen embeddings).

A row that no training token uses never gets a gradient, so its AdamW moments stay zero and AdamW's only effect on
it is the decoupled weight decay, ``w *= 1 - lr_t * weight_decay``, every step. Here the optimizer trains a compact
``[k, d]`` parameter holding the ``k`` used rows (plus the padding row), and the decay of the other rows is kept as
one running product and applied when the whole matrix is next read: by an evaluation forward pass, ``state_dict``
(checkpoints) or the end of training. Used rows get exactly dense AdamW's update (elementwise, same gradients);
unused rows differ from a dense run only by the fp32 rounding of one product instead of one per step (tested). The
state dict keeps the full matrix under its usual name, so checkpoints, exports and exact resume are unchanged.

Used only where it is exact and safe: AdamW, full fine-tuning with trainable, untied word embeddings, no weight
average (``ema_decay``) and no extra loss terms that read the weights. Otherwise training is dense, as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from tuneforge.training.freezing import input_embeddings, tied_elsewhere


class ActiveRowsEmbedding(nn.Module):
    """Stands in for an ``nn.Embedding`` during training; ``weight`` is the compact ``[k, d]`` trainable part."""

    def __init__(self, embedding: nn.Embedding, active_ids: torch.Tensor):
        super().__init__()
        object.__setattr__(self, "_inner", embedding)  # not a submodule: its full weight is not a parameter here
        full = embedding.weight
        self.register_buffer("active_ids", active_ids.to(full.device), persistent=False)
        remap = torch.full((full.shape[0],), -1, dtype=torch.long, device=full.device)
        remap[self.active_ids] = torch.arange(len(active_ids), device=full.device)
        self.register_buffer("remap", remap, persistent=False)
        self.weight = nn.Parameter(full.detach()[self.active_ids].clone())
        pad = embedding.padding_idx
        self.local_padding_idx = int(remap[pad]) if pad is not None and int(remap[pad]) >= 0 else None
        self.pending_decay = 1.0  # product of (1 - lr_t * wd) not yet applied to the unused rows
        self._synced_version = -1
        self._group: dict | None = None  # the optimizer param group holding ``weight``
        full.requires_grad_(False)

    @property
    def inner(self) -> nn.Embedding:
        return self._inner

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            local = self.remap[input_ids]
            if input_ids.numel() and int(local.min()) < 0:
                unknown = sorted(set(input_ids[local < 0].tolist()))[:5]
                raise RuntimeError(f"train.active_vocab: token ids {unknown} are not in the training data this "
                                   f"embedding was built from; set train.active_vocab=false")
            return F.embedding(local, self.weight, self.local_padding_idx)
        # install() only wraps plain embeddings (no max_norm, sparse or scale_grad_by_freq)
        return F.embedding(input_ids, self.full_weight(), self._inner.padding_idx)

    def after_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Record this step's decoupled weight decay of the unused rows (call after ``optimizer.step()``, before
        the scheduler moves the lr)."""
        if self._group is None:  # found once: the optimizer's groups do not change during fit
            self._group = next(g for g in optimizer.param_groups if any(p is self.weight for p in g["params"]))
        self.pending_decay *= 1.0 - float(self._group["lr"]) * float(self._group["weight_decay"])

    @torch.no_grad()
    def full_weight(self) -> torch.Tensor:
        """The whole matrix, current: pending decay applied to unused rows, trained rows copied in."""
        full = self._inner.weight
        if self.pending_decay != 1.0:
            full.mul_(self.pending_decay)  # used rows are overwritten next
            self.pending_decay = 1.0
            self._synced_version = -1
        if self._synced_version != self.weight._version:
            full.index_copy_(0, self.active_ids, self.weight.detach().to(full.dtype))
            self._synced_version = self.weight._version
        return full

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        full = self.full_weight()
        destination[prefix + "weight"] = full if keep_vars else full.detach()

    def _load_from_state_dict(self, state_dict: dict, prefix: str, local_metadata: Any, strict: bool,
                              missing_keys: list[str], unexpected_keys: list[str], error_msgs: list[str]) -> None:
        key = prefix + "weight"
        if key not in state_dict:
            if strict:
                missing_keys.append(key)
            return
        value = state_dict[key]
        full = self._inner.weight
        if tuple(value.shape) != tuple(full.shape):
            error_msgs.append(f"size mismatch for {key}: checkpoint {tuple(value.shape)}, model {tuple(full.shape)}")
            return
        with torch.no_grad():
            full.copy_(value)
            self.weight.copy_(full[self.active_ids])
        self.pending_decay = 1.0
        self._synced_version = self.weight._version

    def extra_repr(self) -> str:
        return f"active rows {self.weight.shape[0]} of {self._inner.weight.shape[0]}, dim {self.weight.shape[1]}"


def used_token_ids(features: Sequence[dict[str, Any]], extra: Sequence[int | None] = ()) -> torch.Tensor | None:
    """Sorted unique token ids over ``features[*]["input_ids"]`` and any other ``*input_ids`` key (the item texts of
    a bi-encoder; a list of id lists is flattened) plus ``extra``; None when a feature has no ``input_ids``."""
    seen: set[int] = set()
    for f in features:
        if f.get("input_ids") is None:
            return None
        for key, ids in f.items():
            if key.endswith("input_ids"):
                ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
                seen.update([i for row in ids for i in row] if ids and isinstance(ids[0], list) else ids)
    seen.update(i for i in extra if i is not None)
    return torch.tensor(sorted(seen), dtype=torch.long)


def install(model: nn.Module, train: Sequence[dict[str, Any]], pad_ids: Sequence[int | None] = (),
            min_saving: float = 0.1) -> ActiveRowsEmbedding | None:
    """Swap ``model.backbone``'s word embeddings for an :class:`ActiveRowsEmbedding` over the ids ``train`` uses.

    Returns None (and changes nothing) when it does not apply: no HF body or plain trainable ``nn.Embedding``,
    embeddings tied to an output layer, features without ``input_ids``, or fewer than ``min_saving`` of the rows
    unused."""
    backbone = getattr(model, "backbone", None)
    emb = input_embeddings(backbone) if backbone is not None else None
    if (type(emb) is not nn.Embedding or not emb.weight.requires_grad or emb.max_norm is not None
            or emb.sparse or emb.scale_grad_by_freq or tied_elsewhere(model, emb.weight)
            or not hasattr(backbone, "set_input_embeddings")):
        return None
    ids = used_token_ids(train, [*pad_ids, emb.padding_idx])
    vocab = emb.weight.shape[0]
    if ids is None or not len(ids) or int(ids.min()) < 0 or int(ids.max()) >= vocab or len(ids) > vocab * (
            1 - min_saving):
        return None
    wrapper = ActiveRowsEmbedding(emb, ids)
    backbone.set_input_embeddings(wrapper)
    return wrapper


def uninstall(model: nn.Module, wrapper: ActiveRowsEmbedding) -> nn.Embedding:
    """Put the original embedding back, current (decay applied, trained rows copied in) and trainable again."""
    inner = wrapper.inner
    wrapper.full_weight()
    inner.weight.requires_grad_(True)
    model.backbone.set_input_embeddings(inner)
    return inner
