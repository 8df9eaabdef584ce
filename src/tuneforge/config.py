"""Typed run configuration: YAML + ``a.b=v`` overrides → ``RunConfig``, checked on load."""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from tuneforge.config_checks import check_cross_fields, check_max_length, check_ranges, model_length_limit
from tuneforge.config_sections import (
    DataConfig,
    EarlyStoppingConfig,
    EvalConfig,
    FreezeConfig,
    GenerationConfig,
    HeadConfig,
    LossConfig,
    PeftConfig,
    RecommendConfig,
    RunConfig,
    SpanConfig,
    SplitConfig,
    TrainConfig,
)
from tuneforge.config_typing import ConfigError, build_section, field_hints, read_yaml_mapping

# the sections are defined in config_sections; tuneforge.config is where callers import them from
__all__ = [
    "ConfigError",
    "DataConfig",
    "EarlyStoppingConfig",
    "EvalConfig",
    "FreezeConfig",
    "GenerationConfig",
    "HeadConfig",
    "LossConfig",
    "PeftConfig",
    "RecommendConfig",
    "RunConfig",
    "SpanConfig",
    "SplitConfig",
    "TrainConfig",
    "check_max_length",
    "config_from_dict",
    "describe_fields",
    "load_config",
    "model_length_limit",
    "parse_override",
    "resolve_data_paths",
    "save_config",
]


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-5"`` → (["train", "lr"], 3e-5). Values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, _, raw = text.partition("=")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{key.strip()}: cannot read the value {raw!r} ({problem}); quote it or fix the "
                          "brackets") from None
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)
    return key.strip().split("."), value


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _set_path(d: dict[str, Any], keys: list[str], value: Any) -> None:
    for k in keys[:-1]:
        d = d.setdefault(k, {})
        if not isinstance(d, dict):
            raise ConfigError(f"{'.'.join(keys)}: {k} is not a section")
    d[keys[-1]] = value


def config_from_dict(raw: dict[str, Any], overrides: list[str] | None = None, source: str | None = None) -> RunConfig:
    """Build a checked ``RunConfig`` from a mapping plus ``a.b=v`` overrides.

    >>> config_from_dict({"task": "classification"}, ["train.lr=1e-4"]).train.lr
    0.0001
    """
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{source or 'config'}: the top level must be a mapping, got {type(raw).__name__}")
    raw = copy.deepcopy(raw or {})
    for item in overrides or []:
        keys, value = parse_override(item)
        _set_path(raw, keys, value)
    # YAML reads 5e-5 as a string; the type pass turns it into a float where a float is expected.
    try:
        cfg = build_section(RunConfig, raw)
        cfg.source = source
        _validate(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}" if source else str(e)) from None
    return cfg


_CHOICES = {
    ("train", "optimizer"): ("adamw", "sgd"),
    ("train", "scheduler"): ("linear", "cosine", "constant"),
    ("train", "precision"): ("auto", "bf16", "fp32"),
    ("train", "batching"): ("length_grouped", "random"),
    ("freeze", "policy"): ("full", "top_k", "head_only", "bitfit"),
    ("head", "pooling"): ("auto", "mean", "cls", "last", "pooler", "mean_pooler"),
    ("train.early_stopping", "mode"): ("max", "min"),
    ("peft", "adapter_kind"): ("pfeiffer", "houlsby"),
    ("fewshot", "method"): ("none", "setfit", "prompt", "icl", "zero_shot"),
    ("fewshot", "selection"): ("random", "nearest"),
    ("fewshot", "order"): ("random", "grouped", "similar_last"),
    ("eval", "language"): ("auto", "en", "zh"),
    ("calibration", "oos_score"): ("auto", "max_softmax", "energy", "distance"),
    ("calibration", "rule"): ("auto", "oos_recall", "coverage", "precision"),
    ("continual", "scenario"): ("task_incremental", "class_incremental", "domain_incremental"),
    ("continual", "strategy"): ("naive", "replay", "ewc", "lwf", "adapter_per_stage", "joint"),
    ("continual", "replay_sampling"): ("reservoir", "class_balanced"),
    ("recommend", "split"): ("leave_last_out", "last_fraction"),
}


def _validate(cfg: RunConfig) -> None:
    for (section, name), choices in _CHOICES.items():
        obj: Any = cfg
        for part in section.split("."):
            obj = getattr(obj, part)
        value = getattr(obj, name)
        if value not in choices:
            raise ConfigError(f"{section}.{name}: {value!r} is not one of {', '.join(map(str, choices))}")
    check_ranges(cfg)  # every numeric field against its interval (config_checks.RANGES)
    if cfg.train.batch_tokens is not None and cfg.train.batching != "length_grouped":
        raise ConfigError("train.batch_tokens needs train.batching: length_grouped (a token budget groups items "
                          f"by length), not {cfg.train.batching!r}")
    check_cross_fields(cfg)
    if isinstance(cfg.loss.class_weights, str) and cfg.loss.class_weights != "auto":
        raise ConfigError(f"loss.class_weights: {cfg.loss.class_weights!r}; use null, 'auto' or a list of numbers")
    _validate_fewshot(cfg)
    if cfg.peft.method is not None:
        # a light module: peft itself is imported only when a method is applied
        from tuneforge.peft_methods import PEFT_METHODS

        if cfg.peft.method not in PEFT_METHODS:
            raise ConfigError(f"peft.method: {cfg.peft.method!r} is not one of {', '.join(PEFT_METHODS.names())}")


def _validate_fewshot(cfg: RunConfig) -> None:
    f = cfg.fewshot
    if cfg.data.shots_per_class is not None and cfg.data.shots_per_class < 1:
        raise ConfigError(f"data.shots_per_class: {cfg.data.shots_per_class!r} must be >= 1 (or null)")
    if f.k < 0 or f.setfit_iterations < 1 or f.setfit_epochs < 1 or f.setfit_batch_size < 1:
        raise ConfigError("fewshot.k must be >= 0; fewshot.setfit_iterations, setfit_epochs, setfit_batch_size >= 1")
    if f.method == "setfit":
        if cfg.task != "classification" or cfg.data.multi_label:
            raise ConfigError(f"fewshot.method setfit needs task classification (single-label), not {cfg.task!r}")
        if cfg.head.pooling == "auto":  # the contrastive objective shapes the mean-pooled sentence embedding
            cfg.head.pooling = "mean"
        elif cfg.head.pooling != "mean":
            raise ConfigError(f"fewshot.method setfit needs head.pooling mean (or auto), not {cfg.head.pooling!r}")
    if f.method == "prompt" and cfg.task != "classification_generative":
        raise ConfigError("fewshot.method prompt fine-tunes label words: it needs task classification_generative")


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config; relative data paths are resolved against the config file's folder."""
    path = Path(path)
    raw = read_yaml_mapping(path, "config file")
    cfg = config_from_dict(raw, overrides, source=str(path))
    resolve_data_paths(cfg, path.parent)
    return cfg


def resolve_data_paths(cfg: RunConfig, base: Path) -> None:
    """Data paths in a config are relative to the config file, so configs work from any working directory."""
    def resolve(value: str) -> str:
        if value.startswith("hf://") or Path(value).is_absolute():  # a hub dataset is no path
            return value
        if "?" in value and not (base / value).exists() and not Path(value).exists():  # folder?split=NAME
            head, _, query = value.partition("?")
            return f"{resolve(head)}?{query}"
        candidate = (base / value).resolve()
        return str(candidate) if candidate.exists() or not Path(value).exists() else str(Path(value).resolve())

    if cfg.fewshot.prompt:
        cfg.fewshot.prompt = resolve(cfg.fewshot.prompt)
    for name in ("items", "item_tags"):  # the recommendation task's item table and tags file
        if getattr(cfg.recommend, name):
            setattr(cfg.recommend, name, resolve(getattr(cfg.recommend, name)))
    for name in ("train", "validation", "test"):
        value = getattr(cfg.data, name)
        if isinstance(value, list):
            setattr(cfg.data, name, [resolve(v) for v in value])
        elif value:
            setattr(cfg.data, name, resolve(value))


def save_config(cfg: RunConfig, path: str | Path) -> None:
    from tuneforge.io_utils import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def describe_fields(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) for every field, for ``tuneforge config --help``-style docs."""
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        key = f"{prefix}{f.name}"
        tp = field_hints(cls)[f.name]
        sub = [a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)]
        if sub:
            out.extend(describe_fields(sub[0], key + "."))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            out.append((key, repr(default), f.metadata.get("help", "")))
    return out
