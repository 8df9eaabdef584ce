"""Process memory settings for training on CPU: keep large freed blocks instead of unmapping them every step, and
fault the heap in once before training instead of a few pages at a time inside every step."""

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
PRETOUCH_PER_PARAM_BYTE = 10  # heap pre-touched per byte of fp32 parameters (TUNEFORGE_PRETOUCH_MB overrides)
PRETOUCH_MIN = 64 * 2**20  # smaller models: not worth it
PRETOUCH_MAX = 1536 * 2**20  # below TRIM_THRESHOLD: a freed top chunk at or above it would be trimmed away
PRETOUCH_BLOCK = 64 * 2**20  # under MMAP_THRESHOLD, so the blocks come from the heap and return to it
_pretouched = 0  # bytes this process has pre-touched so far


@functools.cache
def keep_freed_memory() -> bool:
    """Serve allocations up to 512 MiB from the heap and do not trim it; True when glibc accepted the settings.

    Why: glibc hands blocks above its mmap threshold (at most 32 MiB) straight back to the kernel when freed. A full
    fine-tuning step allocates MiniLM's dense word-embedding gradient (30522 x 384 floats, 47 MB) and frees it at
    ``zero_grad``, so every step page-faults 47 MB of fresh zeroed pages: ~10% of a batch-32 SST-2 step on this CPU
    (bench/bench_train.py). Kept in the heap, the block is reused. The cost: freed memory stays in the process
    (peak RSS is unchanged; RSS after a peak stays high). No-op outside Linux/glibc.
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


def pretouch_bytes(n_params: int) -> int:
    """How much heap to pre-touch for training a model of ``n_params`` parameters on CPU (0: none).

    ``PRETOUCH_PER_PARAM_BYTE`` x its fp32 size, at most ``PRETOUCH_MAX`` and an eighth of the memory available now;
    0 below ``PRETOUCH_MIN``. ``TUNEFORGE_PRETOUCH_MB`` sets the amount instead (0 turns it off).
    """
    override = os.environ.get("TUNEFORGE_PRETOUCH_MB")
    if override is not None:
        return int(float(override) * 2**20)
    want = min(PRETOUCH_PER_PARAM_BYTE * 4 * n_params, PRETOUCH_MAX, _available_bytes() // 8)
    return want if want >= PRETOUCH_MIN else 0


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def pretouch_heap(nbytes: int) -> int:
    """Grow the heap by ``nbytes`` (beyond what this process pre-touched before), touch every page, free it.

    Why: a training step allocates and frees activations, autocast weight copies and gradients of many sizes. With
    freed blocks kept (``keep_freed_memory``) the heap still fragments and grows for hundreds of steps, and each new
    page costs a page fault inside a step: ~1,100 faults a step over the first 120 steps of MiniLM on SST-2 (RSS
    1.0 -> 2.0 GB over 400 steps), 1-5 us each on a 2-core VM. Touched here once, in 64 MiB blocks that glibc serves
    from the heap and, freed, keeps as one resident free chunk, those pages are already there: 12 faults a step and a
    flat RSS (1.75 GB) in the same run. Needs ``keep_freed_memory()`` to have succeeded; returns the bytes touched.
    """
    global _pretouched
    extra = min(nbytes, PRETOUCH_MAX) - _pretouched
    if extra < PRETOUCH_BLOCK:
        return 0
    import torch

    blocks = [torch.zeros(PRETOUCH_BLOCK, dtype=torch.uint8) for _ in range(extra // PRETOUCH_BLOCK)]
    touched = len(blocks) * PRETOUCH_BLOCK
    del blocks
    _pretouched += touched
    return touched
