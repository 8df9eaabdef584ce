"""The fiddly maths of the loop, kept small and unit-tested: loss scaling, accumulation windows, throughput."""

from __future__ import annotations

import math

import torch


def scaled_loss(loss_sum: torch.Tensor, window_items: float) -> torch.Tensor:
    """Loss for one micro-batch inside an accumulation window.

    Each micro-batch contributes ``sum of its item losses / items in the whole window``, so the accumulated
    gradient equals the gradient of the mean loss over the window, however unevenly items fall into
    micro-batches (padding-aware token counts, a short last batch). Dividing each micro-batch mean by the
    number of micro-batches, the common shortcut, is wrong whenever micro-batches differ in size.
    """
    return loss_sum / max(float(window_items), 1e-12)


def accumulation_windows(num_batches: int, grad_accum: int) -> list[int]:
    """Sizes (in micro-batches) of the optimizer steps of one epoch; the last window may be short."""
    full, rest = divmod(num_batches, grad_accum)
    return [grad_accum] * full + ([rest] if rest else [])


def steps_per_epoch(num_batches: int, grad_accum: int) -> int:
    return math.ceil(num_batches / grad_accum)


def total_steps(num_batches: int, grad_accum: int, epochs: float, max_steps: int | None) -> int:
    if max_steps:
        return int(max_steps)
    return max(1, math.ceil(steps_per_epoch(num_batches, grad_accum) * epochs))


def is_finite(value: float) -> bool:
    return math.isfinite(value)


class Throughput:
    """Samples/s and tokens/s over the last ``window`` steps (a smoothed rate for the progress bar)."""

    def __init__(self, window: int = 20):
        self.window = window
        self.events: list[tuple[float, int, int]] = []

    def add(self, t: float, samples: int, tokens: int) -> None:
        self.events.append((t, samples, tokens))
        del self.events[: -self.window - 1]

    def rates(self) -> tuple[float, float]:
        if len(self.events) < 2:
            return 0.0, 0.0
        dt = self.events[-1][0] - self.events[0][0]
        s = sum(e[1] for e in self.events[1:])
        k = sum(e[2] for e in self.events[1:])
        return (s / dt, k / dt) if dt > 0 else (0.0, 0.0)
