"""``tuneforge study STUDY.yaml``: methods × label budgets × seeds on one frozen test split; resumable."""

from __future__ import annotations

import argparse
from pathlib import Path


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", help="study YAML (configs/study/*.yaml): base config, methods, budgets, seeds")
    p.add_argument("--out", help="output folder (default: the study's output_dir)")
    p.add_argument("--timeout", type=float, help="seconds allowed per cell")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--methods", help="run only these methods of the file (comma-separated); the rest stay for later")
    p.add_argument("--budgets", help="run only these label budgets of the file (comma-separated, e.g. 8,10%%)")
    p.add_argument("--seeds", help="run only these seeds of the file (comma-separated)")


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _run(args: argparse.Namespace) -> int:
    from tuneforge.study import run_study
    from tuneforge.study.spec import load_study, restrict

    spec = restrict(load_study(args.study, args.out), _csv(args.methods), _csv(args.budgets), _csv(args.seeds))
    result = run_study(spec, timeout=args.timeout, progress=not args.no_progress)
    print(Path(spec.output_dir, "study.md").read_text(encoding="utf-8"))
    print(f"study folder: {spec.output_dir} (study.json, study.md, learning_curve.svg)")
    failed = [r for r in result["rows"] if r["failed"]]
    return 1 if failed else 0


def register(register_command) -> None:
    register_command("study", "how many labels do I need: zero-shot, few-shot and fine-tuning across label budgets",
                     _args, _run)
