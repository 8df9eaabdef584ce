"""``tuneforge report RUN [RUN ...]``: rebuild a run's report.html from its files, or compare runs on one page."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run directories written by `tuneforge train`")
    p.add_argument("--out", help="where to write the page (one run: RUN/report.html; several: "
                                 "report_compare.html in the current directory)")
    p.add_argument("--recompute", action="store_true",
                   help="one run: predict its test split again with the saved model and re-score the baselines (runs "
                        "trained before per-example predictions were saved), then rebuild; counterfactuals and "
                        "explanations are redone too")


def recompute(run_dir: Path) -> None:
    """The analysis step again from the saved model: test predictions (the tuned model and the baselines, which
    score zero-shot with label names, not a prompt file), counterfactuals, explanations."""
    from tuneforge.evaluation.analysis import finish_run_report
    from tuneforge.evaluation.baselines import score_baselines
    from tuneforge.prompting.runs import recompute_untrained, trains_nothing
    from tuneforge.run import load_run_config, open_run, prepare

    cfg = load_run_config(run_dir)
    if trains_nothing(cfg):  # zero-shot / in-context: no weights, the prompted model scores again
        recompute_untrained(run_dir, cfg)
        return
    loaded = open_run(run_dir)
    prepared = prepare(loaded.cfg, encode=False)
    split = prepared.test_split
    examples = prepared.splits[split]
    task = loaded.task  # the task as trained (label order), not the one prepare() set up from the data again
    baselines: dict[str, list] = {}
    score_baselines(loaded.cfg.eval.baselines, task, loaded.resolved, loaded.tokenizer, prepared.splits["train"],
                    examples, keep=baselines)
    finish_run_report(run_dir, loaded.cfg, task, loaded.model, examples, [task.encode(ex) for ex in examples],
                      baselines)


def _run(args: argparse.Namespace) -> int:
    from tuneforge.evaluation.html_report import render_compare, render_run
    from tuneforge.io_utils import atomic_write_text

    runs = [Path(r) for r in args.runs]
    for r in runs:
        if not (r / "report.json").is_file():
            raise FileNotFoundError(f"{r} has no report.json: not a finished TuneForge run")
    start = time.perf_counter()
    if len(runs) == 1:
        if args.recompute:
            recompute(runs[0])
        out = Path(args.out) if args.out else runs[0] / "report.html"
        atomic_write_text(out, render_run(runs[0]))
    else:
        out = Path(args.out or "report_compare.html")
        atomic_write_text(out, render_compare(runs))
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB in {time.perf_counter() - start:.2f} s)")
    return 0


def register(register_command) -> None:
    register_command("report", "rebuild a run's HTML report, or compare several runs side by side", _args, _run)
