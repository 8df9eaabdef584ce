"""The one place that assembles a run: ``prepare(cfg)`` for training and ``open_run(run_dir)`` for loading one.

Training, prediction, export, compare, the benchmarks and every mode built on top (study, continual, search,
applications) start here, so the recipe that turns a config into a model cannot drift between callers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuneforge.build import BuiltModel, build_model
from tuneforge.config import RunConfig, check_max_length, load_config, model_length_limit
from tuneforge.data.load import SPLITS, LoadedData, check_train_classes, load_splits
from tuneforge.data.readers import LOC, BadRows, DataError, Record, rename_columns
from tuneforge.models import ResolvedModel, load_tokenizer, resolve_model
from tuneforge.tasks.base import Example, Feature, Task, TaskContext, build_task
from tuneforge.training.batching import num_batches
from tuneforge.training.checkpoint import (
    WEIGHTS,
    CheckpointError,
    list_checkpoints,
    load_weights,
    newest_intact,
)
from tuneforge.training.steps import steps_per_epoch


def set_threads(n: int | None) -> None:
    """``train.num_threads``, else $TUNEFORGE_NUM_THREADS, else one intra-op thread per core.

    Oversubscription costs more than it gives on small CPUs: several processes sharing cores (tests, a server
    next to a training run) should each ask for fewer threads.
    """
    env = os.environ.get("TUNEFORGE_NUM_THREADS")
    torch.set_num_threads(n or (int(env) if env else max(1, os.cpu_count() or 1)))


def make_task(cfg: RunConfig, resolved: ResolvedModel) -> Task:
    """The configured task, built from explicit sections (never the whole config)."""
    return build_task(cfg.task, TaskContext(data=cfg.data, head=cfg.head, loss=cfg.loss, model_kind=resolved.kind,
                                            span=cfg.span, generation=cfg.generation, recommend=cfg.recommend,
                                            model_path=resolved.path, language=cfg.eval.language))


def new_accelerator(precision: str) -> Any:
    """An ``Accelerator`` for this run's precision.

    accelerate keeps one process-wide state and refuses a second ``Accelerator`` with another precision, so a
    Python session that trains twice (fp32, then bf16) would fail. The precision part is reset; the distributed
    part (process group, ranks) is kept.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mixed = "bf16" if precision == "bf16" else "no"
    if AcceleratorState._shared_state and AcceleratorState._shared_state.get("_mixed_precision") != mixed:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed)


@dataclass
class Prepared:
    """Everything a training run needs before the model is built: the data read, split, set up and encoded.

    >>> # p = prepare(load_config("configs/classification/banking77_demo.yaml")); built = p.build_model()
    """

    cfg: RunConfig
    resolved: ResolvedModel
    tokenizer: Any
    task: Task
    data: LoadedData
    features: dict[str, list[Feature]] = field(default_factory=dict)  # per split, tokenised once

    @property
    def splits(self) -> dict[str, list[Example]]:
        return self.data.splits

    @property
    def test_split(self) -> str:
        """The split the before/after comparison is scored on: test, else validation."""
        return "test" if "test" in self.splits else "validation"

    @property
    def validation_split(self) -> str:
        """The split validation (early stopping, best checkpoint) watches: validation, else the test split."""
        return "validation" if "validation" in self.splits else self.test_split

    def total_steps(self) -> int:
        """Optimizer steps the configured schedule runs (``train.max_steps``, else epochs over the batches)."""
        t = self.cfg.train
        n_batches = num_batches([f["length"] for f in self.features["train"]], t.batch_size, t.batch_tokens)
        return t.max_steps or int(steps_per_epoch(n_batches, t.grad_accum) * t.epochs)

    def build_model(self, total_steps: int | None = None) -> BuiltModel:
        """Backbone + task head + freezing or PEFT, seeded so the new head's initialisation never depends on
        what ran before."""
        from accelerate.utils import set_seed

        cfg = self.cfg
        set_seed(cfg.seed)
        return build_model(self.task, self.resolved, cfg.train.dropout, cfg.freeze.policy, cfg.freeze.k, cfg.peft,
                           total_steps if total_steps is not None else self.total_steps(),
                           attention_dropout=cfg.train.attention_dropout, freeze_embeddings=cfg.freeze.embeddings,
                           gradient_checkpointing=cfg.train.gradient_checkpointing)


def prepare(cfg: RunConfig, records: dict[str, list[Record]] | None = None, encode: bool = True) -> Prepared:
    """Resolve the model, build the task, read and split the data, set the task up on train and encode it.

    ``records`` gives the splits in memory (``{"train": rows, "validation": rows}``, each a list of dicts, a pandas
    DataFrame or a ``datasets.Dataset``, columns as the config names them) instead of the files in ``cfg.data``.
    """
    resolved = resolve_model(cfg.model)
    tokenizer = load_tokenizer(resolved.path)
    check_max_length(cfg, model_length_limit(resolved.path, tokenizer))  # data.max_length within the positions
    task = make_task(cfg, resolved)
    own_loader = getattr(task, "load_data", None)  # a task that reads and splits its own files (recommendation)
    if records is None:
        data = own_loader(cfg.data, cfg.seed) if own_loader else load_splits(cfg.data, task, cfg.seed)
    else:
        data = _parse_records(records, task, cfg)
    task.setup(data.splits["train"], tokenizer)  # label set, tokenizer, chat template: before anything encodes
    prepared = Prepared(cfg, resolved, tokenizer, task, data)
    if encode:
        prepared.features = {name: [task.encode(ex) for ex in exs] for name, exs in data.splits.items()}
    return prepared


def as_rows(table: Any) -> list[dict[str, Any]]:
    """A split given in memory as a list of dicts, a pandas DataFrame or a ``datasets.Dataset`` → list of dicts."""
    if hasattr(table, "to_dict") and hasattr(table, "columns"):  # pandas.DataFrame
        return table.to_dict(orient="records")
    if hasattr(table, "to_list") and hasattr(table, "features"):  # datasets.Dataset
        return table.to_list()
    rows = list(table)
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise DataError("<records>", bad + 1, f"a record must be a mapping of column to value, not "
                                             f"{type(rows[bad]).__name__}")
    return rows


def _parse_records(records: dict[str, list[Record]], task: Task, cfg: RunConfig) -> LoadedData:
    unknown = sorted(set(records) - set(SPLITS))
    if unknown:
        raise DataError("<records>", None, f"unknown split {unknown[0]!r}; known: {', '.join(SPLITS)}")
    tables = {name: as_rows(table) for name, table in records.items()}
    if not tables.get("train"):
        raise DataError("<records>", None, "no training records", field="train")
    bad = BadRows(skip=cfg.data.skip_bad_rows)
    splits = {}
    for name in SPLITS:
        if name in tables:
            rows = [r if LOC in r else {**r, LOC: f"<{name}>:{i + 1}"} for i, r in enumerate(tables[name])]
            rows = rename_columns(rows, cfg.data.columns, f"<{name}>")
            splits[name] = task.parse(rows, bad)
    shots = None
    if cfg.data.shots_per_class:  # few-shot: K per class from the train records, drawn as from a train file
        from tuneforge.prompting.shots import draw_shots

        shots = draw_shots(splits["train"], cfg.data.shots_per_class, cfg.seed, task.stratify_key)
        splits["train"] = shots.examples
    check_train_classes(splits["train"], "<train>", cfg.data.label_column, None)
    return LoadedData(splits, {name: None for name in splits}, bad.rows, shots=shots)


# ---------------------------------------------------------------- loading a run directory
@dataclass
class Loaded:
    """A run directory opened for prediction: its config, the task as trained, and the model with its weights."""

    run_dir: Path
    cfg: RunConfig
    resolved: ResolvedModel
    tokenizer: Any
    task: Task
    built: BuiltModel | None = None
    weights: Path | None = None  # the folder the weights came from (best/ or the newest checkpoint)

    @property
    def model(self) -> torch.nn.Module:
        if self.built is None:
            raise RuntimeError(f"{self.run_dir} was opened without its model (open_run(..., with_model=False))")
        return self.built.model


def load_run_config(run_dir: str | Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a TuneForge run directory (no config.yaml)")
    return load_config(run_dir / "config.yaml")


def task_state(run_dir: str | Path) -> dict[str, Any]:
    """What the task learned in ``setup`` (label set, added tokens), saved as ``task.json``."""
    path = Path(run_dir) / "task.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no task.json: the run stopped before its model was built")
    return json.loads(path.read_text())["state"]


def weights_folder(run_dir: str | Path) -> Path:
    """``best/`` when it holds weights, else the newest intact checkpoint (its checksums verified)."""
    run_dir = Path(run_dir)
    if (run_dir / "best" / WEIGHTS).is_file():
        return run_dir / "best"
    if not list_checkpoints(run_dir / "checkpoints"):
        raise FileNotFoundError(f"{run_dir} has no best/ weights and no checkpoints")
    found = newest_intact(run_dir / "checkpoints")
    if found is None:
        raise CheckpointError(f"{run_dir}: no best/ weights, and every checkpoint fails its checksums")
    return found


def open_run(run_dir: str | Path, with_model: bool = True) -> Loaded:
    """Config, tokenizer, task state and (``with_model``) the trained weights of ``run_dir``, built by the same
    code path as training so every saved tensor finds its place.

    >>> # loaded = open_run("runs/banking77_demo"); loaded.task.labels[:3]
    """
    from accelerate.utils import set_seed

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    set_threads(cfg.train.num_threads)
    resolved = resolve_model(cfg.model)
    tokenizer = load_tokenizer(str(run_dir / "tokenizer")) if (run_dir / "tokenizer").is_dir() \
        else load_tokenizer(resolved.path)
    task = make_task(cfg, resolved)
    task.load_state(task_state(run_dir), tokenizer)
    loaded = Loaded(run_dir, cfg, resolved, tokenizer, task)
    if with_model:
        set_seed(cfg.seed)  # as in training: frozen, randomly initialised rows (new token embeddings) must match
        loaded.built = build_model(task, resolved, None, cfg.freeze.policy, cfg.freeze.k, cfg.peft)
        loaded.weights = weights_folder(run_dir)
        load_weights(loaded.built.model, loaded.weights)
    return loaded
