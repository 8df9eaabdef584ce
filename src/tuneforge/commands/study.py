"""``tuneforge study STUDY.yaml``: methods × label budgets × seeds on one frozen test split; resumable."""

from __future__ import annotations

import argparse
from pathlib import Path


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", help="study YAML (configs/study/*.yaml): base config, methods, budgets, seeds")
    p.add_argument("--out", help="output folder (default: the study's output_dir)")
    p.add_argument("--timeout", type=float, help="seconds allowed per cell")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run(args: argparse.Namespace) -> int:
    from tuneforge.study import run_study
    from tuneforge.study.spec import load_study

    spec = load_study(args.study, args.out)
    result = run_study(spec, timeout=args.timeout, progress=not args.no_progress)
    print(Path(spec.output_dir, "study.md").read_text(encoding="utf-8"))
    print(f"study folder: {spec.output_dir} (study.json, study.md, learning_curve.svg)")
    failed = [r for r in result["rows"] if r["failed"]]
    return 1 if failed else 0


def register(register_command) -> None:
    register_command("study", "how many labels do I need: zero-shot, few-shot and fine-tuning across label budgets",
                     _args, _run)
