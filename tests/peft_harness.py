"""Train one task with one PEFT method on tiny data through the real pipeline, keeping the trained model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tests.tiny_tasks import TINY_TASKS, TinyTask
from tuneforge import runner
from tuneforge.config import RunConfig, config_from_dict

# Learning rates that move a tiny random model within a few steps (prompt methods need large steps).
TINY_LR = {"lora": 1e-2, "adalora": 1e-2, "ia3": 3e-2, "prefix_tuning": 1e-2, "prompt_tuning": 5e-2,
           "p_tuning": 1e-2, "adapter": 1e-2, None: 3e-3}


@dataclass
class TrainedPair:
    cfg: RunConfig
    run_dir: Path
    model: torch.nn.Module  # the in-memory model after fit (best weights restored)
    losses: list[float]


def tiny_config(task: str, method: str | None, folder: Path, model_dir: Path, spec: TinyTask | None = None,
                **sections: dict[str, Any]) -> RunConfig:
    """A config for a few full-batch steps on the task's tiny data; ``sections`` override fields per section."""
    spec = spec or TINY_TASKS[task](folder)
    raw: dict[str, Any] = {
        "model": str(model_dir), "task": task, "output_dir": str(folder / "run"), "seed": 3,
        "data": spec.data, "head": {"dropout": 0.0},
        "train": {"epochs": 6, "batch_size": 16, "lr": TINY_LR.get(method, 1e-2), "progress": False,
                  "precision": "fp32", "dropout": 0.0, "warmup_ratio": 0.0, "scheduler": "constant",
                  "log_every": 1, "keep_checkpoints": 1, "early_stopping": {"patience": None},
                  "num_threads": 1},  # tiny matrices: threads only add overhead, more so on a shared CPU
        "peft": {"method": method, "r": 4, "alpha": 8, "dropout": 0.0, "num_virtual_tokens": 4, "target_r": 2,
                 "adapter_size": 8},
        "eval": {"baselines": spec.baselines, "batch_size": 8},
        **spec.extra,
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return config_from_dict(raw)


def train_pair(cfg: RunConfig, monkeypatch) -> TrainedPair:
    """``runner.train`` with ``fit`` wrapped to keep a handle on the model it trained."""
    seen: dict[str, Any] = {}
    real_fit = runner.fit

    def recording_fit(model, *args, **kwargs):
        seen["model"] = model
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(runner, "fit", recording_fit)
    result = runner.train(cfg)
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r.get("split") == "train"]
    return TrainedPair(cfg, result.run_dir, seen["model"], losses)


def probe_batch(task: Any, cfg: RunConfig, n: int = 8) -> dict[str, torch.Tensor]:
    """A collated batch of the run's own test examples, encoded by ``task``."""
    from tuneforge.data.load import load_splits

    own_loader = getattr(task, "load_data", None)  # a task that reads its own files (recommendation)
    splits = (own_loader(cfg.data, cfg.seed) if own_loader else load_splits(cfg.data, task, cfg.seed)).splits
    features = [task.encode(ex) for ex in splits["test"]]
    flat = [f for group in features for f in (group if isinstance(group, list) else [group])]
    return task.collate(flat[:n])


def outputs_of(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from tuneforge.evaluation.evaluate import model_inputs

    was = model.training
    model.eval()
    with torch.inference_mode():
        out = model(**model_inputs(batch, torch.device("cpu")))
    model.train(was)
    return {k: v.float() for k, v in out.items() if isinstance(v, torch.Tensor)}
