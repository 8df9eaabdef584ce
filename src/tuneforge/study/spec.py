"""The study file: a base run config, methods (each a set of overrides), label budgets and seeds → grid cells."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuneforge.config_typing import ConfigError, read_yaml_mapping

KEYS = ("base", "output_dir", "methods", "budgets", "seeds", "split_seed", "overrides")
# every cell: baselines are methods of their own here, progress bars would flood the log, a cell run again
# after an interruption starts over in its own folder
COMMON = {"eval.baselines": [], "train.progress": False, "train.resume": False, "train.overwrite": True}
NO_LABELS = ("zero_shot",)  # methods that read no labels: one cell per seed-independent run, budget 0


@dataclass
class StudySpec:
    base: Path
    output_dir: Path
    methods: dict[str, dict[str, Any]]
    budgets: list[int | str]
    seeds: list[int]
    split_seed: int | None = None  # data.split.seed of every cell: the frozen test split
    overrides: dict[str, Any] = field(default_factory=dict)
    source: str = "<study>"
    # a method's own budgets (its ``budgets:`` key), a subset of ``budgets``: ICL or SetFit need not run on all of
    # train, and a slow method can skip the small budgets
    method_budgets: dict[str, list[int | str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Cell:
    method: str
    budget: int | str  # K per class, "P%" of train, or 0 for methods that use no labels
    seed: int

    @property
    def key(self) -> str:
        return f"{self.method}/{str(self.budget).replace('%', 'pct')}/seed{self.seed}"


def load_study(path: str | Path, output_dir: str | None = None) -> StudySpec:
    """Read and check a study YAML; relative paths are relative to the file."""
    path = Path(path)
    raw = read_yaml_mapping(path, "study file")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; known: {', '.join(KEYS)}")
    for key in ("base", "methods", "budgets", "seeds"):
        if not raw.get(key):
            raise ConfigError(f"{path}: {key} is required")
    methods = raw["methods"]
    if not isinstance(methods, dict) or not all(isinstance(v or {}, dict) for v in methods.values()):
        raise ConfigError(f"{path}: methods must map each name to a mapping of config overrides (key: value)")
    for b in raw["budgets"]:
        if not (isinstance(b, int) and b > 0) and not (isinstance(b, str) and _percent(b) is not None):
            raise ConfigError(f"{path}: budgets: {b!r} is neither a positive count per class nor a percentage "
                              f"like '10%'")
    method_budgets = {}
    for name, overrides in methods.items():
        own = (overrides or {}).get("budgets")
        if own is None:
            continue
        if not isinstance(own, list) or not own or any(b not in raw["budgets"] for b in own):
            raise ConfigError(f"{path}: methods.{name}.budgets must be a list of the study's budgets "
                              f"({', '.join(map(str, raw['budgets']))}); got {own!r}")
        method_budgets[name] = own
    if not all(isinstance(s, int) for s in raw["seeds"]):
        raise ConfigError(f"{path}: seeds must be integers")
    base = (path.parent / raw["base"]).resolve()
    out = Path(output_dir or raw.get("output_dir") or f"runs/study_{path.stem}")
    split_seed = raw.get("split_seed")
    if split_seed is None:  # one frozen test split for every cell: the base run's split seed, not each cell's seed
        from tuneforge.config import load_config

        base_cfg = load_config(base)
        split_seed = base_cfg.data.split.seed if base_cfg.data.split.seed is not None else base_cfg.seed
    methods = {k: _resolve_prompt({o: x for o, x in (v or {}).items() if o != "budgets"}, path.parent)
               for k, v in methods.items()}
    return StudySpec(base, out, methods, list(raw["budgets"]), list(raw["seeds"]), split_seed,
                     dict(raw.get("overrides") or {}), str(path), method_budgets)


def _resolve_prompt(overrides: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A prompt file named in a method's overrides is relative to the study file."""
    value = overrides.get("fewshot.prompt")
    if isinstance(value, str) and not Path(value).is_absolute():
        overrides["fewshot.prompt"] = str((folder / value).resolve())
    return overrides


def _percent(text: str) -> float | None:
    text = text.strip()
    if not text.endswith("%"):
        return None
    try:
        value = float(text[:-1])
    except ValueError:
        return None
    return value if 0 < value <= 100 else None


def cells(spec: StudySpec) -> list[Cell]:
    """The grid in run order: cheap cells first (no labels, then small budgets), every seed of a budget
    together so a partial study already has complete cells."""
    out = [Cell(m, 0, spec.seeds[0]) for m in spec.methods if _reads_no_labels(spec.methods[m])]
    for budget in spec.budgets:
        for seed in spec.seeds:
            out += [Cell(m, budget, seed) for m in spec.methods if not _reads_no_labels(spec.methods[m])
                    and budget in spec.method_budgets.get(m, spec.budgets)]
    return out


def restrict(spec: StudySpec, methods: list[str] | None = None, budgets: list[str] | None = None,
             seeds: list[int] | None = None) -> StudySpec:
    """The part of the grid to run now (the command line's ``--methods/--budgets/--seeds``); each value must be
    one the study file names, so a later run of the whole file reuses the cells finished here."""
    def pick(asked: list[Any] | None, known: list[Any], what: str) -> list[Any]:
        if not asked:
            return list(known)
        text = {str(k): k for k in known}
        bad = [a for a in asked if str(a) not in text]
        if bad:
            raise ConfigError(f"{spec.source}: unknown {what} {bad[0]!r}; known: {', '.join(text)}")
        return [text[str(a)] for a in asked]

    return StudySpec(spec.base, spec.output_dir,
                     {m: spec.methods[m] for m in pick(methods, list(spec.methods), "method")},
                     pick(budgets, spec.budgets, "budget"), pick(seeds, spec.seeds, "seed"), spec.split_seed,
                     spec.overrides, spec.source, spec.method_budgets)


def _reads_no_labels(overrides: dict[str, Any]) -> bool:
    return overrides.get("fewshot.method") in NO_LABELS


def budget_overrides(budget: int | str, train_size: int, num_labels: int) -> dict[str, Any]:
    """K per class → ``data.shots_per_class``; "P%" → the same number of labels as P% of train, drawn per class
    (ceil(P% x train / labels) each); "100%" → all of train."""
    if isinstance(budget, int):
        return {"data.shots_per_class": budget} if budget else {}
    pct = _percent(budget)
    if pct is None:
        raise ConfigError(f"budget {budget!r} is not a count or a percentage")
    if pct >= 100:
        return {"data.shots_per_class": None}
    return {"data.shots_per_class": max(1, math.ceil(pct / 100 * train_size / max(1, num_labels)))}


def labels_used(budget: int | str, per_class: dict[str, int] | None, train_size: int) -> int:
    """How many labelled examples a cell trained on (the x axis of the learning curve)."""
    if per_class:
        return sum(per_class.values())
    return 0 if budget == 0 else train_size


def cell_overrides(spec: StudySpec, cell: Cell, budget: dict[str, Any]) -> list[str]:
    """``a.b=v`` overrides of one cell: study-wide, the method's, the budget's, the seed and the output folder."""
    items: dict[str, Any] = {**COMMON, **spec.overrides, **spec.methods[cell.method], **budget, "seed": cell.seed,
                             "output_dir": str(spec.output_dir / "cells" / cell.key)}
    if spec.split_seed is not None:
        items["data.split.seed"] = spec.split_seed
    return [f"{k}={_yaml_scalar(v)}" for k, v in items.items()]


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()
