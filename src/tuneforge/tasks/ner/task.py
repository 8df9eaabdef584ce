"""The NER task: BIO tags per word, trained on first subwords, scored on strict entities, predicted as spans."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tuneforge.config import SpanConfig
from tuneforge.data.readers import BadRows, DataError, Record
from tuneforge.tasks.base import TASKS, Batch, Example, Feature, TaskContext
from tuneforge.tasks.ner import data as ndata
from tuneforge.tasks.ner.head import TokenClassifier
from tuneforge.tasks.ner.metrics import entity_metrics, entity_spans


class NerTask:
    name = "ner"
    main_metric = "f1"
    metric_mode = "max"
    needs_lm_head = False
    peft_task_type = "FEATURE_EXTRACTION"
    labels: list[str] = []  # a span task: its tag set is not a label set
    pair_col = None
    near_ties = None
    split_group = None

    def __init__(self, ctx: TaskContext):
        span = ctx.span or SpanConfig()
        self.text_col, self.max_length = ctx.data.text_column, ctx.data.max_length
        self.fixed_tags = ctx.data.labels
        self.label_all_subwords = span.label_all_subwords
        self.dropout = ctx.head.dropout
        self.tags: list[str] = []
        self.tokenizer: Any = None

    # ----- data -----
    def parse(self, records: list[Record], bad: BadRows) -> list[Example]:
        return ndata.parse_records(records, self.text_col, bad)

    def parse_input(self, item: str | Record) -> Example:
        """A raw string (split into words here), ``{"tokens": [...]}`` or ``{"text": ...}``."""
        if isinstance(item, dict) and "tokens" in item:
            ex = ndata.parse_one({**item, "tags": ["O"] * len(item["tokens"])}, self.text_col)
        else:
            text = item if isinstance(item, str) else item.get(self.text_col)
            if not isinstance(text, str) or not text.strip():
                raise DataError("<input>", None, "empty text", field=self.text_col)
            ex = ndata.parse_one({self.text_col: text, "entities": []}, self.text_col)
        ex.pop("tags")
        return ex

    def stratify_key(self, ex: Example) -> Hashable:
        return "|".join(sorted(set(ndata.entity_types(ex["tags"])))) or "none"

    def audit_view(self) -> tuple[Callable[[Example], str], Callable[[Example], list[str]]]:
        return (lambda ex: ex["text"]), (lambda ex: ndata.entity_types(ex["tags"]))

    def setup(self, train: list[Example], tokenizer: Any) -> None:
        """Tag set: ``O`` then B-/I- for every entity type in train (both, so continuations always have a tag)."""
        self.tokenizer = tokenizer
        if self.fixed_tags:
            self.tags = list(self.fixed_tags)
            return
        types = sorted({t[2:] for ex in train for t in ex["tags"] if t != "O"})
        self.tags = ["O"] + [f"{p}-{t}" for t in types for p in ("B", "I")]

    @property
    def tag_index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tags)}

    def encode(self, ex: Example) -> Feature:
        return ndata.encode(ex, self.tokenizer, self.tag_index, self.max_length, self.label_all_subwords)

    def collate(self, features: Sequence[Feature]) -> Batch:
        return ndata.collate(features, self.tokenizer.pad_token_id)

    # ----- model and loss -----
    def build_model(self, backbone: nn.Module) -> nn.Module:
        return TokenClassifier(backbone, len(self.tags), self.dropout)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = outputs["logits"].float()  # (B, T, L)
        target = batch["labels"].to(logits.device)  # (B, T)
        total = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=-100, reduction="sum")
        return total, (target != -100).sum().float()

    def loss_items(self, batch: Batch) -> float:
        return float((batch["labels"] != -100).sum())

    # ----- prediction and metrics -----
    def predict(self, outputs: dict[str, torch.Tensor], batch: Batch) -> list[Any]:
        """One tag per word, read at the word's first subword; words cut off by max_length get ``O``."""
        best = outputs["logits"].argmax(-1).cpu().tolist()  # (B, T)
        return [[self.tags[row[p]] if p >= 0 else "O" for p in starts]
                for row, starts in zip(best, batch["word_starts"])]

    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, Any]:
        return entity_metrics([ex["tags"] for ex in examples], predictions)

    def baselines(self, names: Sequence[str], train: list[Example], test: list[Example],
                  embed: Callable[[list[str]], torch.Tensor] | None) -> dict[str, list[Any]]:
        """``most_frequent_tag`` (alias ``majority``): each token's commonest train tag, ``O`` if unseen.
        ``zero_shot`` has no meaning for a new tagging head and is skipped."""
        out: dict[str, list[Any]] = {}
        for name in names:
            if name in ("most_frequent_tag", "majority"):
                seen: dict[str, Counter[str]] = defaultdict(Counter)
                for ex in train:
                    for tok, tag in zip(ex["tokens"], ex["tags"]):
                        seen[tok][tag] += 1
                best = {tok: c.most_common(1)[0][0] for tok, c in seen.items()}
                out[name] = [[best.get(tok, "O") for tok in ex["tokens"]] for ex in test]
            elif name != "zero_shot":
                raise ValueError(f"unknown baseline {name!r} for ner; known: most_frequent_tag (majority)")
        return out

    def format_prediction(self, pred: Any, ex: Example) -> dict[str, Any]:
        """Entities with character offsets into ``ex["text"]`` (``end`` exclusive), plus the word tags."""
        offsets, text = ex["offsets"], ex["text"]
        entities = []
        for first, end, label in entity_spans(pred):
            start, stop = offsets[first][0], offsets[end - 1][1]
            entities.append({"text": text[start:stop], "label": label, "start": start, "end": stop})
        return {"entities": entities, "tokens": ex["tokens"], "tags": list(pred)}

    # ----- persistence -----
    def state(self) -> dict[str, Any]:
        return {"tags": self.tags, "label_all_subwords": self.label_all_subwords}

    def load_state(self, state: dict[str, Any], tokenizer: Any) -> None:
        self.tags = list(state["tags"])
        self.label_all_subwords = state.get("label_all_subwords", False)
        self.tokenizer = tokenizer


TASKS.register("ner", NerTask)
