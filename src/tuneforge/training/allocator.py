"""Process memory settings for training on CPU: keep large freed blocks instead of unmapping them every step."""

from __future__ import annotations

import ctypes
import os
import sys

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MB = {"encoder": 512, "causal_lm": 1}  # TUNEFORGE_MMAP_THRESHOLD_MB overrides; 0: glibc's own
TRIM_THRESHOLD = 2**31 - 1


def mmap_threshold_mb(causal_lm: bool) -> float:
    """The glibc mmap threshold for a run: ``TUNEFORGE_MMAP_THRESHOLD_MB`` when set, else 512 MiB for encoder
    bodies and 1 MiB for causal-LM bodies (generative SFT, or a decoder under a classification head).

    Why two values: glibc hands blocks above its mmap threshold (at most 32 MiB by default) straight back to the
    kernel when freed. A full fine-tuning step of an encoder allocates MiniLM's dense word-embedding gradient
    (30522 x 384 floats, 47 MB) and frees it at ``zero_grad``, so every step would page-fault 47 MB of fresh
    zeroed pages: ~10% of a batch-32 SST-2 step on a 2-core CPU (bench/bench_train.py). Kept in the heap under a
    512 MiB threshold, the block is reused. Causal-LM SFT instead allocates many mid-size activation blocks
    (6-25 MB) of changing sizes that fragment a kept heap: SmolLM2-135M LoRA with gradient checkpointing, batch
    8 x 512, peaks at 5.19 GB RSS with 512 MiB and 1.69 GB with 1 MiB, and used less CPU time (161 s against 209 s,
    bench/results/sft_memory_longest.json). Full fine-tuning of SmolLM2 under a classification head (batch 16 x 128)
    reached 10.9 GB RSS with 512 MiB.
    """
    env = os.environ.get("TUNEFORGE_MMAP_THRESHOLD_MB")
    return float(env) if env is not None else MMAP_THRESHOLD_MB["causal_lm" if causal_lm else "encoder"]


def keep_freed_memory(threshold_mb: float = MMAP_THRESHOLD_MB["encoder"]) -> bool:
    """Serve allocations up to ``threshold_mb`` from the heap and never trim it; True when glibc accepted it.

    The cost of a high threshold: freed memory stays in the process (RSS after a peak stays high). No-op outside
    Linux/glibc, and for a threshold of 0 (glibc's defaults).
    """
    threshold = int(threshold_mb * 2**20)
    if not sys.platform.startswith("linux") or threshold <= 0:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
