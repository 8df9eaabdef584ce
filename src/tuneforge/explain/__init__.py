"""Why a model decided as it did: token attributions (Integrated Gradients, occlusion) for a run's inputs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tuneforge.explain.errors import ExplainError

SUPPORTED = ("classification", "ner")


def explain_inputs(model: Any, task: Any, items: Iterable[str | dict[str, Any]], label: str | None = None,
                   steps: int = 50) -> list[dict[str, Any]]:
    """One explanation per input: per-word IG and occlusion scores for ``label`` (default: the prediction); for
    NER, one such set per predicted entity (``label`` does not apply).

    >>> # explain_inputs(predictor.model, predictor.task, ["my card has not arrived"])[0]["words"]
    """
    from torch import nn

    from tuneforge.explain.classify import explain_one

    name = getattr(task, "name", None)
    if name not in SUPPORTED or getattr(task, "multi_label", False):
        raise ExplainError(f"explanations cover single-label classification and ner runs; this run's task is "
                           f"{name}{' (multi-label)' if getattr(task, 'multi_label', False) else ''}")
    if not isinstance(model, nn.Module) or not any(True for _ in model.parameters()):
        raise ExplainError("explanations need the torch model (gradients): load the run with backend torch, "
                           "precision fp32")
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
