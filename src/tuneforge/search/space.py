"""The ``search.space`` section: parse each key's values into a checked parameter, and sample one with Optuna."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any

from tuneforge.config_sections import RunConfig
from tuneforge.config_typing import ConfigError, field_hints

RANGE_KINDS = ("log_uniform", "uniform", "int")


@dataclass(frozen=True)
class Param:
    """One searched config key: ``choice`` over ``choices``, or a numeric range ``[low, high]``."""

    key: str
    kind: str  # choice | log_uniform | uniform | int
    choices: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0


def parse_space(space: dict[str, Any], where: str = "search.space") -> list[Param]:
    """Check every key of ``search.space`` against the run config's fields and read its values.

    >>> parse_space({"train.lr": {"log_uniform": [1e-5, 1e-3]}})[0].kind
    'log_uniform'
    """
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}: nothing to search; give at least one key, e.g. train.lr: {{log_uniform: "
                          "[1.0e-5, 1.0e-3]}")
    return [_parse_one(str(key), spec, f"{where}.{key}") for key, spec in space.items()]


def _parse_one(key: str, spec: Any, where: str) -> Param:
    _check_key(key, where)
    if isinstance(spec, list):
        return _choice(key, spec, where)
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{where}: expected a list of choices or one of {{log_uniform | uniform | int | choice: "
                          f"...}}, got {spec!r}")
    (kind, values), = spec.items()
    if kind == "choice":
        if not isinstance(values, list):
            raise ConfigError(f"{where}: choice needs a list, got {values!r}")
        return _choice(key, values, where)
    if kind not in RANGE_KINDS:
        raise ConfigError(f"{where}: unknown kind {kind!r}; known: choice, {', '.join(RANGE_KINDS)}")
    low, high = _bounds(values, kind, where)
    return Param(key, kind, low=low, high=high)


def _choice(key: str, values: list[Any], where: str) -> Param:
    if not values:
        raise ConfigError(f"{where}: the choice list is empty")
    if len({repr(v) for v in values}) != len(values):
        raise ConfigError(f"{where}: the choice list repeats a value: {values!r}")
    return Param(key, "choice", choices=tuple(values))


def _bounds(values: Any, kind: str, where: str) -> tuple[float, float]:
    if not (isinstance(values, list) and len(values) == 2):
        raise ConfigError(f"{where}: {kind} needs [low, high], got {values!r}")
    try:  # YAML reads 1e-5 (no dot) as a string
        low, high = (float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {kind} bounds must be numbers, got {values!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ConfigError(f"{where}: {kind} needs low < high, got [{low}, {high}]")
    if kind == "log_uniform" and low <= 0:
        raise ConfigError(f"{where}: log_uniform needs low > 0, got {low}")
    if kind == "int" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"{where}: int needs whole-number bounds, got [{low}, {high}]")
    return low, high


def _check_key(key: str, where: str) -> None:
    """The key must name a value field of the run config (``train.lr``), not a section or an unknown name."""
    cls: Any = RunConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
        if part not in names:
            prefix = ".".join(parts[:i]) or "the top level"
            raise ConfigError(f"{where}: unknown config key {key!r}; {prefix} has: {', '.join(names)}")
        tp = field_hints(cls)[part]
        sub = [a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)]
        if not sub:
            if i != len(parts) - 1:
                raise ConfigError(f"{where}: {'.'.join(parts[:i + 1])} is a value, not a section")
            if part in ("output_dir", "search"):
                raise ConfigError(f"{where}: {key} cannot be searched")
            return
        cls = sub[0]
    raise ConfigError(f"{where}: {key} is a section; name one of its fields, e.g. {key}."
                      f"{dataclasses.fields(cls)[0].name}")


def suggest(trial: Any, params: list[Param]) -> dict[str, Any]:
    """Draw one value per parameter from an Optuna trial: {config key: value}."""
    out: dict[str, Any] = {}
    for p in params:
        if p.kind == "choice":
            # Optuna stores choices that are None/bool/int/float/str; other values go by their position
            simple = all(v is None or isinstance(v, (bool, int, float, str)) for v in p.choices)
            if simple:
                out[p.key] = trial.suggest_categorical(p.key, list(p.choices))
            else:
                out[p.key] = p.choices[trial.suggest_categorical(p.key, list(range(len(p.choices))))]
        elif p.kind == "int":
            out[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high))
        else:
            out[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.kind == "log_uniform")
    return out


def default_point(params: list[Param], cfg: RunConfig) -> dict[str, Any]:
    """The config's own values for the searched keys, as Optuna parameters (for the default trial)."""
    out: dict[str, Any] = {}
    for p in params:
        value = get_key(cfg, p.key)
        if p.kind == "choice":
            simple = all(v is None or isinstance(v, (bool, int, float, str)) for v in p.choices)
            if value not in p.choices:
                continue  # not one of the choices: the sampler picks that key for the default trial
            out[p.key] = value if simple else list(p.choices).index(value)
        elif value is not None and p.low <= float(value) <= p.high:
            out[p.key] = int(value) if p.kind == "int" else float(value)
    return out


def get_key(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def set_key(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a raw config mapping, creating sections on the way."""
    parts = key.split(".")
    for part in parts[:-1]:
        raw = raw.setdefault(part, {})
    raw[parts[-1]] = value
