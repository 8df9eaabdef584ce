"""The training allocator settings: heap pre-touching sizes it sensibly and really removes in-step page faults."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tuneforge.training import allocator

MB = 2**20


def test_pretouch_bytes_scales_with_the_model_and_is_capped(monkeypatch):
    monkeypatch.delenv("TUNEFORGE_PRETOUCH_MB", raising=False)
    monkeypatch.setattr(allocator, "_available_bytes", lambda: 64 * 1024 * MB)
    assert allocator.pretouch_bytes(100_000) == 0  # a tiny test model: not worth it
    minilm = 22_713_216
    assert allocator.pretouch_bytes(minilm) == allocator.PRETOUCH_PER_PARAM_BYTE * 4 * minilm
    assert allocator.pretouch_bytes(10**9) == allocator.PRETOUCH_MAX
    monkeypatch.setattr(allocator, "_available_bytes", lambda: 2048 * MB)  # an eighth of what is free, at most
    assert allocator.pretouch_bytes(minilm) == 256 * MB
    monkeypatch.setattr(allocator, "_available_bytes", lambda: 256 * MB)
    assert allocator.pretouch_bytes(minilm) == 0
    monkeypatch.setenv("TUNEFORGE_PRETOUCH_MB", "0")
    assert allocator.pretouch_bytes(minilm) == 0
    monkeypatch.setenv("TUNEFORGE_PRETOUCH_MB", "300")
    assert allocator.pretouch_bytes(100) == 300 * MB


def test_pretouch_heap_only_adds_what_is_missing(monkeypatch):
    monkeypatch.setattr(allocator, "_pretouched", 0)
    assert allocator.pretouch_heap(allocator.PRETOUCH_BLOCK - 1) == 0
    assert allocator.pretouch_heap(2 * allocator.PRETOUCH_BLOCK) == 2 * allocator.PRETOUCH_BLOCK
    assert allocator.pretouch_heap(2 * allocator.PRETOUCH_BLOCK) == 0  # already there
    assert allocator.pretouch_heap(3 * allocator.PRETOUCH_BLOCK) == allocator.PRETOUCH_BLOCK


_PROBE = """
import json, resource, sys, torch
from tuneforge.training import allocator
ok = allocator.keep_freed_memory()
touched = allocator.pretouch_heap(int(sys.argv[1]) * 2**20) if ok else 0
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for size in (48, 16, 24, 40, 8, 32):  # a training step's mix of sizes, in MiB
    x = torch.zeros(size * 2**20, dtype=torch.uint8)
    y = torch.zeros(size * 2**19, dtype=torch.uint8)
    del x, y
print(json.dumps({"ok": ok, "touched": touched,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _faults(pretouch_mb: int) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, str(pretouch_mb)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc heap settings")
def test_pretouched_heap_serves_later_blocks_without_page_faults():
    cold, warm = _faults(0), _faults(256)
    if not cold["ok"]:
        pytest.skip("no glibc mallopt here")
    assert warm["touched"] == 256 * MB
    pages = 72 * MB // 4096  # the probe's largest live set, in 4 KiB pages
    assert cold["faults"] > pages // 2, cold  # without pre-touching, fresh heap pages fault in
    assert warm["faults"] < pages // 20, warm  # pre-touched: served from resident pages
