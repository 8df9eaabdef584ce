"""HTTP server under load on loopback: micro-batched vs one-request-one-forward throughput, latency, and overload.

The model: a real packaged-MiniLM classification run, trained for ``--train-steps`` steps on the committed
BANKING77 sample (data/samples/banking77; speed does not depend on how well it was trained), or ``--run-dir RUN``.
Texts: the sample's test queries, one per request. Each phase starts ``tuneforge serve`` (the real CLI, uvicorn)
on 127.0.0.1 on a free port in its own process and drives it from this process with ``--concurrency`` httpx
clients, each sending its next request as soon as its answer came; only 127.0.0.1 is contacted.

1. ``micro-batched``: the server's defaults (concurrent requests gathered into forwards of up to 64 inputs).
2. ``one-per-forward``: the same server with ``--max-batch-size 1``: each request its own forward.
   Both: a warm-up, then ``--requests`` timed requests; 0 errors expected; p50/p99 latency and texts/s; the ratio
   of texts/s is the gain of batching (goal >= 3x). Forwards and inputs per forward come from the server's /metrics.
3. ``overload``: ``--max-queue 32`` and ``--overload-concurrency`` clients: 429s with Retry-After, every request
   answered 200 either way (the server's count of 200s equals the clients'), then the same load again with clients
   that wait Retry-After and retry, all answered.

    python bench/bench_server.py                 # 1,000 requests at 50 concurrent clients per mode
    python bench/bench_server.py --smoke         # 200 requests, quick
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, check, ratio, table, write_results  # noqa: E402

SAMPLE = ROOT / "data" / "samples" / "banking77"
GOAL = 3.0


def build_run(work: Path, steps: int, threads: int | None) -> Path:
    """A MiniLM run on the BANKING77 sample, ``steps`` optimizer steps (the model's speed, not its accuracy, is
    what this bench measures)."""
    from tuneforge.config import config_from_dict
    from tuneforge.runner import train

    cfg = config_from_dict({
        "model": "minilm", "task": "classification", "output_dir": str(work / "run"), "seed": 42,
        "data": {"train": str(SAMPLE / "train.csv"), "test": str(SAMPLE / "test.csv"), "text_column": "text",
                 "label_column": "category", "max_length": 64, "split": {"validation": 0.1}, "test_limit": 32},
        "train": {"max_steps": steps, "batch_size": 16, "lr": 3e-4, "eval_every": 0, "progress": False,
                  "num_threads": threads},
        "eval": {"baselines": []},
    })
    return train(cfg).run_dir


def sample_texts() -> list[str]:
    import csv

    with open(SAMPLE / "test.csv", newline="", encoding="utf-8") as fh:
        return [row["text"].strip() for row in csv.DictReader(fh) if row["text"].strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``tuneforge serve RUN`` on 127.0.0.1 in a child process; ``stop()`` sends SIGTERM (a graceful drain)."""

    def __init__(self, run: Path, flags: list[str], args: argparse.Namespace, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        if args.threads:
            env["TUNEFORGE_NUM_THREADS"] = str(args.threads)
        self.log, self.log_file = log, open(log, "w")  # noqa: SIM115 - the child writes to it until stop()
        cmd = [sys.executable, "-m", "tuneforge", "serve", str(run), "--host", "127.0.0.1", "--port", str(self.port),
               "--log-level", "warning", "--precision", args.precision, *flags]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log_file, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 180) -> None:
        import httpx

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}); see {self.log}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the server was not ready within {timeout} s; see {self.log}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (less sensitive to a busy host than wall time)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def get(self, path: str) -> Any:
        import httpx

        return httpx.get(self.url + path, timeout=10)

    def stop(self) -> int | str:
        """``graceful`` when the server drained and exited on SIGTERM (uvicorn re-raises the signal at the end,
        so the exit status reads -15), else the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
            return "graceful" if rc in (0, -signal.SIGTERM) else rc
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self.log_file.close()


def server_counts(server: Server) -> dict[str, float]:
    from tuneforge.inference.server_metrics import metric_value

    text = server.get("/metrics").text
    return {"forwards": metric_value(text, "tuneforge_batch_size_count"),
            "inputs": metric_value(text, "tuneforge_batch_size_sum"),
            "served_200": metric_value(text, "tuneforge_requests_total", {"endpoint": "/predict", "status": 200}),
            "refused_429": metric_value(text, "tuneforge_requests_total", {"endpoint": "/predict", "status": 429})}


def bodies(texts: list[str], n: int) -> list[dict[str, Any]]:
    return [{"inputs": [texts[i % len(texts)]]} for i in range(n)]


def throughput_phase(name: str, run: Path, flags: list[str], texts: list[str], args: argparse.Namespace,
                     logs: Path) -> dict[str, Any]:
    from tuneforge.inference.load_client import drive

    server = Server(run, flags, args, logs / f"bench_server.server.{name}.log")
    try:
        drive(server.url, bodies(texts[::-1], args.warmup), args.concurrency)
        before, cpu = server_counts(server), server.cpu_seconds()
        result = drive(server.url, bodies(texts, args.requests), args.concurrency)
        cpu = server.cpu_seconds() - cpu
        after = server_counts(server)
        precision = server.get("/info").json()["precision"]
    finally:
        rc = server.stop()
    forwards = after["forwards"] - before["forwards"]
    inputs = after["inputs"] - before["inputs"]
    print(f"{name}: {result.summary()}", flush=True)
    return {"side": name, "flags": " ".join(flags) or "(defaults)", **result.summary(),
            "forwards": int(forwards), "inputs_per_forward": round(inputs / forwards, 2) if forwards else None,
            "server_cpu_ms_per_text": round(1000 * cpu / max(1, result.statuses.count(200)), 2),
            "precision": precision, "server_exit": rc}


def overload_phase(run: Path, texts: list[str], args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    from tuneforge.inference.load_client import drive

    flags = ["--max-queue", "32", "--max-inputs", "8"]
    sent = bodies(texts, args.overload_requests)
    server = Server(run, flags, args, logs / "bench_server.server.overload.log")
    try:
        once = drive(server.url, sent, args.overload_concurrency)
        counts = server_counts(server)
        retried = drive(server.url, sent, args.overload_concurrency, retry_429=True, max_retry_wait=1.0)
    finally:
        rc = server.stop()
    ok = once.statuses.count(200)
    answered = sum(a is not None and len(a) == 1 for a in once.answers)
    return {"flags": " ".join(flags), "concurrency": args.overload_concurrency, "no_retry": once.summary(),
            "accepted_answered": answered, "server_served_200": int(counts["served_200"]),
            "server_refused_429": int(counts["refused_429"]),
            "nothing_lost": ok == answered == int(counts["served_200"]) and once.errors == [],
            "with_retry": retried.summary(),
            "all_answered_with_retry": retried.statuses == [200] * len(sent) and retried.errors == [],
            "server_exit": rc}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-dir", help="a finished classification run (default: train a quick MiniLM run)")
    p.add_argument("--work-dir", help="keep the quick run here and reuse it next time (default: a temporary folder)")
    p.add_argument("--train-steps", type=int, default=60,
                   help="enough for decisive scores: a barely trained run's near ties would all be redone in fp32 "
                        "under bf16")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--overload-requests", type=int, default=600)
    p.add_argument("--overload-concurrency", type=int, default=200)
    p.add_argument("--threads", type=int, default=None, help="the server's torch threads (TUNEFORGE_NUM_THREADS)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                   help="the server's --precision (its default: auto)")
    p.add_argument("--smoke", action="store_true", help="200 requests, 20 concurrent, a 5-step run")
    p.add_argument("--out", help="results file (default bench/results/server.json)")
    args = p.parse_args(argv)
    if args.smoke:
        args.requests, args.concurrency, args.warmup, args.train_steps = 200, 20, 20, 5
        args.overload_requests, args.overload_concurrency = 200, 80
    logs = ROOT / "bench" / "results"  # bench_server.server.<phase>.log, beside the other benches' logs
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench_server_") as tmp:
        start = time.perf_counter()
        work = Path(args.work_dir or tmp) / f"minilm_{args.train_steps}_steps"
        if args.run_dir:
            run = Path(args.run_dir)
        elif (work / "run" / "report.json").exists():
            run = work / "run"
        else:
            run = build_run(work, args.train_steps, args.threads)
        model = "given run" if args.run_dir else f"packaged MiniLM, {args.train_steps} steps on the BANKING77 sample"
        print(f"run ready in {time.perf_counter() - start:.0f} s: {run}", flush=True)
        texts = sample_texts()
        rows = [throughput_phase("micro-batched", run, [], texts, args, logs),
                throughput_phase("one-per-forward", run, ["--max-batch-size", "1"], texts, args, logs)]
        overload = overload_phase(run, texts, args, logs)
    gain = ratio(rows[0]["texts_per_s"], rows[1]["texts_per_s"])
    cpu_gain = ratio(rows[1]["server_cpu_ms_per_text"], rows[0]["server_cpu_ms_per_text"])
    print(table(rows, [("ok", "ok", "{:d}"), ("errors", "errors", "{:d}"), ("p50 ms", "p50_ms", "{:.1f}"),
                       ("p99 ms", "p99_ms", "{:.1f}"), ("texts/s", "texts_per_s", "{:.1f}"),
                       ("forwards", "forwards", "{:d}"), ("inputs/forward", "inputs_per_forward", "{:.1f}"),
                       ("server CPU ms/text", "server_cpu_ms_per_text", "{:.2f}")]))
    print(f"micro-batched / one-per-forward texts/s: {gain:.2f}x" if gain else "ratio: n/a")
    print(f"server CPU per text, one-per-forward / micro-batched: {cpu_gain:.2f}x" if cpu_gain else "")
    print(check("batching gain", None if gain is None else gain >= GOAL, f"{gain or 0:.2f}x (goal >= {GOAL}x)"))
    print(check("no errors", all(r["errors"] == 0 for r in rows), str([r["errors"] for r in rows])))
    nl = overload["no_retry"]
    print(f"overload ({overload['flags']}, {overload['concurrency']} clients): {nl['status_counts']}, "
          f"accepted and answered {overload['accepted_answered']} = server's 200s {overload['server_served_200']}; "
          f"with retry: {overload['with_retry']['status_counts']} after {overload['with_retry']['retries']} retries")
    print(check("overload loses nothing", overload["nothing_lost"] and overload["all_answered_with_retry"],
                json.dumps({k: overload[k] for k in ("nothing_lost", "all_answered_with_retry")})))
    path = write_results("server", {"model": model, "requests": args.requests, "concurrency": args.concurrency,
                                    "server_threads": args.threads,
                                    "precision": args.precision, "modes": rows, "ratio_texts_per_s": gain,
                                    "ratio_server_cpu_per_text": cpu_gain,
                                    "goal_ratio": GOAL, "overload": overload}, args.out, args.smoke)
    print(f"results: {path}")
    ok = gain is not None and all(r["errors"] == 0 for r in rows) and overload["nothing_lost"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
