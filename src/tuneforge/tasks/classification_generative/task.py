"""The ``classification_generative`` task: SFT on label words, prediction by the most likely label of the set.

Reading, labels, metrics and output format are the classification task's (held by composition); the prompt,
encoding and model are the generation task's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import nn

from tuneforge.data.readers import BadRows, Record
from tuneforge.prompting.templates import PromptSpec
from tuneforge.prompting.templates import conversation as prompt_conversation
from tuneforge.tasks.base import TASKS, Batch, Example, Feature, TaskContext
from tuneforge.tasks.classification.task import ClassificationTask
from tuneforge.tasks.classification_generative import data as cgdata
from tuneforge.tasks.classification_generative.head import LabelScorer
from tuneforge.tasks.generation import data as gdata
from tuneforge.tasks.generation.task import generation_options


class GenerativeClassificationTask:
    """Single-label classification with a causal LM. Predictions are probabilities over the labels (a softmax over
    the label log-likelihoods), so per-class P/R/F1 and the confusion matrix come out as for ``classification``."""

    name = "classification_generative"
    main_metric = "accuracy"
    metric_mode = "max"
    needs_lm_head = True
    peft_task_type = "CAUSAL_LM"
    pair_col = None
    near_ties = None
    split_group = None

    def __init__(self, ctx: TaskContext):
        if ctx.data.multi_label:
            raise ValueError("classification_generative is single-label; use task=classification for multi-label")
        self.cls = ClassificationTask(ctx)
        g = generation_options(ctx)
        self.instruction_template = g.instruction or cgdata.DEFAULT_INSTRUCTION
        self.system_prompt = g.system_prompt
        self.packing = g.packing
        self.baseline_batch_size = g.eval_batch_size
        self.max_length = ctx.data.max_length
        self.model_path = ctx.model_path
        self.tokenizer: Any = None
        self.candidates: list[list[int]] = []

    # ----- data (reading and labels are classification's) -----
    def parse(self, records: list[Record], bad: BadRows) -> list[Example]:
        return self.cls.parse(records, bad)

    def parse_input(self, item: str | Record) -> Example:
        return self.cls.parse_input(item)

    def stratify_key(self, ex: Example) -> Hashable:
        return self.cls.stratify_key(ex)

    def audit_view(self) -> tuple[Callable[[Example], str], Callable[[Example], list[str]]]:
        text_of, labels_of = self.cls.audit_view()
        if self.tokenizer is None:
            return text_of, labels_of
        return (lambda ex: gdata.render(self.tokenizer, self.messages(ex))), labels_of

    @property
    def labels(self) -> list[str]:
        return self.cls.labels

    @property
    def instruction(self) -> str:
        return self.instruction_template.format(labels=", ".join(cgdata.label_word(lab) for lab in self.labels))

    def messages(self, ex: Example) -> list[dict[str, str]]:
        known = [lab for lab in ex.get("labels", ()) if lab in self.cls.label_index]
        if getattr(self, "prompt", None) is not None:  # a prompt from the fewshot section (tuneforge.prompting)
            return prompt_conversation(self.prompt, ex, answer=self.prompt.verbaliser[known[0]][0] if known else None)
        answer = cgdata.label_word(known[0]) if known else None  # unseen label: a prompt with nothing to learn
        return cgdata.conversation(ex, self.instruction, self.system_prompt, answer)

    def setup(self, train: list[Example], tokenizer: Any) -> None:
        self.cls.setup(train, tokenizer)
        self._use_tokenizer(tokenizer)

    def _use_tokenizer(self, tokenizer: Any) -> None:
        self.tokenizer = gdata.ensure_chat_template(tokenizer)
        words = [self.prompt.verbaliser[lab][0] if getattr(self, "prompt", None) else cgdata.label_word(lab)
                 for lab in self.labels]
        self.candidates = cgdata.answer_token_ids(tokenizer, words)

    def use_prompt(self, spec: PromptSpec) -> None:
        """Train, score and predict with ``spec``'s instruction, input slot and first verbaliser words."""
        self.prompt = spec
        self._use_tokenizer(self.tokenizer)

    def encode(self, ex: Example) -> Feature:
        return gdata.encode_chat(self.tokenizer, self.messages(ex), self.max_length)

    def collate(self, features: Sequence[Feature]) -> Batch:
        return gdata.collate(features, self.tokenizer.pad_token_id, self.packing, self.max_length)

    # ----- model and loss -----
    def build_model(self, backbone: nn.Module) -> nn.Module:
        return LabelScorer(backbone, self.candidates, self.tokenizer.pad_token_id)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs["loss_sum"], outputs["loss_count"].detach()

    def loss_items(self, batch: Batch) -> float:
        return gdata.target_count(batch)

    # ----- prediction and metrics (classification's) -----
    def predict(self, outputs: dict[str, torch.Tensor], batch: Batch) -> list[Any]:
        return [row.tolist() for row in torch.softmax(outputs["logits"].float(), -1).cpu()]

    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, Any]:
        return self.cls.metrics(predictions, examples)

    def baselines(self, names: Sequence[str], train: list[Example], test: list[Example],
                  embed: Callable[[list[str]], torch.Tensor] | None) -> dict[str, list[Any]]:
        """``majority`` as for classification; ``zero_shot``: the untuned LM picks the likeliest label word."""
        out = self.cls.baselines([n for n in names if n == "majority"], train, test, None)
        for name in names:
            if name == "zero_shot":
                out[name] = self.zero_shot(test)
            elif name != "majority":
                raise ValueError(f"unknown baseline {name!r} for {self.name}; known: majority, zero_shot")
        return out

    def zero_shot(self, test: list[Example]) -> list[Any]:
        """The untuned LM's length-normalised, calibrated label-word likelihoods (``tuneforge.prompting``)."""
        from tuneforge.prompting.runs import decoder_zero_shot

        return decoder_zero_shot(self, test)

    def format_prediction(self, pred: Any, ex: Example) -> dict[str, Any]:
        return self.cls.format_prediction(pred, ex)

    # ----- persistence -----
    def state(self) -> dict[str, Any]:
        prompt = getattr(self, "prompt", None)
        return {**self.cls.state(), **({"prompt": dataclasses.asdict(prompt)} if prompt is not None else {})}

    def load_state(self, state: dict[str, Any], tokenizer: Any) -> None:
        self.cls.load_state(state, tokenizer)
        if state.get("prompt"):
            self.prompt = PromptSpec(**state["prompt"])
        self._use_tokenizer(tokenizer)


TASKS.register("classification_generative", GenerativeClassificationTask)
