"""The Task protocol every task folder implements, and the task registry."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from tuneforge.config_sections import (
    DataConfig,
    GenerationConfig,
    HeadConfig,
    LossConfig,
    RecommendConfig,
    SpanConfig,
)
from tuneforge.data.readers import BadRows, Record
from tuneforge.registry import Registry

Example = dict[str, Any]  # a validated record in the task's own shape (text, labels, spans, ...)
Feature = dict[str, Any]  # an encoded example: token ids and targets, plus "length" for batching
Batch = dict[str, torch.Tensor]


@dataclass
class TaskContext:
    """What a task is built from: explicit values, never the whole run config."""

    data: DataConfig  # columns, label options, max_length
    head: HeadConfig
    loss: LossConfig
    model_kind: str = "encoder"  # "encoder" or "decoder"
    generation: GenerationConfig | None = None  # schema, packing and decoding of the generative tasks
    model_path: str | None = None  # the untuned model, for baselines that need the LM itself (zero-shot generation)
    span: SpanConfig | None = None  # options of the span tasks (ner, relation, qa)
    recommend: RecommendConfig | None = None  # options of the recommendation task
    language: str = "auto"  # what the text metrics assume: auto | en | zh (eval.language)


class Task(Protocol):
    """What the loop, the evaluator and the predictor need from a task.

    Lifecycle: ``parse`` each split's records → ``setup`` on train (label set, tokenizer) → ``encode`` and
    ``collate`` → ``build_model`` → ``loss`` in training → ``predict`` + ``metrics`` in evaluation.
    ``state``/``load_state`` persist what ``setup`` learned, so a run directory can be served.
    """

    name: str
    main_metric: str  # the validation metric early stopping watches by default
    metric_mode: str  # "max" or "min"
    needs_lm_head: bool  # the body keeps its language-model head (build loads a causal LM)
    peft_task_type: str  # peft's TaskType for the body: "FEATURE_EXTRACTION" or "CAUSAL_LM"
    tokenizer: Any  # set by ``setup`` / ``load_state``
    labels: list[str]  # the label set of tasks that predict one ([] for span and generative tasks)
    pair_col: str | None  # the second text column of sentence-pair inputs, else None
    # rows of a reduced-precision batch close enough to a decision flip to redo in fp32; None: nothing to recheck
    near_ties: Callable[..., list[int]] | None
    # what must stay in one split when validation/test are carved from train (QA: the passage its questions share);
    # None: the audit's text, so equal texts stay together
    split_group: Callable[[Example], str] | None

    def parse(self, records: list[Record], bad: BadRows) -> list[Example]: ...

    def parse_input(self, item: str | Record) -> Example:
        """One unlabelled input for prediction (a bare string or a record with the configured columns)."""
        ...

    def stratify_key(self, ex: Example) -> Hashable: ...

    def audit_view(self) -> tuple[Callable[[Example], str], Callable[[Example], list[str]]]: ...

    def setup(self, train: list[Example], tokenizer: Any) -> None: ...

    def encode(self, ex: Example) -> Feature: ...

    def collate(self, features: Sequence[Feature]) -> Batch: ...

    def build_model(self, backbone: nn.Module) -> nn.Module: ...

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum of per-item losses, number of items): the loop normalises over the accumulation window."""
        ...

    def loss_items(self, batch: Batch) -> float:
        """How many items ``loss`` will average over in this batch, known before the forward pass."""
        ...

    def predict(self, outputs: dict[str, torch.Tensor], batch: Batch) -> list[Any]: ...

    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, Any]: ...

    def baselines(self, names: Sequence[str], train: list[Example], test: list[Example],
                  embed: Callable[[list[str]], torch.Tensor] | None) -> dict[str, list[Any]]: ...

    def format_prediction(self, pred: Any, ex: Example) -> dict[str, Any]: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any], tokenizer: Any) -> None: ...


TaskFactory = Callable[[TaskContext], Task]
TASKS: Registry[TaskFactory] = Registry("task")


def build_task(name: str, ctx: TaskContext) -> Task:
    """Instantiate a registered task. Importing ``tuneforge.tasks`` registers the built-in ones."""
    import tuneforge.tasks  # noqa: F401  (registers built-ins)

    return TASKS.get(name)(ctx)
