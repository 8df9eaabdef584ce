"""Frozen-feature cache: epoch time of head_only and top-2 training on SST-2 (MiniLM) with and without the cache.

Four runs, each in its own subprocess, on the same rows, seed and hyper-parameters: {head_only, top_k k=2} x
{cache off, cache on}. Both use TuneForge's ``fit()`` with its defaults (length-grouped batches, bf16 autocast where
the CPU has it). "cache on" calls ``cache_frozen_features`` (the call ``fit`` makes when ``train.feature_cache`` is
true) itself, so that its build time is reported apart: epoch 1 with the cache = build + first pass.

Epoch time = time between the last optimizer steps of consecutive epochs (the first from the start of ``fit``); it
includes ``fit``'s end-of-epoch checkpoint of the trainable weights (tiny here), nothing else. After training, both
paths are scored on the dev set with the full (uncached) model. The cached path runs the frozen layers in eval mode
(no dropout in them) while the uncached one keeps their dropout, so the accuracies may differ a little; with
``train.dropout=0`` they are identical (tests/test_feature_cache.py).

    python bench/bench_feature_cache.py                # full SST-2 train, 3 epochs per run
    python bench/bench_feature_cache.py --smoke        # 256 rows, 2 epochs
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    SST2,
    check,
    emit,
    minilm_path,
    ratio,
    read_table,
    run_contender,
    set_threads,
    table,
    write_results,
)

SIDES = ("head_only_plain", "head_only_cached", "top2_plain", "top2_cached")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    p.add_argument("--train-limit", type=int, default=None, help="first N rows of train.tsv (default: all)")
    p.add_argument("--dev-limit", type=int, default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="head_only and top-2 train few weights: a larger lr")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--timeout", type=float, default=None, help="seconds per run")
    p.add_argument("--smoke", action="store_true", help="256 train rows, 128 dev rows, 2 epochs")
    p.add_argument("--out", default=None, help="results JSON (default bench/results/feature_cache.json)")
    p.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.train_limit, args.dev_limit, args.epochs = 256, 128, 2
    return args


def run_side(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import torch

    from tuneforge.config import config_from_dict
    from tuneforge.evaluation.evaluate import predict_features
    from tuneforge.run import prepare
    from tuneforge.training.feature_cache import cache_frozen_features
    from tuneforge.training.loop import fit
    from tuneforge.training.precision import resolve_precision

    policy = "head_only" if args.side.startswith("head_only") else "top_k"
    cached = args.side.endswith("cached")
    precision = resolve_precision(args.precision)
    cfg = config_from_dict({
        "model": minilm_path(), "task": "classification", "seed": args.seed, "output_dir": str(workdir),
        "data": {"text_column": "sentence", "label_column": "label", "max_length": args.max_length},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "precision": precision,
                  "progress": False, "num_threads": args.threads, "keep_checkpoints": 1, "log_every": 1000,
                  "feature_cache": False, "early_stopping": {"patience": None}},
        "freeze": {"policy": policy, "k": 2}, "eval": {"baselines": []}})
    rows = {name: read_table(SST2 / f"{name}.tsv", "sentence", "label", limit)
            for name, limit in (("train", args.train_limit), ("dev", args.dev_limit))}
    prepared = prepare(cfg, {split: [{"sentence": t, "label": lab} for t, lab in rows[name]]
                             for split, name in (("train", "train"), ("validation", "dev"))})
    task = prepared.task
    feats = {"train": prepared.features["train"], "dev": prepared.features["validation"]}
    built = prepared.build_model()
    dtype = torch.bfloat16 if precision == "bf16" else None

    t0 = time.perf_counter()
    model, fit_task, train = built.model, task, feats["train"]
    build_seconds = 0.0
    if cached:
        model, fit_task, train, _ = cache_frozen_features(built.model, task, feats["train"], [], torch.device("cpu"),
                                                          dtype, verbose=True)
        build_seconds = time.perf_counter() - t0
        if fit_task is task:
            raise RuntimeError("the cache was not used (see the message above)")
    marks: list[float] = []
    fit_start = time.perf_counter()
    fit(model, fit_task, train, [], [], cfg.train, cfg.seed, workdir, step_hooks=[lambda m, s: marks.append(
        time.perf_counter())])
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    ends = [marks[min(len(marks), (e + 1) * steps_per_epoch) - 1] for e in range(args.epochs)]
    epochs = [b - a for a, b in zip([fit_start, *ends[:-1]], ends)]
    preds = predict_features(built.model, task, feats["dev"], 64, dtype)  # the full model, uncached
    later = epochs[1:] or epochs
    return {"policy": policy if policy == "head_only" else "top_k (k=2)", "cache": cached,
            "build_seconds": build_seconds, "epoch_seconds": epochs,
            "first_epoch_seconds": epochs[0] + build_seconds, "later_epoch_seconds": statistics.mean(later),
            "samples_per_second_later": len(train) / statistics.mean(later), "precision": precision,
            "dev_accuracy": task.metrics(preds, prepared.splits["validation"])["accuracy"], "train_rows": len(train),
            "trainable": built.parameters["trainable"]}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.side:
        set_threads(args.threads)
        with tempfile.TemporaryDirectory(prefix=f"bench_cache_{args.side}_") as tmp:
            emit({"side": args.side, **run_side(args, Path(tmp))})
        return 0
    results = []
    for side in args.sides:
        print(f"running {side} ...", flush=True)
        results.append(run_contender(__file__, argv, side, args.timeout))
    by = {r["side"]: r for r in results}
    lines = []
    for policy in ("head_only", "top2"):
        plain, cached = by.get(f"{policy}_plain", {}), by.get(f"{policy}_cached", {})
        if "later_epoch_seconds" in cached:
            cached["speedup_later_epochs"] = ratio(plain.get("later_epoch_seconds"), cached["later_epoch_seconds"])
            cached["speedup_first_epoch"] = ratio(plain.get("first_epoch_seconds"), cached["first_epoch_seconds"])
    lines.append(table(results, [("epoch 1 s", "first_epoch_seconds", "{:.2f}"),
                                 ("of which cache", "build_seconds", "{:.2f}"),
                                 ("later epochs s", "later_epoch_seconds", "{:.2f}"),
                                 ("samples/s later", "samples_per_second_later", "{:.0f}"),
                                 ("x later", "speedup_later_epochs", "{:.1f}x"),
                                 ("x epoch 1", "speedup_first_epoch", "{:.2f}x"),
                                 ("dev acc", "dev_accuracy", "{:.4f}"), ("peak RSS MB", "peak_rss_mb", "{:.0f}")]))
    lines.extend(f"{r['side']}: FAILED {r['error']}" for r in results if "error" in r)
    sp = by.get("head_only_cached", {}).get("speedup_later_epochs")
    lines.append(check("head_only epochs after the first >= 5x faster with the cache", None if sp is None else sp >= 5,
                       "-" if sp is None else f"{sp:.1f}x"))
    sp2 = by.get("top2_cached", {}).get("speedup_later_epochs")
    lines.append(f"top-2 epochs after the first: {'-' if sp2 is None else f'{sp2:.1f}x'} faster with the cache")
    n = next((r["train_rows"] for r in results if "train_rows" in r), 0)
    print(f"\nSST-2, MiniLM, {n} train rows, {args.epochs} epochs x batch {args.batch_size}, lr {args.lr:g}, "
          f"{args.threads} threads; cached = frozen layers run once in eval mode")
    print("\n".join(lines))
    setup = {k: v for k, v in vars(args).items() if k not in ("side", "out")}
    path = write_results("feature_cache", {"setup": setup, "results": results, "checks": lines, "notes": __doc__},
                         args.out, smoke=args.smoke)
    print(f"written: {path}")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
