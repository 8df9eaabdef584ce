"""Change detectors over per-window series: small pure functions, each returning a statistic and whether it fired."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MAD_SCALE = 1.4826  # makes the MAD a consistent estimator of the standard deviation for normal data


@dataclass(frozen=True)
class Finding:
    """One detector's verdict on the newest window."""

    detector: str
    fired: bool
    statistic: float
    detail: str


def median_mad(values: Sequence[float]) -> tuple[float, float]:
    """Median and scaled median absolute deviation of ``values``.

    >>> median_mad([1, 2, 3, 4, 100])
    (3, 1.4826)
    """
    med = statistics.median(values)
    return med, MAD_SCALE * statistics.median(abs(v - med) for v in values)


def share_scale(mad: float, baseline: float, count: int, min_scale: float) -> float:
    """Spread a window's share is judged against: the baseline's MAD, but never below the binomial standard error
    of a share of ``count`` texts at the baseline rate (small windows are noisy), nor below ``min_scale``.

    >>> round(share_scale(0.0, 0.2, 16, 0.05), 3)
    0.1
    """
    se = (max(baseline, 0.02) * (1 - min(baseline, 0.98)) / max(count, 1)) ** 0.5
    return max(mad, se, min_scale)


def robust_z(history: Sequence[float], current: float, count: int, min_scale: float) -> float:
    """(current - median) / spread: a z-score that one past outlier does not inflate (see ``share_scale``)."""
    med, mad = median_mad(history)
    return (current - med) / share_scale(mad, med, count, min_scale)


def cusum(z: Sequence[float], drift: float) -> float:
    """One-sided upper CUSUM of standardised values: S_t = max(0, S_{t-1} + z_t - drift). Returns the last S;
    a sustained moderate rise accumulates where no single window's z reaches the threshold.

    >>> cusum([0.5, 2.0, 2.0, 3.0], 1.0)
    4.0
    """
    s = 0.0
    for v in z:
        s = max(0.0, s + v - drift)
    return s


def negative_surge_z(history: Sequence[float], current: float, count: int, *, z: float, min_volume: int,
                     min_history: int, min_scale: float) -> Finding:
    """Negative share of the newest window against the topic's own baseline of earlier windows."""
    if len(history) < min_history or count < min_volume:
        return Finding("negative_z", False, 0.0, f"volume {count}, history {len(history)}")
    stat = robust_z(history, current, count, min_scale)
    return Finding("negative_z", stat >= z, stat, f"negative share {current:.2f} vs baseline median "
                                                  f"{statistics.median(history):.2f}")


def negative_cusum(history: Sequence[float], recent: Sequence[tuple[float, int]], *, h: float, drift: float,
                   min_volume: int, min_history: int, min_scale: float) -> Finding:
    """CUSUM over the last few windows (``recent``: (share, count) pairs, newest last) against the baseline
    ``history``; each window is standardised by its own spread (``share_scale``)."""
    count = recent[-1][1] if recent else 0
    if len(history) < min_history or count < min_volume:
        return Finding("negative_cusum", False, 0.0, f"volume {count}, history {len(history)}")
    med, mad = median_mad(history)
    z = [(x - med) / share_scale(mad, med, n, min_scale) for x, n in recent if n]
    stat = cusum(z, drift)
    # the newest window must itself push the sum up: once a surge ends the sum decays, and no new alert fires
    return Finding("negative_cusum", stat >= h and z[-1] > drift, stat, f"CUSUM over {len(recent)} windows")


def volume_spike(history: Sequence[float], count: int, *, z: float, ratio: float, min_volume: int,
                 min_history: int) -> Finding:
    """Count far above the topic's usual count: robust z ≥ ``z`` and at least ``ratio`` × the median."""
    if len(history) < min_history or count < min_volume:
        return Finding("volume_spike", False, 0.0, f"volume {count}, history {len(history)}")
    med, mad = median_mad(history)
    stat = (count - med) / max(mad, 1.0)  # counts are integers: a MAD under one text is noise
    return Finding("volume_spike", stat >= z and count >= ratio * max(med, 1.0), stat,
                   f"{count} texts vs median {med:g}")


def sentiment_reversal(net: Sequence[float], counts: Sequence[int], *, span: int, delta: float,
                       min_volume: int) -> Finding:
    """Net sentiment (positive − negative share) of the last ``span`` windows against the ``span`` before:
    fires when the sign flips and the mean moves by at least ``delta``."""
    if len(net) < 2 * span or sum(counts[-span:]) < min_volume or sum(counts[-2 * span:-span]) < min_volume:
        return Finding("reversal", False, 0.0, "not enough windows or volume")
    before = sum(net[-2 * span:-span]) / span
    after = sum(net[-span:]) / span
    flipped = (before > 0) != (after > 0)
    return Finding("reversal", flipped and abs(after - before) >= delta, after - before,
                   f"net sentiment {before:+.2f} → {after:+.2f}")
