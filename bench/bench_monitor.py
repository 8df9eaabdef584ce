"""Sentiment monitor on a seeded PhraseBank stream with injected negative surges (bench/monitor_stream.py):
surge recall, false alerts per simulated day, median detection delay, zero-shot topic accuracy against the
stream's keyword topics, and end-to-end throughput (dedup, both classifiers batched, aggregation, SQLite).

The same stream is replayed twice in one process: first with the baseline settings (fp32, each commit batch
classified on its own: ``classify_batch = batch_size``), then with the config's (``precision``, ``classify_batch``).
Both get texts/s, the classifiers' share of the time, CPU seconds per text and the surge figures; the comparison
gives label and topic agreement row by row, the largest probability difference, and whether the alerts are the
same. ``--no-baseline`` replays the config's settings only.

    python bench/bench_monitor.py                       # → bench/results/monitor.json
    python bench/bench_monitor.py --days 2 --smoke      # a quick look → bench/results/monitor.smoke.json
    python bench/bench_monitor.py --hf-pipeline         # also transformers' text-classification pipeline, for scale
An alert matches a surge when its window overlaps the surge (or the window after it) and its topic is the surge's
topic or ``all``; every other alert, of any detector, counts as false. Delay = the time of the newest text the
monitor had seen in the alert's window when it fired, minus the surge start.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, set_threads, write_results  # noqa: E402
from monitor_stream import build_stream, read_phrasebank, topic_of  # noqa: E402


def match_alerts(alerts: list[dict[str, Any]], surges: list[dict[str, Any]], width: int) -> dict[str, Any]:
    """Which surges were caught (first matching alert), and which alerts matched nothing."""
    caught: dict[int, dict[str, Any]] = {}
    on_topic: set[int] = set()
    false = []
    for a in alerts:
        hits = [i for i, s in enumerate(surges) if a["topic"] in (s["topic"], "all")
                and a["window_start"] < s["end"] + width and a["window_start"] + width > s["start"]]
        for i in hits:
            if i not in caught or a["at"] < caught[i]["at"]:
                caught[i] = a
            if a["topic"] == surges[i]["topic"]:
                on_topic.add(i)
        if not hits:
            false.append(a)
    delays = [(caught[i]["at"] - surges[i]["start"]) / 60 for i in caught]
    return {"caught": len(caught), "on_topic": len(on_topic), "false": false, "delays_min": delays}


def topic_accuracy(topics: Any, n: int, seed: int) -> dict[str, Any]:
    """Zero-shot topic assignment against the keyword topics, on ``n`` PhraseBank sentences that have one."""
    rows = [(t, topic_of(t)) for t, _ in read_phrasebank()]
    rows = random.Random(seed).sample([r for r in rows if r[1]], n)
    got = topics([t for t, _ in rows])
    return {"sentences": n, "accuracy": round(sum(g == ref for g, (_, ref) in zip(got, rows)) / n, 4)}


def replay_variant(cfg: Any, stream: Path, database: Path, surges: list[dict[str, Any]], days: int,
                   topic_sample: int, seed: int) -> dict[str, Any]:
    """Load the classifiers, replay ``stream`` into a fresh ``database`` and score it."""
    from tuneforge.apps.monitor.service import build_monitor, replay

    t0 = time.perf_counter()
    monitor = build_monitor(cfg, database=database, sinks=[])
    load_seconds = time.perf_counter() - t0
    load_before = os.getloadavg()[0]
    cpu0 = time.process_time()
    result = replay(monitor, stream)
    cpu = time.process_time() - cpu0
    load_after = os.getloadavg()[0]
    fresh = result["counters"]["records"] - result["counters"].get("duplicates", 0)
    rechecked = {}  # [rows redone in fp32, rows predicted] per classifier that predicts in reduced precision
    for name, counts in (("sentiment", monitor.sentiment.predictor.model), ("topics", monitor.topics)):
        if hasattr(counts, "rows_rechecked"):
            rechecked[name] = [counts.rows_rechecked, counts.rows_predicted]
    topics = topic_accuracy(monitor.topics, topic_sample, seed)
    sentiment_precision, topic_precision = monitor.sentiment.precision, monitor.topics.precision
    monitor.close()
    m = match_alerts(result["alerts"], surges, cfg.detect_seconds)
    by_detector: dict[str, int] = {}
    for alert in m["false"]:
        by_detector[alert["detector"]] = by_detector.get(alert["detector"], 0) + 1
    stage = result["stage_seconds"]
    return {
        "precision": {"requested": cfg.precision, "sentiment": sentiment_precision, "topics": topic_precision},
        "batch_size": cfg.batch_size, "classify_batch": cfg.classify_batch,
        "model_load_seconds": round(load_seconds, 2),
        "surge_recall": round(m["caught"] / max(len(surges), 1), 4),
        "surge_recall_on_own_topic": round(m["on_topic"] / max(len(surges), 1), 4),
        "false_alerts": len(m["false"]), "false_alerts_per_day": round(len(m["false"]) / days, 3),
        "false_alerts_by_detector": by_detector,
        "median_delay_minutes": round(statistics.median(m["delays_min"]), 1) if m["delays_min"] else None,
        "delays_minutes": [round(d, 1) for d in sorted(m["delays_min"])],
        "throughput_texts_per_second": result["texts_per_second"], "replay_seconds": result["seconds"],
        "stage_seconds": stage,
        "classifier_share_of_time": round(stage["classify"] / max(result["seconds"], 1e-9), 4),
        "classifier_ms_per_fresh_text": round(1000 * stage["classify"] / max(fresh, 1), 2),
        "process_cpu_ms_per_text": round(1000 * cpu / max(result["records"], 1), 2),
        "rows_rechecked_in_fp32": rechecked,
        "load_average_1m": {"before": round(load_before, 2), "after": round(load_after, 2)},
        "counters": result["counters"], "alerts": len(result["alerts"]), "zero_shot_topics": topics,
    }


def hf_pipeline_rate(texts: list[str], batch_size: int = 64) -> dict[str, Any]:
    """The reference: ``transformers.pipeline("text-classification")`` over the packaged MiniLM with a 3-label head
    (the sentiment run's body shape; its mean+pooler head has no transformers class), batched, on ``texts``: one
    classifier, no dedup, topics or storage. fp32 and bf16 weights."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from tuneforge.models import resolve_model

    path = resolve_model("minilm").path
    out = {"texts": len(texts), "batch_size": batch_size, "model": "packaged minilm, 3-label head"}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=3, dtype=dtype)
        clf = pipeline("text-classification", model=model, tokenizer=AutoTokenizer.from_pretrained(path),
                       device="cpu")
        clf(texts[:batch_size], batch_size=batch_size, truncation=True, max_length=64)  # warm-up
        t0 = time.perf_counter()
        clf(texts, batch_size=batch_size, truncation=True, max_length=64)
        seconds = time.perf_counter() - t0
        out[name] = {"seconds": round(seconds, 2), "texts_per_second": round(len(texts) / seconds, 1)}
    return out


def compare_databases(a: Path, b: Path) -> dict[str, Any]:
    """Row-by-row agreement of two replays of the same stream (labels, topics, probabilities, alerts)."""
    def rows(db: Path, sql: str) -> list[tuple]:
        con = sqlite3.connect(db)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    ta = rows(a, "SELECT t, text, label, topic, p_neg, p_pos FROM texts ORDER BY rowid")
    tb = rows(b, "SELECT t, text, label, topic, p_neg, p_pos FROM texts ORDER BY rowid")
    if [r[:2] for r in ta] != [r[:2] for r in tb]:
        raise RuntimeError(f"the two replays stored different texts ({len(ta)} vs {len(tb)} rows)")
    n = max(len(ta), 1)
    alerts = "SELECT width, start, topic, detector FROM alerts ORDER BY 1, 2, 3, 4"
    return {"texts": len(ta),
            "sentiment_label_agreement": round(sum(x[2] == y[2] for x, y in zip(ta, tb)) / n, 5),
            "topic_agreement": round(sum(x[3] == y[3] for x, y in zip(ta, tb)) / n, 5),
            "max_probability_difference": round(max((max(abs(x[4] - y[4]), abs(x[5] - y[5]))
                                                     for x, y in zip(ta, tb)), default=0.0), 5),
            "same_alerts": rows(a, alerts) == rows(b, alerts)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs/apps/monitor_fpb.yaml"))
    p.add_argument("--sentiment-run", help="override the config's sentiment_run")
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rate", type=float, default=40.0, help="background texts per hour")
    p.add_argument("--surges-per-day", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default=None, help="override the config's precision")
    p.add_argument("--classify-batch", type=int, default=None, help="override the config's classify_batch")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the baseline replay (fp32, each commit batch classified on its own)")
    p.add_argument("--topic-sample", type=int, default=500)
    p.add_argument("--hf-pipeline", action="store_true",
                   help="also time transformers.pipeline('text-classification') on the stream's texts")
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out")
    a = p.parse_args()
    set_threads(a.threads)
    from tuneforge.apps.monitor.config import load_monitor_config

    over: dict[str, Any] = {"sinks": []}
    if a.sentiment_run:
        over["sentiment_run"] = str(Path(a.sentiment_run).resolve())
    if a.precision:
        over["precision"] = a.precision
    if a.classify_batch:
        over["classify_batch"] = a.classify_batch
    cfg = load_monitor_config(a.config, over)
    records, surges = build_stream(a.seed, a.days, a.rate, surges_per_day=a.surges_per_day)
    work = Path(tempfile.mkdtemp(prefix="bench_monitor_"))
    stream = work / "stream.jsonl"
    stream.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    scoring = (surges, a.days, a.topic_sample, a.seed)
    baseline = None
    if not a.no_baseline:
        base_cfg = load_monitor_config(a.config, {**over, "precision": "fp32", "classify_batch": cfg.batch_size})
        baseline = replay_variant(base_cfg, stream, work / "baseline.sqlite", *scoring)
    result = replay_variant(cfg, stream, work / "monitor.sqlite", *scoring)
    report_path = cfg.resolve(cfg.sentiment_run) / "report.json"
    test = json.loads(report_path.read_text())["metrics"]["test"] if report_path.exists() else {}
    payload: dict[str, Any] = {
        "command": "python bench/bench_monitor.py " + " ".join(sys.argv[1:]),
        "stream": {"days": a.days, "seed": a.seed, "records": len(records), "surges": len(surges),
                   "background_per_hour": a.rate, "surges_per_day": a.surges_per_day,
                   "surge_negatives_per_hour": 15, "surge_minutes": 90},
        "sentiment_run": str(cfg.resolve(cfg.sentiment_run)), "sentiment_test_accuracy": test.get("accuracy"),
        "work_dir": str(work), "threads": a.threads, **result,
    }
    if baseline is not None:
        payload["baseline"] = baseline
        payload["against_baseline"] = {
            **compare_databases(work / "baseline.sqlite", work / "monitor.sqlite"),
            "speedup_end_to_end": round(result["throughput_texts_per_second"]
                                        / max(baseline["throughput_texts_per_second"], 1e-9), 2),
            "speedup_classifiers": round(baseline["stage_seconds"]["classify"]
                                         / max(result["stage_seconds"]["classify"], 1e-9), 2)}
    if a.hf_pipeline:
        payload["hf_pipeline"] = hf_pipeline_rate([r["text"] for r in records])
    path = write_results("monitor", payload, a.out, a.smoke)
    print(json.dumps({k: v for k, v in payload.items() if k != "delays_minutes"}, indent=1))
    print(f"→ {path}")


if __name__ == "__main__":
    main()
