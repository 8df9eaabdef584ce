"""Checkpoints: trainable weights, optimizer, scheduler, RNG states and data position, written atomically."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS = "model.safetensors"


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only what training can change: a head-only or LoRA run saves a few MB, not the whole backbone."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    # clone: safetensors refuses tensors that share storage (tied embeddings)
    return {n: t.detach().to("cpu").clone().contiguous() for n, t in model.state_dict().items() if n in names}


def save_weights(model: nn.Module, folder: Path) -> None:
    state = trainable_state(model)
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})


def load_weights(model: nn.Module, folder: Path) -> list[str]:
    """Load saved tensors into a freshly built model; every saved tensor must find its place."""
    state = load_file(str(Path(folder) / WEIGHTS))
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise RuntimeError(f"{folder}: checkpoint tensors do not match the model: {result.unexpected_keys[:5]}")
    return list(state)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    progress: dict[str, Any], keep: int, extra: Any = None) -> Path:
    """Write ``folder`` atomically (temp dir + rename) and prune all but the newest ``keep`` step-* siblings.
    ``extra``: anything with ``save(folder)`` that belongs to the checkpoint (the weight average)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_weights(model, tmp)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()},
                   tmp / "trainer_state.pt")
        if extra is not None:
            extra.save(tmp)
        (tmp / "progress.json").write_text(json.dumps(progress, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(folder.parent)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def list_checkpoints(root: Path) -> list[Path]:
    """Complete step-N checkpoints, oldest first (a temp dir from a killed save is never listed)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith("step-") and (p / "progress.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def load_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore weights, optimizer and scheduler. Returns (progress, rng) — the caller restores RNG last."""
    load_weights(model, folder)
    state = torch.load(folder / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return read_progress(folder), state["rng"]


def read_progress(folder: Path) -> dict[str, Any]:
    """A checkpoint's ``progress.json``: step, data position, best metric, history, precision."""
    return json.loads((folder / "progress.json").read_text())
