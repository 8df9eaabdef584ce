"""The generation task (instructions, dialogue, summarisation, translation) wired to the Task protocol."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import nn

from tuneforge.data.readers import BadRows, Record
from tuneforge.evaluation.language import drop_partial_char
from tuneforge.tasks.base import TASKS, Batch, Example, Feature, TaskContext
from tuneforge.tasks.generation import data as gdata
from tuneforge.tasks.generation import readers as _readers  # noqa: F401  (registers the `parallel` format)
from tuneforge.tasks.generation import schemas
from tuneforge.tasks.generation.head import CausalLM, decoding_kwargs
from tuneforge.tasks.generation.metrics import generation_metrics


def generation_options(ctx: TaskContext) -> Any:
    if ctx.generation is not None:
        return ctx.generation
    from tuneforge.config import GenerationConfig

    return GenerationConfig()


class GenerationTask:
    """Supervised fine-tuning of a causal LM on conversations; loss on every assistant turn only.

    Predictions are ``{"text", "nll", "tokens"}``: the decoded answer, plus the teacher-forced loss of the
    reference answer (so ``metrics`` also reports the token-level ``loss``).
    """

    name = "generation"
    main_metric = "rougeL"
    metric_mode = "max"
    needs_lm_head = True  # build.py loads AutoModelForCausalLM
    peft_task_type = "CAUSAL_LM"
    labels: list[str] = []
    pair_col = None
    near_ties = None
    split_group = None

    def __init__(self, ctx: TaskContext):
        g = generation_options(ctx)
        self.schema = schemas.resolve_schema(g.schema)
        self.options = schemas.SchemaOptions(instruction=g.instruction, system_prompt=g.system_prompt)
        self.packing = g.packing
        self.decoding = decoding_kwargs(g)
        self.baseline_batch_size = g.eval_batch_size
        self.max_length = ctx.data.max_length
        self.language = ctx.language
        self.model_path = ctx.model_path
        self.tokenizer: Any = None
        self.stop_ids: list[int] = []

    # ----- data -----
    def parse(self, records: list[Record], bad: BadRows) -> list[Example]:
        examples, used = schemas.parse_records(records, self.schema, self.options, bad)
        if self.schema == "auto" and used:
            self.schema = max(used, key=used.get)  # a bare prediction input is read the way train was
        return examples

    def parse_input(self, item: str | Record) -> Example:
        """A bare string is the user text of the train schema (the dialogue to summarise, the sentence to
        translate, ...); a dict is read by its keys like a data record, its answer (if any) kept as reference."""
        opts = schemas.SchemaOptions(self.options.instruction, self.options.system_prompt, require_target=False)
        if isinstance(item, str):
            schema = "messages" if self.schema == "auto" else self.schema
            return schemas.convert(schemas.record_for_text(schema, item), schema, opts)[1]
        return schemas.convert(dict(item), "auto", opts)[1]

    def stratify_key(self, ex: Example) -> Hashable:
        return 0  # free text: a plain seeded random split

    def audit_view(self) -> tuple[Callable[[Example], str], Callable[[Example], list[str]]]:
        """The text the model reads (templated once the tokenizer is known), so the audit's token counts and
        ``truncated`` report match what training cuts."""
        def text_of(ex: Example) -> str:
            if self.tokenizer is not None:
                return gdata.render(self.tokenizer, ex["messages"])
            return "\n".join(m["content"] for m in ex["messages"])

        return text_of, (lambda ex: [])

    def setup(self, train: list[Example], tokenizer: Any) -> None:
        self.tokenizer = gdata.ensure_chat_template(tokenizer)
        self.stop_ids = gdata.stop_token_ids(tokenizer)

    def encode(self, ex: Example) -> Feature:
        return gdata.encode_chat(self.tokenizer, ex["messages"], self.max_length)

    def collate(self, features: Sequence[Feature]) -> Batch:
        return gdata.collate(features, self.tokenizer.pad_token_id, self.packing, self.max_length)

    # ----- model and loss -----
    def build_model(self, backbone: nn.Module) -> nn.Module:
        return CausalLM(backbone, self.decoding, self.stop_ids, self.tokenizer.pad_token_id)

    def loss(self, outputs: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return outputs["loss_sum"], outputs["loss_count"].detach()

    def loss_items(self, batch: Batch) -> float:
        return gdata.target_count(batch)

    # ----- prediction and metrics -----
    def predict(self, outputs: dict[str, torch.Tensor], batch: Batch) -> list[Any]:
        n = batch["prompt_ids"].shape[0]
        rows = batch.get("segment_ids")
        if rows is None:  # one example per row
            rows = torch.arange(n)[:, None].expand_as(batch["input_ids"])
        nll = outputs["token_nll"].float().cpu()
        scored = (batch["target_ids"] != gdata.IGNORE) & (rows >= 0)
        scored[:, 0] = False  # the first column is never predicted
        ids = rows[scored]
        sums = torch.zeros(n).index_add_(0, ids, nll[scored])
        counts = torch.zeros(n).index_add_(0, ids, torch.ones(len(ids)))
        texts = self.decode(outputs["sequences"]) if "sequences" in outputs else [""] * n
        return [{"text": t, "nll": float(s), "tokens": int(c)} for t, s, c in zip(texts, sums, counts)]

    def decode(self, sequences: torch.Tensor) -> list[str]:
        out = []
        for row in sequences.tolist():
            cut = next((i for i, t in enumerate(row) if t in self.stop_ids), len(row))
            out.append(drop_partial_char(self.tokenizer.decode(row[:cut], skip_special_tokens=True)).strip())
        return out

    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, Any]:
        scores = generation_metrics([p["text"] for p in predictions], [ex["references"] for ex in examples],
                                    self.language)
        tokens = sum(p.get("tokens", 0) for p in predictions)
        if tokens:  # teacher-forced loss of the reference answers (not defined for text-only baselines)
            scores["loss"] = sum(p["nll"] for p in predictions) / tokens
        return scores

    def baselines(self, names: Sequence[str], train: list[Example], test: list[Example],
                  embed: Callable[[list[str]], torch.Tensor] | None) -> dict[str, list[Any]]:
        """``zero_shot``: the untuned LM answers the same test prompts. ``majority``: the most common train answer
        for every prompt (a floor that shows how much the metrics reward generic text)."""
        out: dict[str, list[Any]] = {}
        for name in names:
            if name == "majority":
                top = Counter(ex["references"][0] for ex in train).most_common(1)[0][0]
                out[name] = [{"text": top, "nll": 0.0, "tokens": 0} for _ in test]
            elif name == "zero_shot":
                out[name] = self.zero_shot(test)
            else:
                raise ValueError(f"unknown baseline {name!r} for generation; known: majority, zero_shot")
        return out

    def zero_shot(self, test: list[Example]) -> list[Any]:
        return untuned_lm_predictions(self, test)

    def format_prediction(self, pred: Any, ex: Example) -> dict[str, Any]:
        return {"generated": pred["text"]}

    # ----- persistence -----
    def state(self) -> dict[str, Any]:
        return {"schema": self.schema, "stop_ids": self.stop_ids}

    def load_state(self, state: dict[str, Any], tokenizer: Any) -> None:
        self.schema = state["schema"]
        self.tokenizer = gdata.ensure_chat_template(tokenizer)
        self.stop_ids = list(state.get("stop_ids") or gdata.stop_token_ids(tokenizer))


TASKS.register("generation", GenerationTask)


def untuned_lm_predictions(task: Any, test: list[Example]) -> list[Any]:
    """The zero-shot baseline of the generative tasks: the untuned LM behind ``task``'s own head and decoding."""
    from tuneforge.evaluation.evaluate import predict_features
    from tuneforge.models import load_backbone

    if not task.model_path:
        raise ValueError("the zero-shot baseline needs TaskContext.model_path (the untuned model)")
    model = task.build_model(load_backbone(task.model_path, causal_lm=True))
    return predict_features(model, task, [task.encode(ex) for ex in test], task.baseline_batch_size)
