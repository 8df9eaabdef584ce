"""Experiment trackers (``train.trackers``): TensorBoard, MLflow and Weights & Biases behind one small interface
that the training loop writes scalars to; the finished run's report and model are logged as artifacts."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml

from tuneforge.io_utils import atomic_write_json
from tuneforge.registry import Registry

STATE = "tracking.json"  # run ids of the trackers that can be reopened (MLflow, W&B), for the final artifacts
MLFLOW_URI_ENV = "MLFLOW_TRACKING_URI"


class Tracker(Protocol):
    def add_scalar(self, tag: str, value: float, step: int) -> None: ...

    def close(self) -> None: ...


TRACKERS: Registry[Callable[[Path], Tracker | None]] = Registry("tracker")


def flat_params(cfg: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 1e-4}}`` → ``{"train.lr": "0.0001"}``; values cut to MLflow's 500-character limit.

    >>> flat_params({"a": {"b": 1, "c": [1, 2]}, "d": None})
    {'a.b': '1', 'a.c': '[1, 2]', 'd': 'None'}
    """
    out: dict[str, str] = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.update(flat_params(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = str(v)[:500]
    return out


def run_params(run_dir: Path) -> dict[str, str]:
    path = run_dir / "config.yaml"
    return flat_params(yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _tensorboard(run_dir: Path) -> Tracker | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional: the run goes on without run_dir/tb
        import warnings

        warnings.warn("train.trackers names tensorboard, which is not installed: no run_dir/tb for this run "
                      "(pip install 'tuneforge[tracking]', or train.trackers=[] to silence this)", stacklevel=2)
        return None
    return SummaryWriter(str(run_dir / "tb"))


def mlflow_uri(run_dir: Path) -> str:
    """$MLFLOW_TRACKING_URI, else a file store next to the run directory (``runs/mlruns``), so every run written
    under one folder lands in one store that ``mlflow ui --backend-store-uri`` opens."""
    uri = os.environ.get(MLFLOW_URI_ENV)
    return uri or (run_dir.resolve().parent / "mlruns").as_uri()


class MlflowTracker:
    """Params from the run's config.yaml, one metric per scalar and step, the run id kept in ``tracking.json``."""

    def __init__(self, run_dir: Path, client: Any, run_id: str):
        self.run_dir, self.client, self.run_id = run_dir, client, run_id

    @classmethod
    def open(cls, run_dir: Path) -> MlflowTracker:
        client = mlflow_client(mlflow_uri(run_dir))
        name = run_dir.resolve().parent.name or "tuneforge"
        exp = client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(name)
        run = client.create_run(exp_id, run_name=run_dir.name)
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in run_params(run_dir).items()]
        for s in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run.info.run_id, params=params[s:s + 100])
        _save_state(run_dir, {"mlflow": {"uri": mlflow_uri(run_dir), "run_id": run.info.run_id}})
        return cls(run_dir, client, run.info.run_id)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.client.log_metric(self.run_id, tag.replace("/", "."), float(value), step=int(step))

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def mlflow_client(uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ImportError("train.trackers names mlflow: pip install 'tuneforge[tracking]'") from None
    if uri.startswith("file:"):  # MLflow 3 asks file stores to opt in; a local folder is what this default wants
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(uri)


class WandbTracker:
    def __init__(self, run: Any):
        self.run = run

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.run.log({tag: float(value)}, step=int(step))

    def close(self) -> None:
        self.run.finish()


def _wandb(run_dir: Path) -> Tracker | None:
    try:
        import wandb
    except ImportError:
        raise ImportError("train.trackers names wandb: pip install wandb") from None
    run = wandb.init(dir=str(run_dir), name=run_dir.name, config=run_params(run_dir),
                     project=os.environ.get("WANDB_PROJECT", "tuneforge"))
    _save_state(run_dir, {"wandb": {"id": run.id, "project": run.project}})
    return WandbTracker(run)


TRACKERS.register("tensorboard", _tensorboard)
TRACKERS.register("mlflow", MlflowTracker.open)
TRACKERS.register("wandb", _wandb)


class Trackers:
    """Several trackers as one: what ``fit`` writes its train and validation scalars to."""

    def __init__(self, members: Sequence[Tracker]):
        self.members = list(members)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        for m in self.members:
            m.add_scalar(tag, value, step)

    def close(self) -> None:
        for m in self.members:
            m.close()


def check_trackers(names: Sequence[str]) -> None:
    for name in names:
        TRACKERS.get(name)  # UnknownNameError lists the known ones


def open_trackers(run_dir: Path, names: Sequence[str]) -> Trackers:
    """The configured trackers for a run (``train.trackers``); an unknown name fails before training starts."""
    check_trackers(names)
    members = [TRACKERS.get(n)(run_dir) for n in names]
    return Trackers([m for m in members if m is not None])


def log_run_files(run_dir: Path, names: Sequence[str]) -> None:
    """After the report: log report.html/json/md and the best weights as artifacts of the tracked run."""
    state_path = run_dir / STATE
    if not state_path.is_file():
        return
    state = json.loads(state_path.read_text())
    files = [run_dir / f for f in ("report.html", "report.json", "report.md", "config.yaml", "meta.json")]
    model = run_dir / "best"
    if "mlflow" in names and "mlflow" in state:
        client, run_id = mlflow_client(state["mlflow"]["uri"]), state["mlflow"]["run_id"]
        for f in files:
            if f.is_file():
                client.log_artifact(run_id, str(f), "report")
        if model.is_dir():
            client.log_artifacts(run_id, str(model), "model")
    if "wandb" in names and "wandb" in state:
        import wandb

        run = wandb.init(id=state["wandb"]["id"], project=state["wandb"]["project"], resume="must",
                         dir=str(run_dir))
        for f in files:
            if f.is_file():
                run.save(str(f), base_path=str(run_dir))
        run.finish()


def _save_state(run_dir: Path, update: dict[str, Any]) -> None:
    path = run_dir / STATE
    state = json.loads(path.read_text()) if path.is_file() else {}
    atomic_write_json(path, {**state, **update})
