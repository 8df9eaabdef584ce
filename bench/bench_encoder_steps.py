"""Training speed of each packaged encoder on the same sentences: seconds a step and sentences a second.

    python bench/bench_encoder_steps.py                      # minilm, mpnet, me5-small (embeddings frozen and not)
    python bench/bench_encoder_steps.py --sides minilm --steps 10

Every contender is an ordinary ``tuneforge.train`` run (classification, mean pooling, batch 16, max length 64,
``--precision``, bf16 unless told) on the first SST-2 training sentences, in its own process; a step's time is
the run's training seconds over its steps (the first, slower steps included). Needs ``make setup-models`` for mpnet and me5-small and
``../shared/datasets/sst2``. Results: bench/results/encoder_steps.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SST2, emit, peak_rss_mb, read_table, run_contender, table, write_results  # noqa: E402

SIDES = {  # name: (model, extra overrides)
    "minilm": ("minilm", {}),
    "mpnet": ("mpnet", {}),
    "me5-small": ("me5-small", {}),
    "me5-small_frozen_embeddings": ("me5-small", {"freeze": {"embeddings": True}}),
}


def contender(side: str, steps: int, batch: int, precision: str) -> dict:
    from tuneforge.config import config_from_dict
    from tuneforge.runner import train

    model, extra = SIDES[side]
    rows = read_table(SST2 / "train.tsv", "sentence", "label")[: batch * steps]
    records = {"train": [{"text": t, "label": y} for t, y in rows], "validation": [{"text": t, "label": y}
                                                                                   for t, y in rows[:32]]}
    with tempfile.TemporaryDirectory() as out:
        cfg = config_from_dict({
            "model": model, "task": "classification", "output_dir": out, "seed": 0,
            "data": {"max_length": 64}, "head": {"pooling": "mean"},
            "train": {"max_steps": steps, "batch_size": batch, "lr": 3e-5, "eval_every": 0,
                      "save_every": 0, "progress": False, "precision": precision, "ema_decay": None, "trackers": []},
            "eval": {"baselines": []}, "calibration": {"enabled": False}, **extra})
        start = time.perf_counter()
        t = train(cfg, records=records).report["training"]
        wall = time.perf_counter() - start
    per_step = t["train_seconds"] / t["steps"] if t["steps"] else None
    return {"side": side, "model": model, "seconds_per_step": per_step,
            "sentences_per_second": batch / per_step if per_step else None,
            "trainable_parameters": t["trainable_parameters"], "total_parameters": t["total_parameters"],
            "precision": t["precision"], "wall_seconds": wall, "peak_rss_mb": peak_rss_mb()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", default=",".join(SIDES))
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--precision", default="bf16", help="every contender's train.precision (auto probes per run)")
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.side:
        emit(contender(args.side, args.steps, args.batch_size, args.precision))
        return 0
    argv = ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--precision", args.precision]
    rows = [run_contender(__file__, argv, side) for side in args.sides.split(",")]
    base = next((r["seconds_per_step"] for r in rows if r.get("side") == "minilm" and r.get("seconds_per_step")),
                None)
    for r in rows:
        if base and r.get("seconds_per_step"):
            r["step_time_vs_minilm"] = r["seconds_per_step"] / base
    print(table(rows, [("s/step", "seconds_per_step", "{:.3f}"), ("sent/s", "sentences_per_second", "{:.1f}"),
                       ("x minilm", "step_time_vs_minilm", "{:.2f}"), ("trainable", "trainable_parameters", "{:,}"),
                       ("precision", "precision", "{}")]))
    write_results("encoder_steps", {"args": vars(args), "rows": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
