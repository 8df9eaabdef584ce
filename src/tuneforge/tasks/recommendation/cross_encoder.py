"""The cross-encoder re-ranker: one body reads (user history text, item text) together and scores the pair; tuned
with a softmax over each training target and hard negatives from the bi-encoder's own top-K, it re-orders that
top-K at evaluation and serving time.

Training goes through the shared loop (``training.loop.fit``) with ``PairTask`` as its task: a feature is one group
of pairs (a user's target first, then its negatives; or a user's K candidates at scoring time).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tuneforge.io_utils import atomic_dir
from tuneforge.registry import Registry
from tuneforge.tasks.backbone import token_states
from tuneforge.tasks.classification.head import pool

WEIGHTS, META = "model.safetensors", "cross_encoder.json"
RERANKERS: Registry[str] = Registry("re-ranker")  # name → what re-orders the bi-encoder's top rerank_k
RERANKERS.register("none", "the bi-encoder's order")
RERANKERS.register("cross_encoder", "a cross-encoder over (user text, item text) pairs")


class CrossEncoder(nn.Module):
    """``forward`` → ``{"scores": (P,)}``, one relevance score per (user text, item text) pair."""

    def __init__(self, backbone: nn.Module, pooling: str = "mean"):
        super().__init__()
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None  # mean pooling: the pooler would be an unused trainable module
        self.backbone, self.pooling = backbone, pooling
        self.score = nn.Linear(backbone.config.hidden_size, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None, **_: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = token_states(self.backbone, input_ids, attention_mask, token_type_ids)  # (P, T, H)
        return {"scores": self.score(pool(hidden, attention_mask, self.pooling)).float().squeeze(-1)}


def pair_group(top: Sequence[int], target: int, positives: set[int], n: int, rng: np.random.Generator) -> list[int]:
    """``[target, up to n negatives]``: the negatives a seeded uniform draw from the bi-encoder's ``top`` rows,
    never one of the user's ``positives`` (nor the target).

    >>> pair_group([5, 6, 7, 8], 2, {6}, 2, np.random.default_rng(0))  # doctest: +SKIP
    [2, 8, 5]
    """
    allowed = [r for r in top if r not in positives and r != target]
    if not allowed:
        return [target]
    picked = rng.choice(len(allowed), size=min(n, len(allowed)), replace=False)
    return [target, *(allowed[i] for i in sorted(picked.tolist()))]


def reorder_top(top: Sequence[int], scores: Sequence[float]) -> list[int]:
    """``top`` sorted by ``scores`` (highest first; ties keep the bi-encoder's order).

    >>> reorder_top([7, 3, 9], [0.1, 0.5, 0.1])
    [3, 7, 9]
    """
    return [top[i] for i in np.lexsort((np.arange(len(top)), -np.asarray(scores, dtype=np.float64)))]


class PairTask:
    """The task the training loop and ``predict_features`` see: groups of pairs, a softmax over each group with its
    first pair (the target) as the answer, and the group-wise MRR of the target as the validation metric."""

    name = "cross_encoder"
    metric_mode = "max"
    main_metric = "mrr"
    needs_lm_head = False
    near_ties = None

    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def encode_group(self, user_text: str, item_texts: Sequence[str]) -> dict[str, Any]:
        # longest_first: the longer text loses tokens first; that is the history (most recent first, so its oldest
        # titles go) unless an item's text is longer, and then both keep about half
        enc = self.tokenizer([user_text] * len(item_texts), list(item_texts), truncation="longest_first",
                             max_length=self.max_length)
        feature = {"pairs": enc["input_ids"], "length": max(len(ids) for ids in enc["input_ids"])}
        if "token_type_ids" in enc:
            feature["types"] = enc["token_type_ids"]
        return feature

    def collate(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [ids for f in features for ids in f["pairs"]]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)], mask[i, :len(r)] = torch.tensor(r, dtype=torch.long), 1
        batch = {"input_ids": ids, "attention_mask": mask,
                 "group_sizes": torch.tensor([len(f["pairs"]) for f in features])}
        if "types" in features[0]:
            types = torch.zeros_like(ids)
            for i, t in enumerate(t for f in features for t in f["types"]):
                types[i, :len(t)] = torch.tensor(t, dtype=torch.long)
            batch["token_type_ids"] = types
        return batch

    def _groups(self, scores: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """(P,) pair scores → (G, longest group) with -inf after each group's end."""
        sizes_l = sizes.tolist()
        out = torch.full((len(sizes_l), max(sizes_l)), float("-inf"), device=scores.device)
        for g, part in enumerate(torch.split(scores.float(), sizes_l)):
            out[g, :len(part)] = part
        return out

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
        logits = self._groups(outputs["scores"], batch["group_sizes"])
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, target, reduction="sum"), torch.tensor(float(logits.shape[0]))

    def loss_items(self, batch: dict[str, torch.Tensor]) -> float:
        return float(batch["group_sizes"].numel())

    def predict(self, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> list[list[float]]:
        sizes = batch["group_sizes"].tolist()
        return [part.tolist() for part in torch.split(outputs["scores"].float().cpu(), sizes)]

    def metrics(self, predictions: list[list[float]], examples: Sequence[Any]) -> dict[str, float]:
        """Mean reciprocal rank of each group's first pair (ties count against it) and how often it is first."""
        ranks = [1 + sum(s >= p[0] for s in p[1:]) for p in predictions]
        return {"mrr": float(np.mean([1.0 / r for r in ranks])) if ranks else 0.0,
                "top1": float(np.mean([r == 1 for r in ranks])) if ranks else 0.0, "n": len(ranks)}


class CrossReranker:
    """A tuned ``CrossEncoder`` with its tokenizer: scores a user's candidate items and saves/loads itself."""

    def __init__(self, model: CrossEncoder, tokenizer: Any, max_length: int, info: dict[str, Any] | None = None):
        self.model, self.pairs = model.eval(), PairTask(tokenizer, max_length)
        self.info = dict(info or {})
        # the precision it was tuned and evaluated in: served scores then match the measured ones
        self.dtype = torch.bfloat16 if self.info.get("precision") == "bf16" else None

    @torch.inference_mode()
    def score(self, user_text: str, item_texts: Sequence[str]) -> np.ndarray:
        """(len(item_texts),) scores of one user's candidates, in one forward pass."""
        if not item_texts:
            return np.zeros(0, dtype=np.float32)
        batch = self.pairs.collate([self.pairs.encode_group(user_text, item_texts)])
        batch.pop("group_sizes")
        from tuneforge.evaluation.evaluate import autocast_context

        device = next(self.model.parameters()).device
        with autocast_context(device, self.dtype):
            out = self.model(**{k: v.to(device) for k, v in batch.items()})["scores"]
        return out.float().cpu().numpy()

    def save(self, folder: str | Path) -> Path:
        """``folder``: the weights (safetensors), the body's config and tokenizer, and the settings, swapped in whole."""
        from safetensors.torch import save_file

        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS))
            self.model.backbone.config.save_pretrained(tmp)
            self.pairs.tokenizer.save_pretrained(tmp)
            meta = {**self.info, "max_length": self.pairs.max_length, "pooling": self.model.pooling}
            (tmp / META).write_text(json.dumps(meta, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> CrossReranker:
        """Read back what ``save`` wrote: the body is built from its saved config, every tensor must fit."""
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel

        from tuneforge.models import load_tokenizer

        folder = Path(folder)
        if not (folder / META).is_file() or not (folder / WEIGHTS).is_file():
            raise FileNotFoundError(f"{folder} holds no cross-encoder (expected {META} and {WEIGHTS}); fit one "
                                    "with `tuneforge recommend RUN --fit-reranker`")
        meta = json.loads((folder / META).read_text())
        model = CrossEncoder(AutoModel.from_config(AutoConfig.from_pretrained(folder)), meta["pooling"])
        model.load_state_dict(load_file(str(folder / WEIGHTS)), strict=True)
        return cls(model, load_tokenizer(str(folder)), int(meta["max_length"]), meta)


def training_groups(examples: Sequence[dict[str, Any]], scores: np.ndarray, index: dict[str, int], k: int, n: int,
                    rng: np.random.Generator) -> list[list[int]]:
    """Per example (history → target): ``[target row, n hard negatives]`` from the bi-encoder's top ``k`` for that
    history (``scores`` (N, I), its history removed), never one of the user's items (``seen``) or targets."""
    from tuneforge.tasks.recommendation.metrics import rank_scores

    groups = []
    for ex, row in zip(examples, scores):
        history = [index[i] for i in ex["history"]]
        top = rank_scores(row, [], history, k)["top"]
        positives = {index[i] for i in ex["seen"]} | {index[t] for t in ex["targets"]}
        groups.append(pair_group(top, index[ex["targets"][0]], positives, n, rng))
    return groups
