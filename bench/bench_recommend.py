"""The MovieLens recommendation bench: train + evaluate the shipped config (bi-encoder vs popularity, the untuned
encoder and ALS, all users and the cold-start slice), the hybrid ranker, and single-user retrieval latency.

    python bench/bench_recommend.py                       # trains runs/movielens_minilm (overwrites it)
    python bench/bench_recommend.py --skip-train          # only the hybrid ranker and the latencies
    python bench/bench_recommend.py --skip-train --rerank # + the cross-encoder (fit on the run) and its latency

Latency: for the first 200 users of the log (by id), the user's text encoded by the tuned body (``encode``), then
``ItemIndex.top_k`` over all 9,742 items with their history removed (``retrieve``), then a whole
``Recommender.recommend`` call (encode + retrieve + the influences), after the item index is built.
With ``--rerank`` the cross-encoder is fit into the run (``recommend.rerank_*`` of the run's config) and the test
users are ranked by the bi-encoder alone, + hybrid, + cross-encoder and the hybrid over the cross-encoder's score
(``evaluate_rerankers``); the latency adds a ``Recommender.recommend`` call with re-ranking on.
Results: bench/results/recommend_movielens.json (``--rerank``: recommend_rerank_movielens.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "recommendation" / "movielens_minilm.yaml"


def latencies(run_dir: Path, users: int = 200, reranked_users: int = 50) -> dict:
    from tuneforge.apps.recommend import Recommender

    start = time.time()
    rec = Recommender.from_run_dir(run_dir)
    build = time.time() - start
    enc, ret, call = [], [], []
    for user in sorted(rec.history, key=lambda u: (len(u), u))[:users]:
        history = rec.history[user]
        a = time.perf_counter()
        vector = rec.user_vector(history)
        b = time.perf_counter()
        rec.index.top_k(vector, 10, [rec.catalogue.index[i] for i in history])
        c = time.perf_counter()
        rec.recommend(user, k=10)
        call.append(time.perf_counter() - c)
        enc.append(b - a)
        ret.append(c - b)

    def ms(x: list[float]) -> dict:
        return {"p50": round(1000 * float(np.median(x)), 2), "p95": round(1000 * float(np.percentile(x, 95)), 2)}

    out = {"index_build_s": round(build, 1), "encode_user_ms": ms(enc), "retrieve_all_items_ms": ms(ret),
           "recommend_call_ms": ms(call), "users": users}
    if rec.reranker is not None:
        ranked = []
        for user in sorted(rec.history, key=lambda u: (len(u), u))[:reranked_users]:
            c = time.perf_counter()
            rec.recommend(user, k=10, rerank=True)
            ranked.append(time.perf_counter() - c)
        out.update(recommend_rerank_call_ms=ms(ranked), reranked_users=reranked_users)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--rerank", action="store_true", help="fit and compare the cross-encoder re-ranker too")
    p.add_argument("--no-cross-hybrid", action="store_true",
                   help="--rerank without the hybrid over the cross-encoder's score (saves scoring the validation "
                        "users' candidates)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    name = "recommend_rerank_movielens.json" if args.rerank else "recommend_movielens.json"
    args.out = args.out or str(ROOT / "bench" / "results" / name)
    from tuneforge.apps.recommend.hybrid_eval import evaluate_hybrid
    from tuneforge.apps.recommend.rerank_eval import evaluate_rerankers
    from tuneforge.config import load_config
    from tuneforge.io_utils import atomic_write_json
    from tuneforge.runner import train

    load_start = list(os.getloadavg())
    cfg = load_config(CONFIG, ["train.overwrite=true", "train.progress=false"])
    run_dir = ROOT / cfg.output_dir if not Path(cfg.output_dir).is_absolute() else Path(cfg.output_dir)
    out: dict = {}
    if not args.skip_train:
        start = time.time()
        run_dir = train(cfg).run_dir
        out["train_eval_wall_s"] = round(time.time() - start, 1)
    report = json.loads((run_dir / "report.json").read_text())
    out.update(test=report["metrics"]["test"], baselines=report["baselines"], training=report.get("training"))
    start = time.time()
    if args.rerank:
        out["rerank"] = evaluate_rerankers(run_dir, cross_hybrid=not args.no_cross_hybrid)
        out["rerank_eval_s"] = round(time.time() - start, 1)
        atomic_write_json(args.out, out)  # kept if the latencies below are stopped
    else:
        out["hybrid"] = evaluate_hybrid(run_dir)
        out["hybrid_eval_s"] = round(time.time() - start, 1)
    out["latency"] = latencies(run_dir)
    out["host"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                   "loadavg_at_start": load_start, "loadavg_at_end": list(os.getloadavg())}
    atomic_write_json(args.out, out)
    print(json.dumps({k: out[k] for k in out if k not in ("test", "baselines", "hybrid", "rerank")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
