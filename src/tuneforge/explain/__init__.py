"""Why a model decided as it did: token attributions (Integrated Gradients, occlusion) for a run's inputs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tuneforge.explain.errors import ExplainError

SUPPORTED = ("classification", "ner", "generation")


def explain_inputs(model: Any, task: Any, items: Iterable[str | dict[str, Any]], label: str | None = None,
                   steps: int = 50, span: tuple[int, int] | None = None, span_text: str | None = None,
                   answer: str | None = None) -> list[dict[str, Any]]:
    """One explanation per input: per-word IG and occlusion scores for ``label`` (default: the prediction); for
    NER, one such set per predicted entity (``label`` does not apply); for generation, the prompt's words for a
    span of the answer (``span`` token bounds or ``span_text``; the answer is generated unless ``answer`` is given).

    >>> # explain_inputs(predictor.model, predictor.task, ["my card has not arrived"])[0]["words"]
    """
    from torch import nn

    from tuneforge.explain.classify import explain_one

    name = getattr(task, "name", None)
    if name not in SUPPORTED or getattr(task, "multi_label", False):
        raise ExplainError(f"explanations cover single-label classification, ner and generation runs; this run's "
                           f"task is {name}{' (multi-label)' if getattr(task, 'multi_label', False) else ''}")
    if not isinstance(model, nn.Module) or not any(True for _ in model.parameters()):
        raise ExplainError("explanations need the torch model (gradients): load the run with backend torch, "
                           "precision fp32")
    if name != "generation" and (span is not None or span_text is not None or answer is not None):
        raise ExplainError("--span, --span-text and --answer apply to generation runs")
    if name == "generation":
        from tuneforge.explain.generation import explain_generation

        if label is not None:
            raise ExplainError("--label does not apply to generation: choose the explained part of the answer "
                               "with --span or --span-text")
        return [explain_generation(model, task, item, steps, span, span_text, answer) for item in items]
    if name == "ner":
        from tuneforge.explain.ner import explain_entities

        if label is not None:
            raise ExplainError("--label does not apply to ner: every predicted entity is explained")
        return [explain_entities(model, task, task.parse_input(item), steps) for item in items]
    out = []
    for item in items:
        ex = task.parse_input(item)
        out.append(explain_one(model, task.tokenizer, list(task.labels), ex["text"], ex.get("text_pair"), label,
                               task.max_length, steps))
    return out


__all__ = ["ExplainError", "explain_inputs"]
