"""Checkpoints: trainable weights, optimizer, scheduler, RNG states and data position, written atomically with
checksums, and read back without unpickling.

A step checkpoint ``checkpoints/step-N/`` holds ``model.safetensors``, ``trainer_state.safetensors`` (optimizer,
scheduler and RNG state: see ``state_codec``), ``progress.json``, the weight average when there is one, and
``manifest.json`` (size and sha256 of every file), written last. ``best/`` holds the weights and ``progress.json``
only. Each folder is written under a temp name, fsynced and renamed into place (``io_utils.atomic_dir``). On resume
a checkpoint that fails its checksums is reported and the previous one is used.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tuneforge.io_utils import atomic_dir, clean_temp_dirs, remove_dir, sha256_file
from tuneforge.training.state_codec import StateFormatError, load_state, save_state

WEIGHTS = "model.safetensors"
STATE = "trainer_state.safetensors"
PROGRESS = "progress.json"
MANIFEST = "manifest.json"
FORMAT = 2
# what older versions wrote with torch.save: a pickle, which is never opened (reading one can run code)
PICKLED_STATE = "trainer_state.pt"
REQUIRED = {"step": (WEIGHTS, STATE, PROGRESS), "best": (WEIGHTS, PROGRESS)}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (damaged, truncated, old format, not this model); the message names it."""


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only what training can change: a head-only or LoRA run saves a few MB, not the whole backbone."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    # clone: safetensors refuses tensors that share storage (tied embeddings)
    return {n: t.detach().to("cpu").clone().contiguous() for n, t in model.state_dict().items() if n in names}


def save_weights(model: nn.Module, folder: Path) -> None:
    state = trainable_state(model)
    save_file(state, str(folder / WEIGHTS), metadata={"format": "pt"})


def load_weights(model: nn.Module, folder: Path) -> list[str]:
    """Load saved tensors into a freshly built model; every saved tensor must find its place. When the folder has
    a manifest, the weights' checksum is checked first."""
    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        _check_files(folder, _read_manifest(folder), only=(WEIGHTS,))
    return _load_weights_file(model, folder)


def _load_weights_file(model: nn.Module, folder: Path) -> list[str]:
    path = folder / WEIGHTS
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors' own error type, or OSError: a damaged or missing file
        raise CheckpointError(f"{path}: cannot read the weights ({e})") from None
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatch: another model's checkpoint
        raise CheckpointError(f"{path}: the weights do not fit this model: {str(e).splitlines()[0]}") from None
    if result.unexpected_keys:
        raise CheckpointError(f"{folder}: checkpoint tensors do not match the model: {result.unexpected_keys[:5]}")
    return list(state)


def rng_state() -> dict[str, Any]:
    """Every RNG training draws from; tuples and numpy arrays survive ``state_codec`` exactly."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    progress: dict[str, Any], keep: int, extra: Any = None) -> Path:
    """Write ``folder`` atomically and prune all but the newest ``keep`` step-* siblings. ``extra``: anything with
    ``save(folder)`` that belongs to the checkpoint (the weight average)."""
    with atomic_dir(folder) as tmp:
        save_weights(model, tmp)
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}
        try:
            save_state(state, tmp / STATE)
        except StateFormatError as e:
            raise CheckpointError(f"{folder}: {e}") from None
        if extra is not None:
            extra.save(tmp)
        (tmp / PROGRESS).write_text(json.dumps(progress, indent=2))
        write_manifest(tmp, "step")
    for old in list_checkpoints(folder.parent)[:-keep] if keep > 0 else []:
        remove_dir(old)
    return folder


def save_best(folder: Path, model: nn.Module, progress: dict[str, Any]) -> Path:
    """``best/``: the weights that were validated and their progress; no optimizer state (that lives in the step
    checkpoints). Replaced whole: an old ``best/`` is never half-overwritten."""
    with atomic_dir(folder) as tmp:
        save_weights(model, tmp)
        (tmp / PROGRESS).write_text(json.dumps(progress, indent=2))
        write_manifest(tmp, "best")
    return folder


def write_manifest(folder: Path, kind: str) -> None:
    """Size and sha256 of every file in ``folder``; written last, so its presence means the rest is complete."""
    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, "kind": kind, "files": files}, indent=2))


def list_checkpoints(root: Path) -> list[Path]:
    """The step-N checkpoint folders, oldest first (a temp folder from a killed save is never listed). Whether
    each is intact is ``verify``'s question."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if re.fullmatch(r"step-\d+", p.name) and p.is_dir()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def verify(folder: Path) -> None:
    """Raise ``CheckpointError`` unless ``folder`` is a complete checkpoint whose files match their checksums."""
    if (folder / PICKLED_STATE).exists():
        raise CheckpointError(f"{folder / PICKLED_STATE}: a pickle file (an older TuneForge's format, or placed "
                              f"there by someone else), never loaded since reading one can run code")
    manifest = _read_manifest(folder)
    kind = manifest.get("kind")
    missing = [f for f in REQUIRED.get(kind, REQUIRED["step"]) if f not in manifest["files"]]
    if missing:
        raise CheckpointError(f"{folder / MANIFEST}: lists no {', '.join(missing)}")
    _check_files(folder, manifest)


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {MANIFEST} (an incomplete checkpoint, or one written by an older "
                              f"TuneForge)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"),
                                                                                              dict):
        raise CheckpointError(f"{path}: not a format-{FORMAT} checkpoint manifest")
    return manifest


def _check_files(folder: Path, manifest: dict[str, Any], only: tuple[str, ...] | None = None) -> None:
    for name, entry in manifest["files"].items():
        if only is not None and name not in only:
            continue
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise CheckpointError(f"{path}: {size} bytes where {entry.get('bytes')} were written (truncated or "
                                  f"damaged)")
        if sha256_file(path) != entry.get("sha256"):
            raise CheckpointError(f"{path}: sha256 differs from the one written (damaged)")


def load_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    extra: Any = None, verified: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Restore weights, optimizer, scheduler (and ``extra``'s ``load(folder)``). Returns (progress, rng): the
    caller restores RNG last."""
    if not verified:
        verify(folder)
    _load_weights_file(model, folder)
    try:
        state = load_state(folder / STATE)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng = state["rng"]
    except (StateFormatError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{folder / STATE}: cannot restore the trainer state ({e})") from None
    if extra is not None:
        extra.load(folder)
    return read_progress(folder), rng


def resume(root: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, extra: Any = None,
           log: Callable[[str], None] = print) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """Load the newest intact checkpoint under ``root``: (folder, progress, rng), or None when there is none at
    all. A damaged one is reported through ``log`` and the previous one tried; none intact is a
    ``CheckpointError`` listing why each was refused."""
    refused = []
    for folder in reversed(list_checkpoints(root)):
        try:
            verify(folder)
        except CheckpointError as e:
            refused.append(str(e))
            log(f"checkpoint {folder.name} refused: {e}")
            continue
        progress, rng = load_checkpoint(folder, model, optimizer, scheduler, extra, verified=True)
        if refused:
            log(f"falling back to {folder.name}, the newest intact checkpoint")
        return folder, progress, rng
    if refused:
        reasons = "; ".join(r.replace(f"{root}{os.sep}", "") for r in refused)
        raise CheckpointError(f"no usable checkpoint to resume from in {root}: {reasons}. Start the run again "
                              f"(train.overwrite=true) or put intact checkpoints back")
    return None


def newest_intact(root: Path) -> Path | None:
    """The checkpoint ``resume`` would load, or None."""
    for folder in reversed(list_checkpoints(root)):
        try:
            verify(folder)
            return folder
        except CheckpointError:
            continue
    return None


def clean_leftovers(run_dir: Path) -> list[str]:
    """Remove the temp folders a killed save left (``.step-N.*`` and ``.best.*``) and put back a ``best/`` whose
    replacement was interrupted. Returns one line per action."""
    run_dir = Path(run_dir)
    return (clean_temp_dirs(run_dir, re.compile("best"))
            + clean_temp_dirs(run_dir / "checkpoints", re.compile(r"step-\d+")))


def read_progress(folder: Path) -> dict[str, Any]:
    """A checkpoint's ``progress.json``: step, data position, best metric, history, precision."""
    path = folder / PROGRESS
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None
