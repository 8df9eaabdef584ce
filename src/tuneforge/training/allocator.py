"""Process memory settings for training on CPU: keep large freed blocks instead of unmapping them every step."""

from __future__ import annotations

import ctypes
import functools
import os
import sys

# glibc mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 512 * 2**20  # TUNEFORGE_MMAP_THRESHOLD_MB overrides; 0 leaves glibc's defaults alone
TRIM_THRESHOLD = 2**31 - 1


@functools.cache
def keep_freed_memory() -> bool:
    """Serve allocations up to 512 MiB from the heap and do not trim it; True when glibc accepted the settings.

    Why: glibc hands blocks above its mmap threshold (at most 32 MiB) straight back to the kernel when freed. A full
    fine-tuning step allocates MiniLM's dense word-embedding gradient (30522 x 384 floats, 47 MB) and frees it at
    ``zero_grad``, so every step page-faults 47 MB of fresh zeroed pages: ~10% of a batch-32 SST-2 step on this CPU
    (bench/bench_train.py). Kept in the heap, the block is reused. The cost: freed memory stays in the process
    (RSS after a peak stays high). No-op outside Linux/glibc.

    Peak RSS is not unchanged where a step allocates many mid-size blocks: causal-LM SFT's activations (6-25 MB
    each) fragment the kept heap. SmolLM2-135M LoRA with gradient checkpointing, batch 8 x 512: 5.19 GB peak RSS
    with this 512 MiB threshold, 1.69 GB with ``TUNEFORGE_MMAP_THRESHOLD_MB=1`` (blocks over 1 MiB mapped and
    unmapped each time), at no measured CPU-time cost (bench/results/sft_memory_longest.json). Set that variable for
    memory-bound runs.
    """
    threshold = int(float(os.environ.get("TUNEFORGE_MMAP_THRESHOLD_MB", MMAP_THRESHOLD / 2**20)) * 2**20)
    if not sys.platform.startswith("linux") or threshold <= 0:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
