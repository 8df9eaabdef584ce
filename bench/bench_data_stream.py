"""Peak memory of reading + tokenising a large classification corpus: the list path (JSONL read whole into records,
parsed, every feature kept in a Python list, as ``prepare`` does) against the streamed path (Parquet decoded a batch
at a time, parsed and encoded per batch, features written to a memory-mapped Arrow file).

A corpus of ``--gb`` GB of text (random words, 8 labels, seeded) is generated under ``--workdir`` as JSONL and as
Parquet, each path runs in its own process with MiniLM's tokenizer (max_length 128), and a sampler thread records
the peak of the process's anonymous memory (``RssAnon``: Python objects, buffers) and of its mapped file pages
(``RssFile``: the page cache, which the kernel reclaims under pressure). The corpus is deleted afterwards unless
``--keep``.

    python bench/bench_data_stream.py --gb 1      # writes bench/results/data_stream.json
    python bench/bench_data_stream.py --smoke     # 10 MB, to check that both paths run
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import minilm_path, write_results  # noqa: E402

LABELS = [f"intent_{i}" for i in range(8)]


def status_kb(*keys: str) -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in keys:
            out[name] = int(value.split()[0])
    return out


class Sampler(threading.Thread):
    """Peak RssAnon and RssFile of this process, sampled every 20 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = {"RssAnon": 0, "RssFile": 0}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            now = status_kb("RssAnon", "RssFile")
            for k, v in now.items():
                self.peak[k] = max(self.peak[k], v)
            time.sleep(0.02)


def generate(workdir: Path, gb: float, seed: int = 0) -> dict[str, Any]:
    """JSONL and Parquet files holding the same rows (~600 characters of text each), written in chunks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    words = [f"{a}{b}" for a in ("card", "pin", "transfer", "top", "cash", "fee", "rate", "refund", "atm", "account")
             for b in ("", "s", "ing", "ed", "er", "ly", "ment", "able", "ness", "ful")] + \
        "the a my is not has where when why how what can i you it to of and in on for with".split()
    target = int(gb * 1e9)
    jsonl, parquet = workdir / "corpus.jsonl", workdir / "corpus.parquet"
    written, rows = 0, 0
    schema = pa.schema([("text", pa.string()), ("label", pa.string())])
    with open(jsonl, "w") as fh, pq.ParquetWriter(str(parquet), schema) as pw:
        while written < target:
            texts = [" ".join(rng.choices(words, k=rng.randint(60, 140))) for _ in range(20000)]
            labels = [rng.choice(LABELS) for _ in texts]
            fh.write("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in zip(texts, labels)))
            pw.write_table(pa.table({"text": texts, "label": labels}, schema=schema), row_group_size=20000)
            written += sum(len(t) for t in texts)
            rows += len(texts)
    return {"rows": rows, "text_bytes": written, "jsonl_bytes": jsonl.stat().st_size,
            "parquet_bytes": parquet.stat().st_size}


def task_and_tokenizer() -> tuple[Any, Any]:
    from tuneforge.config import DataConfig, HeadConfig, LossConfig
    from tuneforge.models import load_tokenizer
    from tuneforge.tasks.base import TaskContext
    from tuneforge.tasks.classification.task import ClassificationTask

    task = ClassificationTask(TaskContext(DataConfig(max_length=128), HeadConfig(pooling="mean"), LossConfig(),
                                          model_kind="encoder"))
    return task, load_tokenizer(minilm_path())


def child(mode: str, workdir: Path) -> dict[str, Any]:
    from tuneforge.data.readers import BadRows, read_file

    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    task, tok = task_and_tokenizer()
    if mode == "list":  # today's path: read_file → parse → setup → a list of features
        examples = task.parse(read_file(workdir / "corpus.jsonl"), BadRows())
        task.setup(examples, tok)
        features = [task.encode(ex) for ex in examples]
        n, tokens = len(features), sum(f["length"] for f in features)
    else:  # streamed: label column → setup; then parse + encode per batch into an Arrow file
        from tuneforge.data.columnar import open_columnar
        from tuneforge.data.stream import encode_to_arrow, label_examples

        source = open_columnar(workdir / "corpus.parquet", "train")
        task.setup(label_examples(source, "label"), tok)
        features = encode_to_arrow(source, task, workdir / "train.features.arrow")
        n, tokens = len(features), sum(features.lengths())
    seconds = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    hwm = status_kb("VmHWM")["VmHWM"]
    return {"mode": mode, "examples": n, "tokens": tokens, "seconds": round(seconds, 1),
            "peak_rss_anon_mb": round(sampler.peak["RssAnon"] / 1024), "peak_rss_file_mb":
            round(sampler.peak["RssFile"] / 1024), "vm_hwm_mb": round(hwm / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=1.0, help="GB of text to generate")
    ap.add_argument("--workdir", default="/tmp/tuneforge-stream-bench")
    ap.add_argument("--modes", default="stream,list", help="comma-separated: stream, list")
    ap.add_argument("--out", help="results file (default bench/results/data_stream.json)")
    ap.add_argument("--smoke", action="store_true", help="10 MB of text instead of --gb")
    ap.add_argument("--threads", type=int, help="accepted for run_all.py; the work is single-threaded")
    ap.add_argument("--keep", action="store_true", help="keep the generated corpus")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    workdir = Path(args.workdir)
    if args.child:
        print("RESULT " + json.dumps(child(args.child, workdir)), flush=True)
        return
    if args.smoke:
        args.gb = 0.01
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        corpus = generate(workdir, args.gb)
        corpus["generate_seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(corpus), flush=True)
        results = []
        for mode in args.modes.split(","):
            proc = subprocess.run([sys.executable, __file__, "--child", mode, "--workdir", str(workdir)],
                                  capture_output=True, text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(proc.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"mode {mode} failed (exit {proc.returncode})")
            results.append(json.loads(line[7:]))
            print(json.dumps(results[-1]), flush=True)
        path = write_results("data_stream", {"corpus": corpus, "results": results,
                                             "command": " ".join(["python", *sys.argv])}, args.out, args.smoke)
        print(f"results: {path}")
        print(f"{'path':8} {'examples':>10} {'seconds':>8} {'RssAnon MB':>11} {'RssFile MB':>11} {'VmHWM MB':>9}")
        for r in results:
            print(f"{r['mode']:8} {r['examples']:>10} {r['seconds']:>8} {r['peak_rss_anon_mb']:>11} "
                  f"{r['peak_rss_file_mb']:>11} {r['vm_hwm_mb']:>9}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
