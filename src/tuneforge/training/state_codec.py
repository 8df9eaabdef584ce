"""Optimizer, scheduler and RNG state as one safetensors file (tensors + a JSON tree): read back without unpickling.

``torch.save`` writes a pickle, and reading a pickle can run any code the file names. Here every tensor goes into
safetensors and everything else into a JSON tree in its metadata, with tags for what JSON cannot say exactly
(tuples, non-string dict keys, numpy arrays), so ``decode(encode(x))`` rebuilds ``x`` value for value: resume
stays bitwise exact. Anything else (a function, an arbitrary object) is refused when saving.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

TREE_KEY = "tree"


class StateFormatError(ValueError):
    """A saved state that cannot be encoded or decoded; the message names where in the tree."""


def encode(obj: Any, tensors: dict[str, torch.Tensor], where: str = "state") -> Any:
    """A JSON-able tree for ``obj``; tensors are moved into ``tensors`` (CPU, contiguous) and referenced by key."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").contiguous()
        return {"$tensor": key}
    if isinstance(obj, np.ndarray):
        return {"$ndarray": obj.dtype.str, "shape": list(obj.shape), "data": obj.ravel().tolist()}
    if isinstance(obj, tuple):
        return {"$tuple": [encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: encode(v, tensors, f"{where}.{k}") for k, v in obj.items()}
        return {"$items": [[encode(k, tensors, f"{where} key"), encode(v, tensors, f"{where}[{k!r}]")]
                           for k, v in obj.items()]}
    if isinstance(obj, np.generic):
        return {"$npscalar": obj.dtype.str, "value": obj.item()}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise StateFormatError(f"{where}: a {type(obj).__name__} cannot be saved in a checkpoint (tensors and plain "
                           f"values only)")


def decode(tree: Any, tensors: dict[str, torch.Tensor], where: str = "state") -> Any:
    """The inverse of ``encode``."""
    if isinstance(tree, list):
        return [decode(v, tensors, f"{where}[{i}]") for i, v in enumerate(tree)]
    if not isinstance(tree, dict):
        if tree is None or isinstance(tree, (bool, int, float, str)):
            return tree
        raise StateFormatError(f"{where}: unexpected {type(tree).__name__}")
    if "$tensor" in tree:
        if tree["$tensor"] not in tensors:
            raise StateFormatError(f"{where}: tensor {tree['$tensor']!r} is missing")
        return tensors[tree["$tensor"]]
    if "$ndarray" in tree:
        return np.asarray(tree["data"], dtype=np.dtype(tree["$ndarray"])).reshape(tree["shape"])
    if "$tuple" in tree:
        return tuple(decode(v, tensors, f"{where}[{i}]") for i, v in enumerate(tree["$tuple"]))
    if "$items" in tree:
        return {decode(k, tensors, where): decode(v, tensors, f"{where}[{k!r}]") for k, v in tree["$items"]}
    if "$npscalar" in tree:
        return np.dtype(tree["$npscalar"]).type(tree["value"])
    return {k: decode(v, tensors, f"{where}.{k}") for k, v in tree.items()}


def save_state(state: Any, path: Path) -> None:
    """Write ``state`` (nested dicts/lists/tuples of tensors, numpy arrays and plain values) to ``path``."""
    tensors: dict[str, torch.Tensor] = {}
    tree = encode(state, tensors)
    seen: set[int] = set()
    for key, t in tensors.items():  # safetensors refuses tensors that share memory: copy the rare shared one
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen and t.numel():
            tensors[key] = t.clone()
        seen.add(ptr)
    # allow_nan: a NaN or inf (a scheduler's best metric) round-trips through Python's json as NaN/Infinity
    save_file(tensors, str(path), metadata={TREE_KEY: json.dumps(tree, allow_nan=True)})


def load_state(path: Path) -> Any:
    """Read a file written by ``save_state``; raises ``StateFormatError`` when it is not one."""
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in list(f.keys())}
    except Exception as e:  # safetensors raises its own error type, or OSError, for a damaged file
        raise StateFormatError(f"{path.name}: not a readable safetensors file ({e})") from None
    if TREE_KEY not in meta:
        raise StateFormatError(f"{path.name}: no state tree in its metadata")
    try:
        return decode(json.loads(meta[TREE_KEY]), tensors)
    except (ValueError, TypeError, KeyError) as e:
        raise StateFormatError(f"{path.name}: damaged state tree ({e})") from None
