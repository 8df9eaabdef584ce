"""Batched, length-sorted prediction under ``inference_mode``; shared by validation, test and the Predictor."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tuneforge.tasks.base import Feature, Task
from tuneforge.training.batching import by_length


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Everything but the targets, on ``device``."""
    return {k: v.to(device) for k, v in batch.items() if k != "labels" and isinstance(v, torch.Tensor)}


def predict_features(model: nn.Module, task: Task, features: Sequence[Feature], batch_size: int = 64,
                     dtype: torch.dtype | None = None) -> list[Any]:
    """Predictions for ``features`` in their original order. Batches are sorted by length to cut padding.

    Under reduced precision (bf16 autocast, or an int8 model: inference/int8.py) the rows whose decision it could
    flip are collected and redone in fp32 at the end, in length-sorted batches of their own (``recheck_near_ties``).
    """
    if not features:
        return []
    device = next(model.parameters(), torch.empty(0)).device  # a parameterless stand-in (ONNX backend): CPU
    was_training = model.training
    model.eval()
    out: list[Any] = [None] * len(features)
    reduced = (dtype is not None and dtype != torch.float32) or getattr(model, "exact", None) is not None
    near_ties: list[int] = []
    with torch.inference_mode():
        with autocast_context(device, dtype):
            for idx in by_length([f["length"] for f in features], batch_size):
                batch = task.collate([features[i] for i in idx])
                outputs = model(**model_inputs(batch, device))
                for i, pred in zip(idx, task.predict(outputs, batch)):
                    out[i] = pred
                if reduced:
                    near_ties.extend(idx[j] for j in near_tie_rows(model, task, outputs))
        if near_ties:
            recheck_near_ties(model, task, features, near_ties, batch_size, out)
    if hasattr(model, "rows_rechecked"):  # an int8 model keeps count (bench and logs report the share)
        model.rows_predicted += len(features)
        model.rows_rechecked += len(near_ties)
    model.train(was_training)
    return out


def near_tie_rows(model: nn.Module, task: Task, outputs: Any) -> list[int]:
    """Rows of a reduced-precision batch whose decision is within the task's ``near_ties`` bound of changing.

    bf16 autocast moved MiniLM SST-2 logits by up to 0.035 (1 label of 1,821 flipped); the classification bound is
    0.2 logits (~3% of rows). An int8 model brings its own bound (``near_tie_margin``). Tasks without ``near_ties``
    are left as they are."""
    near = task.near_ties
    if near is None:
        return []
    margin = getattr(model, "near_tie_margin", None)
    return near(outputs) if margin is None else near(outputs, margin)


def recheck_near_ties(model: nn.Module, task: Task, features: Sequence[Feature], rows: list[int], batch_size: int,
                      out: list[Any]) -> None:
    """Recompute ``features[rows]`` in fp32 and replace their predictions in ``out``, so labels match an fp32
    run's at reduced-precision speed. The fp32 model is an int8 model's ``exact`` original, else ``model`` itself
    with autocast off (accelerate's bf16 forward would re-enter autocast: its ``_original_forward`` is used)."""
    device = next(model.parameters()).device
    forward = getattr(model, "exact", None)
    if forward is None:
        forward = getattr(model, "_original_forward", model)
    with torch.autocast(device_type=device.type, enabled=False):
        for idx in by_length([features[i]["length"] for i in rows], batch_size):
            picked = [rows[j] for j in idx]
            batch = task.collate([features[i] for i in picked])
            for i, pred in zip(picked, task.predict(forward(**model_inputs(batch, device)), batch)):
                out[i] = pred
