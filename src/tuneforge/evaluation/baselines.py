"""The "before" side of a run: each baseline's predictions and metrics on the frozen test split, with the untuned
backbone (and its mean-pooled sentence embeddings for the zero-shot baseline)."""

from __future__ import annotations

from typing import Any

import torch

from tuneforge.models import ResolvedModel, load_backbone
from tuneforge.tasks.base import Task


def mean_pooled_embedder(location: str, tokenizer: Any, batch_size: int = 64):
    """Sentence embeddings from the untuned backbone (mean over real tokens): the zero-shot baseline's encoder."""
    from tuneforge.tasks.classification.head import pool

    model = load_backbone(location).eval()
    # 256 tokens are plenty for a sentence embedding; a model with fewer positions gets its own limit
    limit = min(256, getattr(model.config, "max_position_embeddings", 256) or 256)

    def embed(texts: list[str]) -> torch.Tensor:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = [None] * len(texts)
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s:s + batch_size]
                enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=limit,
                                return_tensors="pt")
                h = model(**{k: v for k, v in enc.items() if k != "token_type_ids" or "bert" in
                             model.config.model_type}).last_hidden_state  # (B, T, H)
                for i, v in zip(idx, pool(h, enc["attention_mask"], "mean")):
                    out[i] = v
        return torch.stack(out)  # (N, H)

    return embed


def score_baselines(names: list[str], task: Task, resolved: ResolvedModel, tokenizer: Any,
                    train_examples: list[dict[str, Any]], test: list[dict[str, Any]],
                    keep: dict[str, list[Any]] | None = None) -> dict[str, dict[str, Any]]:
    """"Before" numbers: each baseline's metrics on the frozen test split, with the untuned backbone.

    A generative task scores zero-shot with the untuned LM itself (TaskContext.model_path), not with embeddings.
    """
    wants_embed = "zero_shot" in names and not task.needs_lm_head
    embed = mean_pooled_embedder(resolved.path, tokenizer) if wants_embed else None
    predictions = task.baselines(names, train_examples, test, embed)
    if keep is not None:  # the per-row predictions, when the caller wants them (the HTML report)
        keep.update(predictions)
    return {name: task.metrics(preds, test) for name, preds in predictions.items()}
