"""Each stage of a continual run as a prepared run: its config, its data (filtered and mapped), its encoded rows."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.config import RunConfig, config_from_dict, resolve_data_paths
from tuneforge.config_typing import ConfigError
from tuneforge.data.load import LoadedData, load_splits
from tuneforge.models import load_tokenizer, resolve_model
from tuneforge.run import Prepared, make_task
from tuneforge.tasks.base import Example

SHARED_HEAD = ("class_incremental", "domain_incremental")


@dataclass
class Stage:
    index: int
    name: str
    prepared: Prepared

    @property
    def folder(self) -> str:
        return f"{self.index}-{self.name}"


def check_continual(cfg: RunConfig) -> None:
    """What the config loader cannot check alone: the stage list and the strategy/scenario pairs."""
    cc = cfg.continual
    where = f"{cfg.source}: " if cfg.source else ""
    if cfg.task != "classification":
        raise ConfigError(f"{where}task: continual runs support task classification, not {cfg.task!r}")
    if len(cc.stages) < 2:
        raise ConfigError(f"{where}continual.stages: a sequence needs at least 2 stages, got {len(cc.stages)}")
    names = [s.name for s in cc.stages]
    for i, name in enumerate(names):
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{where}continual.stages[{i}].name: {name!r} must be a non-empty name of letters, "
                              f"digits, - and _")
        for key in ("limit", "test_limit"):
            value = getattr(cc.stages[i], key)
            if value is not None and value < 1:
                raise ConfigError(f"{where}continual.stages[{i}].{key}: {value!r} must be >= 1 (or null)")
        if names.index(name) != i:
            raise ConfigError(f"{where}continual.stages[{i}].name: {name!r} is used by an earlier stage")
    if cc.strategy == "adapter_per_stage" and cc.scenario != "task_incremental":
        raise ConfigError(f"{where}continual.strategy adapter_per_stage routes by stage id: it needs scenario "
                          f"task_incremental, not {cc.scenario!r}")
    _check_loss_mask(cfg, where)
    if cc.strategy != "adapter_per_stage" and cfg.peft.method:
        raise ConfigError(f"{where}peft.method is for strategy adapter_per_stage; strategy {cc.strategy!r} trains "
                          f"the backbone")


def _check_loss_mask(cfg: RunConfig, where: str) -> None:
    from tuneforge.continual.masking import LOSS_MASKS

    mask = cfg.continual.loss_mask
    if mask not in LOSS_MASKS:
        raise ConfigError(f"{where}continual.loss_mask: unknown loss mask {mask!r}; known: {', '.join(LOSS_MASKS)}")
    if mask == "none":
        return
    if cfg.continual.scenario not in SHARED_HEAD:
        raise ConfigError(f"{where}continual.loss_mask {mask!r} masks one shared head's logits: it needs scenario "
                          f"class_incremental or domain_incremental, not {cfg.continual.scenario!r}")
    if cfg.data.multi_label:
        raise ConfigError(f"{where}continual.loss_mask {mask!r} needs single-label classification (data.multi_label "
                          f"false): it masks one softmax")
    if cfg.loss.label_smoothing:  # smoothing spreads target mass over every label, the masked ones included
        raise ConfigError(f"{where}loss.label_smoothing must be 0 with continual.loss_mask {mask!r}")


def stage_config(cfg: RunConfig, i: int, run_dir: Path) -> RunConfig:
    """The top-level config with stage ``i``'s data and train overrides, writing into RUN/stages/<i>-<name>/."""
    stage = cfg.continual.stages[i]
    raw = cfg.to_dict()
    unknown = sorted(set(stage.data) - set(raw["data"])) or sorted(set(stage.train) - set(raw["train"]))
    if unknown:
        raise ConfigError(f"{cfg.source or 'config'}: continual.stages[{i}] ({stage.name}): unknown key "
                          f"{unknown[0]!r} in its data/train overrides")
    raw["data"].update(stage.data)
    raw["train"].update(stage.train)
    raw["continual"] = {}
    raw["output_dir"] = str(run_dir / "stages" / f"{i}-{stage.name}")
    scfg = config_from_dict(raw, source=cfg.source)
    resolve_data_paths(scfg, Path(cfg.source).parent if cfg.source else Path.cwd())
    if cfg.continual.strategy == "adapter_per_stage":
        if not scfg.peft.method:
            scfg.peft.method = "lora"  # the default adapter: LoRA on every linear layer of the blocks
        if cfg.continual.adapter_lr is not None:
            scfg.train.lr = cfg.continual.adapter_lr
    return scfg


def _labels(ex: Example) -> list[str]:
    return list(ex.get("labels", ()))


def shape_split(examples: list[Example], stage: Any, limit: int | None, seed: int) -> list[Example]:
    """Rename labels (label_map), keep the stage's labels (labels), then a seeded sample of ``limit`` rows in file
    order."""
    out = []
    for ex in examples:
        labels = [stage.label_map.get(lab, lab) for lab in _labels(ex)] if stage.label_map else _labels(ex)
        if stage.labels is not None and not all(lab in stage.labels for lab in labels):
            continue
        out.append({**ex, "labels": labels})
    if limit is not None and len(out) > limit:
        keep = sorted(random.Random(seed).sample(range(len(out)), limit))
        out = [out[k] for k in keep]
    return out


def load_stages(cfg: RunConfig, run_dir: Path) -> list[Stage]:
    """Read, shape and encode every stage. A shared-head scenario fixes one label set, the union of the stages'
    training labels in stage order, so a class keeps its output index from the stage it arrives in to the end."""
    resolved = resolve_model(cfg.model)
    tokenizer = load_tokenizer(resolved.path)
    loaded: list[tuple[RunConfig, Any, LoadedData]] = []
    for i, stage in enumerate(cfg.continual.stages):
        scfg = stage_config(cfg, i, run_dir)
        task = make_task(scfg, resolved)
        data = load_splits(scfg.data, task, scfg.seed)
        for split in list(data.splits):
            limit = stage.limit if split == "train" else stage.test_limit if split == "test" else None
            data.splits[split] = shape_split(data.splits[split], stage, limit, scfg.seed)
        if not data.splits["train"]:
            raise ConfigError(f"{cfg.source or 'config'}: continual.stages[{i}] ({stage.name}): no training rows "
                              f"left after its labels/label_map filter")
        loaded.append((scfg, task, data))
    universe: list[str] = []
    for _, _, data in loaded:
        universe += sorted({lab for ex in data.splits["train"] for lab in _labels(ex)} - set(universe))
    stages = []
    for i, (scfg, task, data) in enumerate(loaded):
        if cfg.continual.scenario in SHARED_HEAD:
            scfg.data.labels = list(universe)
            task = make_task(scfg, resolved)
        task.setup(data.splits["train"], tokenizer)
        prepared = Prepared(scfg, resolved, tokenizer, task, data)
        prepared.features = {name: [task.encode(ex) for ex in exs] for name, exs in data.splits.items()}
        stages.append(Stage(i, cfg.continual.stages[i].name, prepared))
    return stages
