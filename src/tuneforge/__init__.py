"""TuneForge: supervised fine-tuning of pretrained language models with one config and one CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["load_config", "config_from_dict", "train", "audit", "Predictor", "RunConfig"]

if TYPE_CHECKING:
    from tuneforge.config import RunConfig, config_from_dict, load_config
    from tuneforge.inference.predictor import Predictor
    from tuneforge.runner import audit, train

_LAZY = {"load_config": "tuneforge.config", "config_from_dict": "tuneforge.config", "RunConfig": "tuneforge.config",
         "train": "tuneforge.runner", "audit": "tuneforge.runner", "Predictor": "tuneforge.inference.predictor"}


def __getattr__(name: str) -> Any:
    """Import on first use, so ``import tuneforge`` stays light (no torch until needed)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tuneforge' has no attribute {name!r}")
