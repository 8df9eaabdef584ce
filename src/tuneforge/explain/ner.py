"""Explanations of a token tagger's entities: for each predicted entity, per-word Integrated Gradients and
occlusion scores of the entity's tag logits (summed over its words), so a reader sees which context made it
an ORG rather than a LOC."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tuneforge.explain.attribution import baseline_ids, integrated_gradients, occlusion
from tuneforge.explain.classify import rank_agreement


def entity_target(model: nn.Module, positions: list[int], tags: list[int]):
    """Sum of the predicted tag's logit at each of the entity's first-subword positions."""
    pos, tag = torch.tensor(positions), torch.tensor(tags)

    def target(ids: torch.Tensor, mask: torch.Tensor, tti: torch.Tensor | None) -> torch.Tensor:
        kwargs = {"token_type_ids": tti} if tti is not None else {}
        logits = model(input_ids=ids, attention_mask=mask, **kwargs)["logits"].float()  # (B, T, K)
        return logits[:, pos.to(logits.device), tag.to(logits.device)].sum(-1)  # (B,)
    return target


def explain_entities(model: nn.Module, task: Any, ex: dict[str, Any], steps: int = 50) -> dict[str, Any]:
    """Each predicted entity of ``ex`` (parsed by the task: ``tokens``, ``text``, ``offsets``) with its words'
    attributions and IG's completeness figures."""
    from tuneforge.tasks.ner.metrics import entity_spans

    enc = task.tokenizer(ex["tokens"], is_split_into_words=True, truncation=True, max_length=task.max_length,
                         return_special_tokens_mask=True)
    device = next(model.parameters()).device
    ids = torch.tensor([enc["input_ids"]], device=device)
    mask = torch.tensor([enc["attention_mask"]], device=device)
    tti = torch.tensor([enc["token_type_ids"]], device=device) if "token_type_ids" in enc else None
    groups: dict[int, list[int]] = {}
    for pos, w in enumerate(enc.word_ids()):
        if w is not None:
            groups.setdefault(w, []).append(pos)
    with torch.no_grad():
        kwargs = {"token_type_ids": tti} if tti is not None else {}
        best = model(input_ids=ids, attention_mask=mask, **kwargs)["logits"][0].argmax(-1).tolist()  # (T,)
    tags = [task.tags[best[groups[w][0]]] if w in groups else "O" for w in range(len(ex["tokens"]))]
    base = baseline_ids(ids, torch.tensor([enc["special_tokens_mask"]], device=device), task.tokenizer.pad_token_id)
    model.eval()
    words_seen = sorted(groups)
    entities = []
    for first, end, label in entity_spans(tags):
        positions = [groups[w][0] for w in range(first, end) if w in groups]
        target = entity_target(model, positions, [best[p] for p in positions])
        ig = integrated_gradients(target, model, ids, mask, tti, base, steps=steps)
        occ = occlusion(target, ids, mask, tti, [groups[w] for w in words_seen], task.tokenizer.pad_token_id)
        words = [{"text": ex["tokens"][w], "sequence": 0, "start": ex["offsets"][w][0], "end": ex["offsets"][w][1],
                  "ig": float(sum(ig.token_attributions[p] for p in groups[w])), "occlusion": o}
                 for w, o in zip(words_seen, occ)]
        start, stop = ex["offsets"][first][0], ex["offsets"][end - 1][1]
        entities.append({"text": ex["text"][start:stop], "label": label, "start": start, "end": stop,
                         "words": words, "agreement": rank_agreement([w["ig"] for w in words], occ),
                         "integrated_gradients": {"steps": ig.steps, "sum": ig.total, "logit_difference": ig.difference,
                                                  "completeness_error": abs(ig.total - ig.difference),
                                                  "relative_completeness_error": ig.completeness_error}})
    return {"text": ex["text"], "tags": tags, "entities": entities}
