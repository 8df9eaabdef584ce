"""Explanations of a sequence classifier's decision: per-word Integrated Gradients and occlusion scores for the
predicted (or a chosen) label, with the completeness check, as JSON-ready dicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from tuneforge.explain.attribution import baseline_ids, integrated_gradients, occlusion
from tuneforge.explain.errors import ExplainError


def logit_target(model: nn.Module, label: int):
    """The explained scalar: label ``label``'s logit (IG's completeness then reads in logits)."""
    def target(ids: torch.Tensor, mask: torch.Tensor, tti: torch.Tensor | None) -> torch.Tensor:
        kwargs = {"token_type_ids": tti} if tti is not None else {}
        return model(input_ids=ids, attention_mask=mask, **kwargs)["logits"].float()[:, label]  # (B,)
    return target


def encode_with_words(tokenizer: Any, text: str, pair: str | None, max_length: int) -> dict[str, Any]:
    """Token ids plus, for each word, its token positions, which text (0 or 1) it is in and its character span."""
    if not getattr(tokenizer, "is_fast", False):
        raise ExplainError("explanations map tokens back to words with a fast (Rust) tokenizer")
    enc = tokenizer(text, pair, truncation=True, max_length=max_length, return_offsets_mapping=True,
                    return_special_tokens_mask=True)
    words: dict[tuple[int, int], dict[str, Any]] = {}
    for pos, (seq, word) in enumerate(zip(enc.sequence_ids(), enc.word_ids())):
        if seq is None or word is None:
            continue
        start, end = enc["offset_mapping"][pos]
        w = words.setdefault((seq, word), {"positions": [], "sequence": seq, "start": start, "end": end})
        w["positions"].append(pos)
        w["end"] = end
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "token_type_ids": enc.get("token_type_ids"), "special": enc["special_tokens_mask"],
            "words": list(words.values())}


def explain_one(model: nn.Module, tokenizer: Any, labels: Sequence[str], text: str, pair: str | None = None,
                label: str | None = None, max_length: int = 128, steps: int = 50) -> dict[str, Any]:
    """Per-word IG and occlusion for ``label`` (default: the predicted one) on one input.

    >>> # explain_one(model, tok, ["neg", "pos"], "a lovely film")["words"][1] -> {"text": "lovely", "ig": 1.9, ...}
    """
    enc = encode_with_words(tokenizer, text, pair, max_length)
    ids = torch.tensor([enc["input_ids"]])
    mask = torch.tensor([enc["attention_mask"]])
    tti = torch.tensor([enc["token_type_ids"]]) if enc["token_type_ids"] is not None else None
    device = next(model.parameters()).device
    ids, mask, tti = ids.to(device), mask.to(device), tti.to(device) if tti is not None else None
    with torch.no_grad():
        kwargs = {"token_type_ids": tti} if tti is not None else {}
        probs = torch.softmax(model(input_ids=ids, attention_mask=mask, **kwargs)["logits"].float(), -1)[0]
    predicted = int(probs.argmax())
    if label is not None and label not in labels:
        raise ExplainError(f"unknown label {label!r}; known: {', '.join(labels)}")
    target_i = labels.index(label) if label is not None else predicted
    target = logit_target(model, target_i)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    base = baseline_ids(ids, torch.tensor([enc["special"]], device=device), pad)
    ig = integrated_gradients(target, model, ids, mask, tti, base, steps=steps)
    occ = occlusion(target, ids, mask, tti, [w["positions"] for w in enc["words"]], pad)
    texts = (text, pair)
    words = [{"text": texts[w["sequence"]][w["start"]:w["end"]], "sequence": w["sequence"], "start": w["start"],
              "end": w["end"], "ig": float(sum(ig.token_attributions[p] for p in w["positions"])),
              "occlusion": o} for w, o in zip(enc["words"], occ)]
    return {"text": text, **({"text_pair": pair} if pair else {}), "predicted": labels[predicted],
            "probability": float(probs[predicted]), "target": labels[target_i],
            "target_probability": float(probs[target_i]), "words": words,
            "integrated_gradients": {"steps": ig.steps, "sum": ig.total, "logit_difference": ig.difference,
                                     "completeness_error": abs(ig.total - ig.difference),
                                     "relative_completeness_error": ig.completeness_error,
                                     "baseline": "special tokens kept, other tokens replaced by padding"},
            "agreement": rank_agreement([w["ig"] for w in words], occ)}


def rank_agreement(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman correlation of two attribution vectors (IG vs occlusion): high when both methods rank the words
    alike; None with fewer than three words or a constant vector."""
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)
