"""The extractive QA task: doc-stride windows in, start/end logits out, best span per question, SQuAD EM/F1."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tuneforge.config import SpanConfig
from tuneforge.data.readers import BadRows, DataError, Record
from tuneforge.tasks.base import TASKS, Batch, Example, Feature, TaskContext
from tuneforge.tasks.qa import data as qdata
from tuneforge.tasks.qa.decode import decode_batch
from tuneforge.tasks.qa.head import SpanExtractor
from tuneforge.tasks.qa.metrics import normalize_answer, qa_metrics
from tuneforge.tasks.qa.windows import collate, encode_windows

_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")


def overlap_sentence(question: str, context: str) -> tuple[int, int]:
    """Character span of the context sentence sharing the most normalised words with the question (first on ties).

    >>> overlap_sentence("where was john born?", "Mary works. John was born in Paris. It rains.")
    (12, 35)
    """
    words = set(normalize_answer(question).split())
    best, span = -1, (0, len(context))
    for m in _SENTENCE.finditer(context):
        a = m.start() + len(m.group()) - len(m.group().lstrip())
        b = m.start() + len(m.group().rstrip())
        score = len(words & set(normalize_answer(context[a:b]).split()))
        if b > a and score > best:
            best, span = score, (a, b)
    return span


class QaTask:
    name = "qa"
    main_metric = "f1"
    metric_mode = "max"
    needs_lm_head = False
    peft_task_type = "FEATURE_EXTRACTION"
    labels: list[str] = []
    pair_col = None
    near_ties = None

    @staticmethod
    def split_group(ex: Example) -> str:
        """Questions on one passage stay in one split: a validation question whose passage was trained on
        measures recall of that passage, not reading."""
        return ex["context"]

    def __init__(self, ctx: TaskContext):
        span = ctx.span or SpanConfig()
        self.max_length = ctx.data.max_length
        self.language = ctx.language
        self.doc_stride, self.max_answer_length = span.doc_stride, span.max_answer_length
        self.max_question_length, self.null_threshold = span.max_question_length, span.null_score_threshold
        if not 0 <= self.doc_stride < self.max_length - self.max_question_length - 3:
            raise ValueError(f"span.doc_stride={self.doc_stride} must be below data.max_length - "
                             f"span.max_question_length - 3 = {self.max_length - self.max_question_length - 3}")
        self.allow_no_answer = False
        self.tokenizer: Any = None

    # ----- data -----
    def parse(self, records: list[Record], bad: BadRows) -> list[Example]:
        return qdata.parse_records(records, bad)

    def parse_input(self, item: str | Record) -> Example:
        if not isinstance(item, dict):
            raise DataError("<input>", None, "a QA input needs a question and a context: "
                                             '{"question": ..., "context": ...}', field="question")
        return qdata.parse_one(item, need_answers=False)

    def stratify_key(self, ex: Example) -> Hashable:
        return ex["is_impossible"]

    def audit_view(self) -> tuple[Callable[[Example], str], Callable[[Example], list[str]]]:
        """Texts are question + context (long contexts are windowed, not cut: read the audit's truncation
        count as "needs more than one window")."""
        return (lambda ex: ex["question"] + " " + ex["context"]), (
            lambda ex: ["no_answer" if ex["is_impossible"] else "answerable"])

    def setup(self, train: list[Example], tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.allow_no_answer = any(ex["is_impossible"] for ex in train)  # SQuAD v2.0 data

    def encode(self, ex: Example) -> Feature:
        return encode_windows(ex, self.tokenizer, self.max_length, self.doc_stride, self.max_question_length)

    def collate(self, features: Sequence[Feature]) -> Batch:
        return collate(features, self.tokenizer.pad_token_id)

    # ----- model and loss -----
    def build_model(self, backbone: nn.Module) -> nn.Module:
        return SpanExtractor(backbone)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per window: the mean of the start and end cross-entropies (windows without the answer point at 0)."""
        target = batch["labels"].to(outputs["start_logits"].device)  # (R, 2)
        start = F.cross_entropy(outputs["start_logits"].float(), target[:, 0], reduction="sum")
        end = F.cross_entropy(outputs["end_logits"].float(), target[:, 1], reduction="sum")
        return (start + end) / 2, torch.tensor(float(target.size(0)))

    def loss_items(self, batch: Batch) -> float:
        return float(batch["labels"].size(0))

    # ----- prediction and metrics -----
    def predict(self, outputs: dict[str, torch.Tensor], batch: Batch) -> list[Any]:
        return decode_batch(outputs["start_logits"], outputs["end_logits"], batch["offsets"], batch["owner"],
                            batch["n_features"], self.max_answer_length, self.allow_no_answer, self.null_threshold)

    @staticmethod
    def answer_text(pred: dict[str, Any], ex: Example) -> str:
        return "" if pred.get("no_answer") or pred.get("start") is None else ex["context"][pred["start"]:pred["end"]]

    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, Any]:
        return qa_metrics([self.answer_text(p, ex) for p, ex in zip(predictions, examples)],
                          [[a["text"] for a in ex["answers"]] + ex.get("reference_answers", []) for ex in examples],
                          self.language)

    def baselines(self, names: Sequence[str], train: list[Example], test: list[Example],
                  embed: Callable[[list[str]], torch.Tensor] | None) -> dict[str, list[Any]]:
        """``sentence_overlap`` (alias ``majority``): the context sentence with the most question words."""
        out: dict[str, list[Any]] = {}
        for name in names:
            if name in ("sentence_overlap", "majority"):
                spans = [overlap_sentence(ex["question"], ex["context"]) for ex in test]
                out[name] = [{"start": a, "end": b, "no_answer": False} for a, b in spans]
            elif name != "zero_shot":
                raise ValueError(f"unknown baseline {name!r} for qa; known: sentence_overlap (majority)")
        return out

    def format_prediction(self, pred: Any, ex: Example) -> dict[str, Any]:
        return {"answer": self.answer_text(pred, ex), "start": pred.get("start"), "end": pred.get("end"),
                "score": pred.get("score"), "no_answer": bool(pred.get("no_answer")), "id": ex.get("id", "")}

    # ----- persistence -----
    def state(self) -> dict[str, Any]:
        return {"allow_no_answer": self.allow_no_answer, "doc_stride": self.doc_stride,
                "max_answer_length": self.max_answer_length}

    def load_state(self, state: dict[str, Any], tokenizer: Any) -> None:
        self.allow_no_answer = state.get("allow_no_answer", False)
        self.tokenizer = tokenizer


TASKS.register("qa", QaTask)
