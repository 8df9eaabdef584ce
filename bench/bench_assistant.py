"""The BANKING77 assistant bench: 10 intents held out as out-of-scope, calibration, abstention and /v1/assist latency.

    python bench/bench_assistant.py            # data split + training (skipped when the run exists) + measures
    python bench/bench_assistant.py --stage data

The held-out intents are ``random.Random(SEED).sample(sorted(categories), 10)``. Train keeps the other 67 intents
minus a seeded 10% per intent carved for validation; validation also gets 30 rows of each held-out intent from
train.csv, labelled ``oos`` (they pick the threshold); the official test.csv is kept whole, its held-out rows
labelled ``oos``. Results: bench/results/assistant.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BANKING77, RESULTS, ROOT  # noqa: E402

from tuneforge.evaluation import calibration as cal  # noqa: E402

SEED = 77
HELD_OUT = 10
VALIDATION_SHARE = 0.1
OOS_VALIDATION_PER_INTENT = 30
OOS = "oos"
WORK = ROOT / "runs" / "banking77_oos"
CONFIG = ROOT / "configs" / "apps" / "assistant_banking77.yaml"
EXAMPLES = ("My new card still hasn't shown up, it's been a week", "how do I change my pin?",
            "Which currencies can I hold?", "Can I link my old card from another bank?",
            "When is customer support open?", "What's the weather like tomorrow?")
FAQ_QUERIES = ("When is customer support open?", "Can I speak to a real person?", "Do you give out loans?",
               "Is my money safe if the bank fails?", "Can my partner and I share an account?")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def held_out_intents() -> list[str]:
    cats = sorted(json.loads((BANKING77 / "categories.json").read_text()))
    return sorted(random.Random(SEED).sample(cats, HELD_OUT))


def _rows(path: Path) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [(r["text"], r["category"]) for r in csv.DictReader(fh)]


def _write(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "category"])
        w.writerows(rows)


def make_split(folder: Path = WORK / "data") -> dict[str, int]:
    """Write train/validation/test CSVs of the held-out split to ``folder``; returns row counts."""
    held = set(held_out_intents())
    rng = random.Random(SEED)
    by_intent: dict[str, list[tuple[str, str]]] = {}
    for text, cat in _rows(BANKING77 / "train.csv"):
        by_intent.setdefault(cat, []).append((text, cat))
    train, validation = [], []
    for cat in sorted(by_intent):
        rows = by_intent[cat][:]
        rng.shuffle(rows)
        if cat in held:
            validation += [(t, OOS) for t, _ in rows[:OOS_VALIDATION_PER_INTENT]]
            continue
        k = round(len(rows) * VALIDATION_SHARE)
        validation += rows[:k]
        train += rows[k:]
    test = [(t, OOS if c in held else c) for t, c in _rows(BANKING77 / "test.csv")]
    for name, rows in (("train", train), ("validation", validation), ("test", test)):
        _write(folder / f"{name}.csv", rows)
    return {"train": len(train), "validation": len(validation), "test": len(test)}


def train_run(run_dir: Path) -> None:
    from tuneforge.config import load_config
    from tuneforge.runner import train

    train(load_config(CONFIG, [f"output_dir={run_dir}", "train.progress=false"]))


def open_with_data(run_dir: Path) -> tuple[Any, dict[str, list], dict[str, list]]:
    """The trained run, its data splits as the run read them, and their encoded features."""
    from tuneforge.data.load import load_splits
    from tuneforge.run import open_run

    loaded = open_run(run_dir)
    splits = load_splits(loaded.cfg.data, loaded.task, loaded.cfg.seed).splits
    return loaded, splits, {name: [loaded.task.encode(ex) for ex in exs] for name, exs in splits.items()}


def measure_quality(run_dir: Path) -> dict[str, Any]:
    """Calibrate the run (calibration.json, report.json) and collect the figures: ECE, the threshold's test
    figures, each OOS score's AUROC and test figures at its own validation threshold, the rule without OOS rows."""
    from tuneforge.evaluation.calibrate_run import _gold, calibrate_run, collect_outputs, merge_into_report

    started = time.time()
    loaded, splits, features = open_with_data(run_dir)
    cfg, task, model = loaded.cfg, loaded.task, loaded.model
    outputs = {s: collect_outputs(model, task, features[s], cfg.eval.batch_size, embeddings=True)
               for s in ("validation", "test")}
    extra = calibrate_run(model, task, features, splits, "validation", cfg.calibration, cfg.eval.oos_label,
                          run_dir, cfg.eval.batch_size, cfg.seed, outputs)
    if not (run_dir / "report.json").is_file():  # a run stopped before its end (a time budget): report best/
        from tuneforge.evaluation.report import build_report, write_report

        metrics = {s: task.metrics([int(i) for i in outputs[s][0].argmax(-1)], splits[s]) for s in outputs}
        write_report(run_dir, build_report(task.name, cfg.model, task.main_metric, metrics, {}, {
            "test_split": "test", "weights": str(loaded.weights), "note": "written by bench_assistant.py from the "
            "weights above: the run was stopped before its last epoch"}))
    merge_into_report(run_dir, extra)
    stored = json.loads((run_dir / "calibration.json").read_text())
    # the rule without OOS rows: answer 90% of in-scope validation rows by calibrated max-softmax, applied to test
    logits = {s: outputs[s][0] for s in outputs}
    gold = {s: _gold(task, splits[s], cfg.eval.oos_label) for s in logits}
    msp = {s: cal.oos_score(logits[s], "max_softmax", stored["temperature"]) for s in logits}
    t_cov = cal.threshold_for_coverage(msp["validation"][~gold["validation"][1]], 0.9)
    g, oos = gold["test"]
    correct = logits["test"].argmax(-1) == g
    test = extra["test"]
    return {
        "rows": {s: len(splits[s]) for s in ("train", "validation", "test")},
        "oos_rows": {s: int(gold[s][1].sum()) for s in gold},
        "test_accuracy_in_scope_no_abstention": float(correct[~oos].mean()),
        "temperature": stored["temperature"],
        "ece_before": {s: extra[s]["ece_before_calibration"] for s in extra},
        "ece_after": {s: extra[s]["ece"] for s in extra},
        "chosen_score": stored["oos_score"], "threshold": stored["threshold"],
        "threshold_rule": test["threshold_rule"],
        "test": {k: test[k] for k in ("in_scope_accuracy", "in_scope_coverage", "answered_accuracy", "oos_recall")},
        "validation": {k: extra["validation"][k] for k in ("in_scope_accuracy", "in_scope_coverage", "oos_recall")},
        "scores": {n: {"validation_auroc": stored["validation_auroc"][n], "test_auroc": test["oos_auroc"][n],
                       "test_at_its_validation_threshold": test["by_score"][n]} for n in stored["validation_auroc"]},
        "coverage_rule_without_oos": {"rule": "coverage 0.9 of in-scope validation, max_softmax", "threshold": t_cov,
                                      **cal.abstention_metrics(msp["test"], correct, oos, t_cov)},
        "curve": {"coverage_risk_test": test["coverage_risk"], "oos_curve_test": test["oos_curve"]},
        "measure_seconds": round(time.time() - started, 1),
    }


def mahalanobis_scorer(emb: np.ndarray, gold: np.ndarray, shrink: float = 0.1) -> Any:
    """Negative Mahalanobis distance to the nearest class mean under one shared covariance (Lee et al., 2018),
    fitted on every training row; the covariance is shrunk towards a scaled identity so it inverts."""
    classes = np.unique(gold)
    mu = np.stack([emb[gold == c].mean(0) for c in classes])
    centred = emb - mu[np.searchsorted(classes, gold)]
    cov = centred.T @ centred / len(emb)
    cov += shrink * np.eye(len(cov)) * np.trace(cov) / len(cov)
    white = np.linalg.cholesky(np.linalg.inv(cov))  # distance = |(x - mu) W|^2
    mu_w = mu @ white

    def score(x: np.ndarray) -> np.ndarray:
        xw = x @ white
        return -((xw ** 2).sum(1)[:, None] - 2 * xw @ mu_w.T + (mu_w ** 2).sum(1)[None]).min(1)
    return score


def knn_scorer(emb: np.ndarray, k: int) -> Any:
    """Cosine similarity to the k-th nearest training row (Sun et al., 2022): higher = in-scope."""
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)

    def score(x: np.ndarray) -> np.ndarray:
        sim = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ unit.T
        return -np.sort(-sim, axis=1)[:, k - 1]
    return score


def compare_oos_scores(run_dir: Path, recall: float = 0.7) -> dict[str, Any]:
    """Every OOS score on the same run, each at its own validation threshold for ``recall`` of the OOS rows: the
    shipped ones (max-softmax, energy, cosine to class centroids of 50 rows a class) and two that need a pass
    over every training row (shared-covariance Mahalanobis, k-nearest-neighbour cosine)."""
    from tuneforge.evaluation.calibrate_run import _gold, class_centroids, collect_outputs

    started = time.time()
    loaded, splits, features = open_with_data(run_dir)
    cfg, task, model = loaded.cfg, loaded.task, loaded.model
    out = {s: collect_outputs(model, task, features[s], cfg.eval.batch_size, embeddings=True)
           for s in ("train", "validation", "test")}
    gold = {s: _gold(task, splits[s], cfg.eval.oos_label) for s in out}
    temperature = json.loads((run_dir / "calibration.json").read_text())["temperature"]
    centroids = class_centroids(model, task, features["train"], seed=cfg.seed, batch_size=cfg.eval.batch_size)
    scorers = {"max_softmax": lambda s: cal.oos_score(out[s][0], "max_softmax", temperature),
               "energy": lambda s: cal.oos_score(out[s][0], "energy", temperature),
               "centroid_cosine": lambda s: cal.distance_score(out[s][1], centroids)}
    train_emb, train_gold = out["train"][1], gold["train"][0]
    for name, fn in {"mahalanobis": mahalanobis_scorer(train_emb, train_gold),
                     **{f"knn{k}": knn_scorer(train_emb, k) for k in (1, 5, 10)}}.items():
        scorers[name] = lambda s, fn=fn: fn(out[s][1])
    g, oos = gold["test"]
    correct = out["test"][0].argmax(-1) == g
    rows = {}
    for name, fn in scorers.items():
        val, test = fn("validation"), fn("test")
        threshold = cal.threshold_for_oos_recall(val[gold["validation"][1]], recall)
        rows[name] = {"test_auroc": cal.auroc(test[~oos], test[oos]),
                      **cal.abstention_metrics(test, correct, oos, threshold)}
    return {"rule": f"each score's threshold rejects {recall:.0%} of the validation OOS rows", "scores": rows,
            "seconds": round(time.time() - started, 1)}


def measure_latency(run_dir: Path, queries: int, warmup: int = 20,
                    answers: Path = ROOT / "data" / "apps" / "banking77_answers.yaml") -> dict[str, Any]:
    """p50/p90 of POST /v1/assist over loopback HTTP, one query at a time, after ``warmup`` requests."""
    import httpx
    import uvicorn

    from tuneforge.apps.assistant import Assistant
    from tuneforge.commands.assist import build_app
    from tuneforge.config import load_config

    shipped = load_config(CONFIG).assistant  # the shipped config's assistant settings, whatever the run saved
    assistant = Assistant.from_run_dir(run_dir, answers=answers, faq_encoder=shipped.faq_encoder,
                                       feedback=run_dir / "bench_feedback.jsonl")
    assistant.faq_min_similarity = shipped.faq_min_similarity
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(build_app(assistant), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    texts = [t for t, _ in _rows(BANKING77 / "test.csv")[::37]] + list(FAQ_QUERIES)
    times: dict[str, list[float]] = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=30) as client:
        for i in range(warmup + queries):
            t0 = time.perf_counter()
            reply = client.post("/v1/assist", json={"text": texts[i % len(texts)]}).json()
            ms = (time.perf_counter() - t0) * 1000
            if i >= warmup:
                times.setdefault("all", []).append(ms)
                times.setdefault(reply["path"], []).append(ms)
        examples = [{k: r[k] for k in ("text", "path", "intent", "confidence", "answer")}
                    for r in (client.post("/v1/assist", json={"text": t}).json() for t in EXAMPLES)]
    server.should_exit = True
    thread.join(timeout=10)
    return {"queries": queries, "threads": torch.get_num_threads(), "examples": examples,
            "load_average_1min_after": round(os.getloadavg()[0], 2),  # the host is shared: context for the times
            **{f"p50_ms_{k}": round(float(np.percentile(v, 50)), 2) for k, v in times.items()},
            "p90_ms_all": round(float(np.percentile(times["all"], 90)), 2),
            "paths": {k: len(v) for k, v in times.items() if k != "all"}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("data", "train", "measure", "latency", "oos-scores", "all"), default="all",
                    help="latency: time /v1/assist again and replace only that part of the results file; "
                         "oos-scores: compare every OOS score on the trained run (adds oos_score_comparison)")
    ap.add_argument("--run-dir", default=str(WORK / "run"))
    ap.add_argument("--queries", type=int, default=200, help="timed /v1/assist requests after warm-up")
    args = ap.parse_args()
    run_dir = Path(args.run_dir)
    if args.stage in ("data", "all", "train"):
        print("split:", make_split(), "held out:", held_out_intents())
    if args.stage in ("train", "all") and not (run_dir / "report.json").is_file():
        started = time.time()
        train_run(run_dir)
        print(f"trained in {time.time() - started:.0f} s")
    if args.stage == "latency":
        path = RESULTS / "assistant.json"
        result = json.loads(path.read_text())
        result["latency"] = measure_latency(run_dir, args.queries)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result["latency"].items() if k != "examples"}, indent=2))
    if args.stage == "oos-scores":
        path = RESULTS / "assistant.json"
        result = json.loads(path.read_text())
        result["oos_score_comparison"] = compare_oos_scores(run_dir)
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["oos_score_comparison"], indent=2))
    if args.stage in ("measure", "all"):
        result = {"host": platform.processor() or platform.machine(), "cpu": cpu_name(),
                  "held_out_intents": held_out_intents(), **measure_quality(run_dir),
                  "latency": measure_latency(run_dir, args.queries)}
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "assistant.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
