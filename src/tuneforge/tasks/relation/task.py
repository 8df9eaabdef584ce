"""The relation task: entity markers as special tokens, marker-start pooling, scored by the SemEval-2010 metric."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tuneforge.config import SpanConfig
from tuneforge.data.readers import BadRows, DataError, Record
from tuneforge.tasks.base import TASKS, Batch, Example, Feature, TaskContext
from tuneforge.tasks.relation import data as rdata
from tuneforge.tasks.relation.head import RelationClassifier, add_marker_embeddings
from tuneforge.tasks.relation.metrics import relation_metrics


class RelationTask:
    name = "relation"
    main_metric = "semeval_macro_f1"
    metric_mode = "max"
    needs_lm_head = False
    peft_task_type = "FEATURE_EXTRACTION"
    pair_col = None
    near_ties = None
    split_group = None

    def __init__(self, ctx: TaskContext):
        span = ctx.span or SpanConfig()
        self.text_col, self.label_col = ctx.data.text_column, ctx.data.label_column
        self.max_length, self.fixed_labels = ctx.data.max_length, ctx.data.labels
        self.negative = span.negative_relation
        self.dropout = ctx.head.dropout
        self.labels: list[str] = []
        self.tokenizer: Any = None

    # ----- data -----
    def parse(self, records: list[Record], bad: BadRows) -> list[Example]:
        return rdata.parse_records(records, self.text_col, self.label_col, bad)

    def parse_input(self, item: str | Record) -> Example:
        """A string marked with ``<e1>..</e1>`` and ``<e2>..</e2>``, or ``{"text", "head", "tail"}``."""
        rec = {self.text_col: item} if isinstance(item, str) else dict(item)
        if not isinstance(rec.get(self.text_col), str):
            raise DataError("<input>", None, "expected a marked string or {text, head, tail}", field=self.text_col)
        return rdata.parse_one(rec, self.text_col, self.label_col, need_label=False)

    def stratify_key(self, ex: Example) -> Hashable:
        return ex["relation"]

    def audit_view(self) -> tuple[Callable[[Example], str], Callable[[Example], list[str]]]:
        return (lambda ex: ex["text"]), (lambda ex: [ex["relation"]])

    def setup(self, train: list[Example], tokenizer: Any) -> None:
        self.labels = list(self.fixed_labels) if self.fixed_labels else sorted({ex["relation"] for ex in train})
        self._use_tokenizer(tokenizer)

    def _use_tokenizer(self, tokenizer: Any) -> None:
        """The markers become special tokens (never split or lower-cased); adding them twice is a no-op."""
        if tokenizer is not None:
            tokenizer.add_tokens(list(rdata.MARKERS), special_tokens=True)
        self.tokenizer = tokenizer

    @property
    def label_index(self) -> dict[str, int]:
        return {lab: i for i, lab in enumerate(self.labels)}

    def encode(self, ex: Example) -> Feature:
        return rdata.encode(ex, self.tokenizer, self.label_index, self.max_length)

    def collate(self, features: Sequence[Feature]) -> Batch:
        return rdata.collate(features, self.tokenizer.pad_token_id)

    # ----- model and loss -----
    def build_model(self, backbone: nn.Module) -> nn.Module:
        add_marker_embeddings(backbone, len(self.tokenizer))
        return RelationClassifier(backbone, len(self.labels), self.dropout)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = outputs["logits"].float()
        target = batch["labels"].to(logits.device)
        total = F.cross_entropy(logits, target, ignore_index=-100, reduction="sum")
        return total, (target != -100).sum().float()

    def loss_items(self, batch: Batch) -> float:
        return float((batch["labels"] != -100).sum())

    # ----- prediction and metrics -----
    def predict(self, outputs: dict[str, torch.Tensor], batch: Batch) -> list[Any]:
        return [row.tolist() for row in torch.softmax(outputs["logits"].float(), -1).cpu()]

    def _label(self, pred: Any) -> str:
        return pred if isinstance(pred, str) else self.labels[int(np.argmax(pred))]

    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, Any]:
        return relation_metrics([self._label(p) for p in predictions], [ex["relation"] for ex in examples],
                                self.negative)

    def baselines(self, names: Sequence[str], train: list[Example], test: list[Example],
                  embed: Callable[[list[str]], torch.Tensor] | None) -> dict[str, list[Any]]:
        """``majority``: the commonest train relation for every pair. ``zero_shot`` does not apply; skipped."""
        out: dict[str, list[Any]] = {}
        for name in names:
            if name == "majority":
                top = Counter(ex["relation"] for ex in train).most_common(1)[0][0]
                out[name] = [top for _ in test]
            elif name != "zero_shot":
                raise ValueError(f"unknown baseline {name!r} for relation; known: majority")
        return out

    def format_prediction(self, pred: Any, ex: Example) -> dict[str, Any]:
        scores = {lab: round(float(p), 6) for lab, p in zip(self.labels, pred)}
        label = self._label(pred)
        (hs, he), (ts, te) = ex["head"], ex["tail"]
        return {"relation": label, "score": scores[label], "scores": scores,
                "head": {"text": ex["text"][hs:he], "start": hs, "end": he},
                "tail": {"text": ex["text"][ts:te], "start": ts, "end": te}}

    # ----- persistence -----
    def state(self) -> dict[str, Any]:
        return {"labels": self.labels, "negative_relation": self.negative, "markers": list(rdata.MARKERS)}

    def load_state(self, state: dict[str, Any], tokenizer: Any) -> None:
        self.labels = list(state["labels"])
        self.negative = state.get("negative_relation", self.negative)
        self._use_tokenizer(tokenizer)


TASKS.register("relation", RelationTask)
