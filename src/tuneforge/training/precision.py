"""Pick the compute precision: bf16 autocast where the hardware runs it faster than fp32, else fp32.

On a GPU that is ``torch.cuda.is_bf16_supported()``. On a CPU, bf16 instructions (AVX-512 BF16, AMX) are necessary
but not enough: a 2-core Xeon with AVX-512 BF16 and no AMX measured 165 GFLOP/s for a bf16 matmul against 300 for
fp32 (bf16 autocast made a MiniLM step 1.8x slower), while a 2-core EPYC measured 390 against 160 and a 2-core Xeon
with AMX ran bf16 at 5.2x fp32's speed. So ``auto`` times one bf16 and one fp32 matmul (~50 ms, once per process) and
takes bf16 only where it is clearly faster. Without those instructions (a 2-core EPYC Milan, AVX2 only: bf16 matmuls
emulated at ~1.3 GFLOP/s against fp32's ~100) the flags alone decide, with no timing.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import torch

# a bf16 matmul must beat fp32 by this factor: autocast's weight casts and bf16 element-wise ops eat the rest
BF16_MIN_SPEEDUP = 1.3
_PROBE = (256, 1024, 1024)  # (m, k, n): a transformer FFN-sized product, ~0.5 GFLOP


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmul (AVX-512 BF16 or AMX); emulated bf16 is slower than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def matmul_seconds(dtype: torch.dtype, m: int, k: int, n: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` seconds of one ``(m, k) @ (k, n)`` CPU matmul in floating ``dtype``, after a warm-up
    call. (int8 is timed per kernel, quantising included, by inference/int8.kernel_speedups.)"""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(dtype)
    b = torch.randn(k, n, generator=gen).to(dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return best


@functools.cache
def cpu_bf16_speedup() -> float:
    """fp32 seconds over bf16 seconds for one FFN-sized matmul on this CPU, at the current thread count."""
    return matmul_seconds(torch.float32, *_PROBE) / matmul_seconds(torch.bfloat16, *_PROBE)


def _multi_process() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def cpu_bf16_is_faster() -> bool:
    """True when the CPU has native bf16 and a bf16 matmul measures at least ``BF16_MIN_SPEEDUP`` x fp32's speed.

    In a multi-process CPU run (``WORLD_SIZE`` > 1) timings could differ between ranks, which must agree on the
    precision: there the instruction flags decide, as they did before timing was added.
    """
    if not cpu_supports_bf16():
        return False
    return _multi_process() or cpu_bf16_speedup() >= BF16_MIN_SPEEDUP


def resolve_precision(requested: str) -> str:
    """``auto`` → ``bf16`` on a bf16-capable GPU or on a CPU where bf16 is measurably faster, else ``fp32``."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_bf16_is_faster() else "fp32"


def describe_auto() -> str:
    """One line on why ``auto`` chose what it chose on this machine, for logs and reports."""
    if torch.cuda.is_available():
        return f"GPU bf16 support: {torch.cuda.is_bf16_supported()}"
    if not cpu_supports_bf16():
        return "CPU has no native bf16 (AVX-512 BF16 / AMX)"
    if _multi_process():
        return "CPU has native bf16 (multi-process run: flags decide)"
    return f"CPU bf16 matmul {cpu_bf16_speedup():.2f}x fp32's speed (bf16 needs >= {BF16_MIN_SPEEDUP}x)"


def run_precision(requested: str, checkpoints: Path | None = None) -> str:
    """The precision of a training run: ``resolve_precision``, except that a run resumed with ``auto`` keeps the
    precision its newest checkpoint recorded, so exact resume does not depend on a fresh timing."""
    if requested == "auto" and checkpoints is not None:
        from tuneforge.training.checkpoint import newest_intact, read_progress

        found = newest_intact(checkpoints)  # the one resume will load
        if found:
            recorded = read_progress(found).get("precision")
            if recorded in ("bf16", "fp32"):
                return recorded
    return resolve_precision(requested)
