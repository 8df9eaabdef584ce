"""``tuneforge continual CONFIG``: train a sequence of stages and measure what is forgotten."""

from __future__ import annotations

import argparse


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML run config with a continual: section (stages, scenario, strategy)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. continual.strategy=replay")
    p.add_argument("--resume", action="store_true", help="continue a stopped sequence at the stage and step it reached")
    p.add_argument("--overwrite", action="store_true", help="delete an existing output_dir and start again")


def _run(args: argparse.Namespace) -> int:
    from tuneforge.config import load_config
    from tuneforge.continual.runner import run_continual

    cfg = load_config(args.config, args.overrides)
    run_continual(cfg, resume=args.resume, overwrite=args.overwrite)
    return 0


def register(register_command) -> None:
    register_command("continual", "train on a sequence of stages with a continual-learning strategy; report the "
                     "accuracy matrix, forgetting and transfer", _args, _run)
