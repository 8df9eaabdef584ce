"""Optional parts live in extras (``pip install 'tuneforge[serve]'``); a missing one fails with one line that names
the extra. ``EXTRA_OF`` maps the import name of each optional dependency to its extra."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRA_OF = {
    "fastapi": "serve", "uvicorn": "serve", "prometheus_client": "serve",
    "onnxruntime": "onnx", "onnx": "onnx", "onnxscript": "onnx",
    "captum": "explain",
    "optuna": "search", "plotly": "search",
    "mlflow": "tracking", "tensorboard": "tracking",
    "matplotlib": "plots",
    "setfit": "fewshot", "sentence_transformers": "fewshot", "evaluate": "fewshot",
    "datasets": "datasets", "pyarrow": "datasets", "pandas": "datasets",
    "trl": "bench", "aiohttp": "bench",
    "implicit": "recommend",
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def install_hint(module: str) -> str | None:
    """``pip install 'tuneforge[serve]'`` for ``fastapi.responses``; None for a module no extra provides."""
    extra = EXTRA_OF.get(module.split(".")[0])
    return f"pip install 'tuneforge[{extra}]'" if extra else None


def missing_message(module: str, what: str | None = None) -> str | None:
    hint = install_hint(module)
    if hint is None:
        return None
    return f"{what or 'this'} needs {module.split('.')[0]}, which is not installed: {hint}"


def require(module: str, what: str | None = None) -> ModuleType:
    """Import ``module`` or raise ``MissingExtra`` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        if e.name is None or e.name.split(".")[0] != top:
            raise  # the module is there but one of its own imports is broken: keep that error
        raise MissingExtra(missing_message(module, what) or f"{module} is not installed") from None
