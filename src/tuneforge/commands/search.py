"""``tuneforge search CONFIG``: hyper-parameter search over the config's ``search:`` space; resumable."""

from __future__ import annotations

import argparse


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config with a search: section (configs/search/*.yaml)")
    p.add_argument("--trials", type=int, help="finished trials to reach, counting a resumed study's (search.trials)")
    p.add_argument("--timeout", type=float, help="seconds this call may run (search.timeout)")
    p.add_argument("--out", help="search folder (search.output_dir; default <output_dir>-search)")
    p.add_argument("--stale-after", type=float, default=60.0,
                   help="seconds without a heartbeat after which a trial of a killed search is failed and retried")


def _run(args: argparse.Namespace) -> int:
    from tuneforge.search.study import run_search

    try:
        import optuna  # noqa: F401
    except ImportError:
        raise SystemExit("tuneforge search needs Optuna: pip install 'tuneforge[search]'") from None
    summary = run_search(args.config, trials=args.trials, timeout=args.timeout, out=args.out,
                         stale_after=args.stale_after)
    from pathlib import Path

    folder = Path(summary["best"]["config"]).parent if summary["best"] else None
    if folder is not None:
        print((folder / "search.md").read_text(encoding="utf-8"))
        print(f"search folder: {folder} (study.db, trials/, search.json, search.md, search.html, best_config.yaml)")
    return 0 if summary["best"] else 1


def register(register_command) -> None:
    register_command("search", "hyper-parameter search (Optuna TPE + pruning) over a config's search: space",
                     _args, _run)
