"""``MultiAdapterPredictor``: one base model in memory, many fine-tuned runs on top of it, chosen by name per call.

Each run contributes a named peft adapter (LoRA, AdaLoRA or IA3, all of one kind: peft keeps adapters of one
type in one model) and its own task head; ``head_only`` runs share the base with the adapters switched off.
The runs may be different tasks (sentiment classification and NER on one MiniLM, say).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file

from tuneforge.config import RunConfig
from tuneforge.inference.predictor import Predictor
from tuneforge.models import load_backbone
from tuneforge.run import open_run, weights_folder
from tuneforge.training.checkpoint import WEIGHTS

SHAREABLE = ("lora", "adalora", "ia3")


class MultiAdapterError(ValueError):
    """The runs cannot share one base model."""


def run_names(runs: Mapping[str, str | Path] | Sequence[str | Path]) -> dict[str, Path]:
    """``{"name": dir}`` as given, or names from ``NAME=DIR`` items and folder names (made identifier-safe)."""
    if isinstance(runs, Mapping):
        return {name: Path(d) for name, d in runs.items()}
    out: dict[str, Path] = {}
    for item in runs:
        name, _, folder = str(item).rpartition("=") if "=" in str(item) else ("", "", str(item))
        name = name or re.sub(r"\W", "_", Path(folder).resolve().name)
        if name in out:
            raise MultiAdapterError(f"two runs are named {name!r}; use NAME=RUN_DIR")
        out[name] = Path(folder)
    return out


def _mode(name: str, cfg: RunConfig) -> str:
    if cfg.peft.method in SHAREABLE:
        return "adapter"
    if cfg.peft.method is None and cfg.freeze.policy == "head_only":
        return "head_only"
    raise MultiAdapterError(f"run {name!r} (peft.method={cfg.peft.method}, freeze.policy={cfg.freeze.policy}) "
                            f"changes the base model in a way that cannot be shared; shareable: "
                            f"peft.method in {', '.join(SHAREABLE)}, or freeze.policy=head_only")


class MultiAdapterPredictor:
    """Predict with any of several runs that share one base model.

    >>> # mp = MultiAdapterPredictor.from_run_dirs({"sentiment": "runs/sst2_lora", "intent": "runs/b77_lora"})
    >>> # mp.predict(["my card is lost"], adapter="intent")[0]["label"]
    """

    def __init__(self, base: torch.nn.Module, predictors: dict[str, Predictor], modes: dict[str, str]):
        self.base, self.predictors, self.modes = base, predictors, modes
        self._lock = threading.Lock()  # the active adapter is model state: one prediction at a time

    @property
    def names(self) -> list[str]:
        return list(self.predictors)

    @classmethod
    def from_run_dirs(cls, runs: Mapping[str, str | Path] | Sequence[str | Path],
                      batch_size: int | None = None) -> MultiAdapterPredictor:
        dirs = run_names(runs)
        opened = {name: open_run(d, with_model=False) for name, d in dirs.items()}
        cfgs = {name: o.cfg for name, o in opened.items()}
        modes = {name: _mode(name, cfg) for name, cfg in cfgs.items()}
        resolved = {name: o.resolved for name, o in opened.items()}
        if len({r.path for r in resolved.values()}) != 1:
            raise MultiAdapterError(f"the runs use different base models: "
                                    f"{ {n: r.path for n, r in resolved.items()} }")
        methods = {cfgs[n].peft.method for n, m in modes.items() if m == "adapter"}
        if len(methods) > 1:
            raise MultiAdapterError(f"adapters of different kinds ({', '.join(sorted(methods))}) cannot share one "
                                    f"peft model; group the runs by method")
        tasks = {name: o.task for name, o in opened.items()}
        causal = {t.needs_lm_head for t in tasks.values()}
        if len(causal) != 1:
            raise MultiAdapterError("encoder-body and language-model runs cannot share one base")
        base = load_backbone(next(iter(resolved.values())).path, causal_lm=causal.pop())
        shared = _add_adapters(base, {n: cfgs[n] for n, m in modes.items() if m == "adapter"}, tasks)
        predictors = {}
        for name, cfg in cfgs.items():
            predictors[name] = _attach(name, cfg, tasks[name], shared, dirs[name], batch_size)
        return cls(shared, predictors, modes)

    @contextlib.contextmanager
    def using(self, name: str) -> Iterator[Predictor]:
        """Activate ``name``'s adapter (or switch adapters off for a head_only run) while the block runs."""
        if name not in self.predictors:
            raise KeyError(f"unknown adapter {name!r}; known: {', '.join(self.names)}")
        with self._lock:
            if self.modes[name] == "adapter":
                self.base.set_adapter(name)
                yield self.predictors[name]
            elif hasattr(self.base, "disable_adapter"):
                with self.base.disable_adapter():
                    yield self.predictors[name]
            else:
                yield self.predictors[name]

    def predict(self, items: Iterable[str | dict[str, Any]], adapter: str) -> list[dict[str, Any]]:
        with self.using(adapter) as predictor:
            return predictor.predict(items)


def _add_adapters(base: torch.nn.Module, cfgs: dict[str, RunConfig], tasks: dict[str, Any]) -> torch.nn.Module:
    """Wrap ``base`` once and add one named adapter per run; every adapter is inference-only."""
    if not cfgs:
        return base
    from peft import get_peft_model

    from tuneforge.peft_methods import peft_config_for

    wrapped = None
    for name, cfg in cfgs.items():
        config = peft_config_for(cfg.peft, tasks[name].peft_task_type)
        config.inference_mode = True
        if wrapped is None:
            wrapped = get_peft_model(base, config, adapter_name=name)
        else:
            wrapped.add_adapter(name, config)
    return wrapped


def _attach(name: str, cfg: RunConfig, task: Any, shared: torch.nn.Module, run_dir: Path,
            batch_size: int | None) -> Predictor:
    """Build ``task``'s head around the shared body and load the run's head and adapter tensors."""
    embeddings = shared.get_input_embeddings().num_embeddings
    set_seed(cfg.seed)
    pooler = getattr(shared, "pooler", None)
    model = task.build_model(shared)
    if pooler is not None and getattr(shared, "pooler", None) is None:
        # a mean/cls head drops the body's unused pooler (head.py); a later run on this shared body may pool with it
        if "pooler" in vars(shared):  # a PEFT wrapper: the drop shadowed the base model's pooler with a plain None
            delattr(shared, "pooler")
        else:
            shared.pooler = pooler
    if shared.get_input_embeddings().num_embeddings != embeddings:
        raise MultiAdapterError(f"run {name!r}: task {task.name!r} adds tokens to the base model, so it cannot "
                                f"share it with other runs")
    state = load_file(str(weights_folder(run_dir) / WEIGHTS))
    body = {k[len("backbone."):].replace(".default.", f".{name}."): v for k, v in state.items()
            if k.startswith("backbone.")}
    head = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    if body:
        known = {n for n, _ in shared.named_parameters()}
        missing_adapter = [k for k in body if k not in known]
        if missing_adapter:
            raise MultiAdapterError(f"run {name!r}: tensors {missing_adapter[:3]} do not fit the shared model")
        shared.load_state_dict(body, strict=False)
    unexpected = model.load_state_dict(head, strict=False).unexpected_keys
    if unexpected:
        raise MultiAdapterError(f"run {name!r}: head tensors {unexpected[:3]} do not fit its task model")
    return Predictor(cfg, task, model, batch_size or cfg.eval.batch_size, run_dir=run_dir)
