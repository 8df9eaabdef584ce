"""The classification task: single-label, multi-label and sentence-pair, wired to the Task protocol."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tuneforge.data.readers import BadRows, Record
from tuneforge.tasks.base import TASKS, Batch, Example, Feature, TaskContext
from tuneforge.tasks.classification import data as cdata
from tuneforge.tasks.classification.head import SequenceClassifier, default_pooling
from tuneforge.tasks.classification.metrics import multi_label_metrics, single_label_metrics


class ClassificationTask:
    name = "classification"
    main_metric = "accuracy"
    metric_mode = "max"
    needs_lm_head = False  # an encoder (or decoder) body with a classification head
    peft_task_type = "FEATURE_EXTRACTION"
    split_group = None

    def __init__(self, ctx: TaskContext):
        d = ctx.data
        self.text_col, self.pair_col, self.label_col = d.text_column, d.text_pair_column, d.label_column
        self.multi_label, self.delimiter, self.max_length = d.multi_label, d.label_delimiter, d.max_length
        self.fixed_labels = d.labels
        self.model_kind, self.pooling_request = ctx.model_kind, ctx.head.pooling
        self.pooling = default_pooling(ctx.model_kind, ctx.head.pooling)  # ``auto`` settles in build_model
        self.dropout = ctx.head.dropout
        self.class_weights_opt = ctx.loss.class_weights
        self.label_smoothing = ctx.loss.label_smoothing
        self.labels: list[str] = []
        self.class_weights: list[float] | None = None
        self.tokenizer: Any = None
        if self.multi_label:
            self.main_metric = "micro_f1"

    # ----- data -----
    def parse(self, records: list[Record], bad: BadRows) -> list[Example]:
        return cdata.parse_records(records, self.text_col, self.pair_col, self.label_col, self.multi_label,
                                   self.delimiter, bad)

    def parse_input(self, item: str | Record) -> Example:
        if isinstance(item, str):
            return {"text": item}
        rec = {self.text_col: item.get(self.text_col, item.get("text")), self.label_col: "?", **item}
        if self.pair_col and self.pair_col not in item and "text_pair" in item:  # the generic name works too
            rec[self.pair_col] = item["text_pair"]
        ex = cdata.parse_records([rec], self.text_col, self.pair_col, self.label_col, False, None, BadRows())[0]
        ex.pop("labels")
        return ex

    def stratify_key(self, ex: Example) -> Hashable:
        return "|".join(sorted(ex["labels"]))

    def audit_view(self) -> tuple[Callable[[Example], str], Callable[[Example], list[str]]]:
        return (lambda ex: ex["text"] + (" [SEP] " + ex["text_pair"] if "text_pair" in ex else "")), (
            lambda ex: ex["labels"])

    def setup(self, train: list[Example], tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        counts = Counter(lab for ex in train for lab in ex["labels"])
        self.labels = list(self.fixed_labels) if self.fixed_labels else sorted(counts)
        opt = self.class_weights_opt
        if opt == "auto":  # inverse frequency, normalised to mean 1
            inv = np.array([1.0 / max(1, counts.get(lab, 0)) for lab in self.labels])
            self.class_weights = (inv * len(inv) / inv.sum()).tolist()
        elif isinstance(opt, list):
            if len(opt) != len(self.labels):
                raise ValueError(f"loss.class_weights has {len(opt)} values for {len(self.labels)} labels")
            self.class_weights = [float(w) for w in opt]

    @property
    def label_index(self) -> dict[str, int]:
        return {lab: i for i, lab in enumerate(self.labels)}

    def encode(self, ex: Example) -> Feature:
        return cdata.encode(ex, self.tokenizer, self.label_index, self.multi_label, self.max_length)

    def collate(self, features: Sequence[Feature]) -> Batch:
        return cdata.collate(features, self.tokenizer.pad_token_id, len(self.labels), self.multi_label)

    # ----- model and loss -----
    def build_model(self, backbone: nn.Module) -> nn.Module:
        self.pooling = default_pooling(self.model_kind, self.pooling_request, backbone)
        return SequenceClassifier(backbone, len(self.labels), self.pooling, self.dropout)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        logits = outputs["logits"].float()
        target = batch["labels"]
        if self.multi_label:
            per = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(-1)
            return per.sum(), torch.tensor(float(per.numel()))
        weight = None
        if self.class_weights is not None:
            weight = torch.tensor(self.class_weights, device=logits.device)
        per = F.cross_entropy(logits, target, weight=weight, ignore_index=-100,
                              label_smoothing=self.label_smoothing, reduction="none")
        valid = target != -100
        # weighted CE's mean divides by the summed weights of the targets; keep that as the item count
        count = weight[target[valid]].sum() if weight is not None else valid.sum().float()
        return per.sum(), count.detach()

    def loss_items(self, batch: Batch) -> float:
        target = batch["labels"]
        if self.multi_label:
            return float(target.shape[0])
        valid = target[target != -100]
        if self.class_weights is not None:
            return float(torch.tensor(self.class_weights)[valid].sum())
        return float(valid.numel())

    # ----- prediction and metrics -----
    def predict(self, outputs: dict[str, torch.Tensor], batch: Batch) -> list[Any]:
        logits = outputs["logits"].float()
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)
        return [row.tolist() for row in probs.cpu()]

    def near_ties(self, outputs: dict[str, torch.Tensor], margin: float = 0.2) -> list[int]:
        """Rows whose decision is within ``margin`` logits of changing: top-2 gap (single-label), or a logit near 0
        (multi-label, threshold 0.5). Reduced-precision prediction redoes these in fp32 (evaluate.py)."""
        logits = outputs["logits"].float()
        if self.multi_label:
            near = (logits.abs() < margin).any(-1)
        elif logits.shape[-1] < 2:
            return []
        else:
            top = logits.topk(2, dim=-1).values  # (B, 2)
            near = (top[:, 0] - top[:, 1]) < margin
        return near.nonzero().flatten().tolist()

    def decide(self, probs: Sequence[float]) -> list[int] | int:
        if self.multi_label:
            return [i for i, p in enumerate(probs) if p >= 0.5]
        return int(np.argmax(probs))

    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, Any]:
        idx = self.label_index
        if self.multi_label:
            gold = np.zeros((len(examples), len(self.labels)), dtype=int)
            pred = np.zeros_like(gold)
            unseen = np.zeros(len(examples), dtype=bool)  # a gold label with no head output: counted, not dropped
            for i, (p, ex) in enumerate(zip(predictions, examples)):
                gold[i, [idx[lab] for lab in ex["labels"] if lab in idx]] = 1
                unseen[i] = any(lab not in idx for lab in ex["labels"])
                pred[i, self.decide(p) if p and isinstance(p[0], float) else p] = 1
            return multi_label_metrics(pred, gold, self.labels, unseen)
        gold_i = [idx.get(ex["labels"][0], -1) for ex in examples]
        pred_i = [p if isinstance(p, int) else self.decide(p) for p in predictions]
        return single_label_metrics(pred_i, gold_i, self.labels)

    def baselines(self, names: Sequence[str], train: list[Example], test: list[Example],
                  embed: Callable[[list[str]], torch.Tensor] | None) -> dict[str, list[Any]]:
        """Predictions of simple reference models on ``test`` (label indices, or index lists for multi-label)."""
        out: dict[str, list[Any]] = {}
        for name in names:
            if name == "majority":
                top = Counter(lab for ex in train for lab in ex["labels"]).most_common(1)[0][0]
                i = self.label_index[top]
                out[name] = [[i] if self.multi_label else i for _ in test]
            elif name == "zero_shot":
                if embed is None:
                    continue
                out[name] = self._zero_shot(test, embed)
            else:
                raise ValueError(f"unknown baseline {name!r} for classification; known: majority, zero_shot")
        return out

    def _zero_shot(self, test: list[Example], embed: Callable[[list[str]], torch.Tensor]) -> list[Any]:
        """Cosine similarity between each text and each label's descriptions (the run's prompt, set by
        ``tuneforge.prompting``; else the label names), both embedded by the untuned backbone."""
        from tuneforge.prompting.templates import PromptSpec
        from tuneforge.prompting.zero_shot import description_scores

        spec = getattr(self, "prompt", None) or PromptSpec.from_labels(self.labels)
        best = description_scores([ex["text"] for ex in test], self.labels, spec, embed).argmax(-1).tolist()
        return [[b] if self.multi_label else b for b in best]

    def format_prediction(self, pred: Any, ex: Example) -> dict[str, Any]:
        scores = {lab: round(float(p), 6) for lab, p in zip(self.labels, pred)}
        decided = self.decide(pred)
        if self.multi_label:
            return {"labels": [self.labels[i] for i in decided], "scores": scores}
        return {"label": self.labels[decided], "score": scores[self.labels[decided]], "scores": scores}

    # ----- persistence -----
    def state(self) -> dict[str, Any]:
        return {"labels": self.labels, "multi_label": self.multi_label, "pooling": self.pooling,
                "class_weights": self.class_weights}

    def load_state(self, state: dict[str, Any], tokenizer: Any) -> None:
        self.labels = list(state["labels"])
        self.multi_label = state["multi_label"]
        self.pooling = self.pooling_request = state["pooling"]  # what the weights were trained with
        self.class_weights = state.get("class_weights")
        self.tokenizer = tokenizer


TASKS.register("classification", ClassificationTask)
