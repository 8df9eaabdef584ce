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
    """Predictions for ``features`` in their original order. Batches are sorted by length to cut padding."""
    if not features:
        return []
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[Any] = [None] * len(features)
    with torch.inference_mode(), autocast_context(device, dtype):
        for idx in by_length([f["length"] for f in features], batch_size):
            batch = task.collate([features[i] for i in idx])
            outputs = model(**model_inputs(batch, device))
            for i, pred in zip(idx, task.predict(outputs, batch)):
                out[i] = pred
    model.train(was_training)
    return out
