"""A run directory's lifecycle: a fresh run never mixes with an old one, and a resume continues the same run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tuneforge.config import RunConfig
from tuneforge.config_typing import ConfigError

# Keys a resumed run may change: they steer how the run is shown or where it runs, not what it computes.
RESUME_MAY_CHANGE = ("train.resume", "train.overwrite", "train.progress", "train.num_threads", "train.log_every")
# Compared by content (sha256 in meta.json), not by path: the same files reached from another directory match.
DATA_PATHS = ("data.train", "data.validation", "data.test")
# Filled in by the model builder when unset (LoRA targets): unset on one side and set on the other is the same run.
FILLED_BY_BUILD = ("peft.target_modules",)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` → ``{"train.lr": 1}``; lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def training_config(cfg: RunConfig) -> dict[str, Any]:
    """The settings that decide what a run computes, flattened: what a resume must find unchanged."""
    flat = flatten(cfg.to_dict())
    return {k: v for k, v in flat.items() if k not in RESUME_MAY_CHANGE and k != "output_dir"}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``key: saved → current`` for every setting that differs (keys missing on one side included)."""
    rows = []
    for key in sorted(set(saved) | set(current)):
        if key in RESUME_MAY_CHANGE or key in DATA_PATHS:
            continue
        a, b = saved.get(key, "<unset>"), current.get(key, "<unset>")
        if key in FILLED_BY_BUILD and (a is None or b is None):
            continue
        if a != b and not (_is_number(a) and _is_number(b) and float(a) == float(b)):
            rows.append(f"{key}: {a!r} → {b!r}")
    return rows


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def data_differences(saved_meta: dict[str, Any], files: dict[str, Any]) -> list[str]:
    """Data files whose content (sha256) differs from what the checkpoint was trained on."""
    from tuneforge.meta import file_entry

    rows = []
    saved = saved_meta.get("data", {})
    for split in sorted(set(saved) | {k for k, v in files.items() if v}):
        now = file_entry(files[split]) if files.get(split) else None
        before = saved.get(split)
        if _hashes(before) != _hashes(now):
            rows.append(f"data.{split}: {_describe(before)} → {_describe(now)}")
    return rows


def _hashes(entry: Any) -> list[str]:
    entries = entry if isinstance(entry, list) else [entry] if entry else []
    return [e["sha256"] for e in entries]


def _describe(entry: Any) -> str:
    entries = entry if isinstance(entry, list) else [entry] if entry else []
    return ", ".join(f"{Path(e['path']).name} (sha256 {e['sha256'][:12]})" for e in entries) or "<none>"


def open_run_dir(run_dir: Path, cfg: RunConfig, files: dict[str, Any], resume: bool, overwrite: bool) -> None:
    """Create ``run_dir`` for a fresh run, or check that a resume continues the run that is there.

    A fresh run into a directory that already holds files is refused (its checkpoints would mix with the old
    ones) unless ``train.overwrite`` is set, which removes them first.
    """
    existing = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    if resume and (run_dir / "meta.json").is_file():
        check_resume(run_dir, cfg, files)
    elif existing and not resume:
        if not overwrite:
            shown = ", ".join(existing[:5]) + (", ..." if len(existing) > 5 else "")
            raise ConfigError(f"output_dir {run_dir} already holds files ({shown}); continue that run with "
                              f"resume=true, replace it with train.overwrite=true, or choose another output_dir")
        for name in existing:
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def check_resume(run_dir: Path, cfg: RunConfig, files: dict[str, Any]) -> None:
    """Refuse to resume ``run_dir`` with another config or other data; the message lists what differs."""
    meta = json.loads((run_dir / "meta.json").read_text())
    problems = []
    if "config" in meta:
        problems += config_differences(meta["config"], training_config(cfg))
    problems += data_differences(meta, files)
    if problems:
        listed = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ConfigError(f"resume: {run_dir} was trained with other settings or data; its checkpoints do not "
                          f"belong to this config:\n  {listed}\nUse the run's own config ({run_dir / 'config.yaml'}), "
                          f"or start a fresh run (train.overwrite=true or another output_dir)")
