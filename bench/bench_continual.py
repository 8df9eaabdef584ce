"""Continual learning on real data: every strategy on one shipped sequence, its R matrix, forgetting and cost.

    python bench/bench_continual.py configs/continual/task_incremental.yaml \
        --strategies naive,replay,ewc,lwf,adapter_per_stage,joint --out bench/results/continual_task_incremental.json
    python bench/bench_continual.py configs/continual/class_incremental.yaml --scale 0.05 --strategies naive  # a quick check

Each strategy runs the config as shipped (``--scale`` / ``--test-scale`` multiply every stage's row limits, for quick checks) into
``<output_dir>_<strategy>``; the JSON gathers the reports and compares each strategy's forgetting with naive's.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import time
from pathlib import Path

from tuneforge.config import load_config
from tuneforge.continual.runner import run_continual
from tuneforge.io_utils import atomic_write_json


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                    platform.processor())
    except OSError:
        return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--strategies", default="naive,replay,ewc,lwf,joint")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every stage's training-row limit")
    ap.add_argument("--test-scale", type=float, help="multiply every stage's test_limit (default: --scale)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--heatmaps", help="copy each strategy's heatmap into this folder")
    ap.add_argument("--resume", action="store_true", help="keep the results already in --out")
    ap.add_argument("--tag", default="", help="suffix of each run's name in --out and its folder (variants of a "
                                              "strategy, e.g. '+current' with continual.loss_mask=current)")
    args = ap.parse_args()
    out = Path(args.out)
    results = json.loads(out.read_text()) if args.resume and out.is_file() else {}
    runs = results.setdefault("runs", {})
    for strategy in [s.strip() for s in args.strategies.split(",") if s.strip()]:
        name = f"{strategy}{args.tag}"
        if name in runs:
            continue
        cfg = load_config(args.config, [*args.overrides, f"continual.strategy={strategy}"])
        cfg.output_dir = f"{cfg.output_dir}_{strategy}{args.tag.replace('+', '_').replace('=', '')}"
        for st in cfg.continual.stages:
            st.limit = max(8, int(st.limit * args.scale)) if st.limit else st.limit
            test_scale = args.scale if args.test_scale is None else args.test_scale
            st.test_limit = max(8, int(st.test_limit * test_scale)) if st.test_limit else st.test_limit
        t0 = time.perf_counter()
        report = run_continual(cfg, resume=True, overwrite=False)
        report["wall_seconds"] = round(time.perf_counter() - t0, 1)
        report["overrides"] = list(args.overrides)
        if args.heatmaps:
            dst = Path(args.heatmaps) / f"continual_{cfg.continual.scenario}_{name.replace('+', '_')}{Path(report['heatmap']).suffix}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(report["heatmap"], dst)
        runs[name] = report
        results.update({"config": args.config, "overrides": args.overrides, "scale": args.scale,
                        "test_scale": args.test_scale, "cpu": _cpu(),
                        "summary": _summary(runs)})
        atomic_write_json(out, results)
    print(json.dumps(results.get("summary", {}), indent=2))


def _summary(runs: dict) -> dict:
    """Per strategy: final average accuracy, forgetting, and forgetting cut relative to naive."""
    naive = runs.get("naive", {}).get("forgetting")
    rows = {}
    for name, r in runs.items():
        row = {"average_accuracy": round(r["average_accuracy"], 4), "forgetting": round(r["forgetting"], 4),
               "backward_transfer": round(r["backward_transfer"], 4),
               "forward_transfer": round(r["forward_transfer"], 4), "seconds": r["total_seconds"]}
        if naive and naive > 0 and name != "naive" and not name.startswith("joint"):
            row["forgetting_cut_vs_naive"] = round(1 - r["forgetting"] / naive, 4)
        rows[name] = row
    joints = [n for n in runs if n.startswith("joint")]  # "joint" or tagged variants: the best is the reference
    joint = max(joints, key=lambda n: runs[n]["average_accuracy"], default=None)
    if joint:
        best = max((n for n in runs if not n.startswith("joint")), key=lambda n: runs[n]["average_accuracy"],
                   default=None)
        if best:
            rows["best"] = best
            rows["best_vs_joint_points"] = round(100 * (runs[best]["average_accuracy"]
                                                        - runs[joint]["average_accuracy"]), 2)
    return rows


if __name__ == "__main__":
    main()
