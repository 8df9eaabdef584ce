"""What the workbench reads from run directories: the runs table, curves, and a comparison with a config diff."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def run_dirs(root: Path) -> list[Path]:
    """Folders under ``root`` (two levels deep) that hold a run's config.yaml."""
    if not root.is_dir():
        return []
    found = {p.parent for p in root.glob("*/config.yaml")} | {p.parent for p in root.glob("*/*/config.yaml")}
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # a run still being written: shown without these fields
        return {}


def _size_mb(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6, 1) if folder.is_dir() else 0.0


def method_of(config: dict[str, Any]) -> str:
    peft = (config.get("peft") or {}).get("method")
    fewshot = (config.get("fewshot") or {}).get("method")
    if fewshot and fewshot != "none":
        return fewshot
    return peft or (config.get("freeze") or {}).get("policy", "full")


def run_row(run: Path, root: Path) -> dict[str, Any]:
    """One table row: name, task, model, method, main metric on test (and validation), train time, size."""
    config = load_yaml(run / "config.yaml")
    report = _json(run / "report.json")
    main = report.get("main_metric")
    metrics = report.get("metrics", {})
    training = report.get("training", {})
    return {"name": str(run.relative_to(root)), "task": config.get("task"), "model": config.get("model"),
            "method": method_of(config), "main_metric": main,
            "test": metrics.get("test", {}).get(main), "validation": metrics.get("validation", {}).get(main),
            "train_seconds": training.get("train_seconds"), "steps": training.get("steps"),
            "size_mb": _size_mb(run / "best"), "finished": bool(report),
            "has_report_html": (run / "report.html").is_file()}


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def curves(run: Path) -> dict[str, list[dict[str, Any]]]:
    """metrics.jsonl split into train rows (loss) and validation rows (metrics), for the live charts."""
    out: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    path = run / "metrics.jsonl"
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # the line being appended right now
            continue
        if row.get("split") in out:
            out[row["split"]].append(row)
    return out


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def compare(runs: list[Path], root: Path) -> dict[str, Any]:
    """Rows, curves and the config keys whose values differ between the runs (output_dir left out)."""
    configs = [flatten(load_yaml(r / "config.yaml")) for r in runs]
    keys = sorted(set().union(*configs)) if configs else []
    diff = {k: [c.get(k) for c in configs] for k in keys
            if k != "output_dir" and len({json.dumps(c.get(k), sort_keys=True, default=str) for c in configs}) > 1}
    return {"rows": [run_row(r, root) for r in runs], "curves": [curves(r) for r in runs], "config_diff": diff}
