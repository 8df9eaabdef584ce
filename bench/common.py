"""What the bench scripts share: data paths and readers, one subprocess per contender, peak RSS, tables, results."""

from __future__ import annotations

import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
SST2 = DATASETS / "sst2"
BANKING77 = DATASETS / "banking77"
RESULTS = ROOT / "bench" / "results"
RESULT_PREFIX = "RESULT "


def peak_rss_mb() -> float:
    """This process's peak resident set size, in MiB.

    ``VmHWM`` from /proc/self/status, not ``ru_maxrss``: Linux carries ``ru_maxrss`` over fork and exec, so a
    contender started by a parent that once held 1.3 GB would report at least 1.3 GB whatever it used itself.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, bytes on macOS


def read_table(path: Path, text_column: str, label_column: str | None = None,
               limit: int | None = None) -> list[tuple[str, str | None]]:
    """(text, label) rows of a CSV/TSV file, in file order; ``label`` is None when the file has no labels."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ",", quoting=csv.QUOTE_NONE
                                if path.suffix == ".tsv" else csv.QUOTE_MINIMAL)
        rows = []
        for row in reader:
            text = (row[text_column] or "").strip()
            if text:
                rows.append((text, row[label_column].strip() if label_column else None))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def minilm_path() -> str:
    from tuneforge.models import resolve_model

    return resolve_model("minilm").path


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def emit(result: dict[str, Any]) -> None:
    """A contender subprocess reports to the parent through one ``RESULT {json}`` line on stdout."""
    result.setdefault("peak_rss_mb", peak_rss_mb())
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_contender(script: str, argv: Sequence[str], side: str, timeout: float | None = None,
                  log_dir: Path | None = None) -> dict[str, Any]:
    """Run ``script argv --side side`` in a fresh interpreter (its own peak RSS); never raises for its failure.

    Returns the parsed RESULT dict, or ``{"side": side, "error": ...}`` naming the log with the full output.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, script, *argv, "--side", side]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, rc = f"timeout after {timeout} s", -1
    log = (log_dir or RESULTS) / f"{Path(script).stem}.{side}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{out}\n--- stderr\n{err}")
    lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
    if rc or not lines:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return {"side": side, "error": f"exit {rc}: {tail} (full output: {log})",
                "wall_seconds": time.perf_counter() - start}
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    result.setdefault("side", side)
    return result


def machine() -> dict[str, Any]:
    import torch
    import transformers

    from tuneforge.training.precision import cpu_bf16_speedup, cpu_supports_bf16, resolve_precision

    model = next((line.split(":", 1)[1].strip() for line in _cpuinfo().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "logical_cpus": os.cpu_count(), "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "cpu_bf16": cpu_supports_bf16(),
            "cpu_bf16_matmul_speedup": round(cpu_bf16_speedup(), 3) if cpu_supports_bf16() else None,
            "auto_precision": resolve_precision("auto"), "load_average_1m": os.getloadavg()[0]}


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def write_results(name: str, payload: dict[str, Any], out: str | None = None, smoke: bool = False) -> Path:
    """``bench/results/<name>.json`` (``<name>.smoke.json`` for smoke sizes; or ``out``) with the machine added."""
    path = Path(out) if out else RESULTS / f"{name}{'.smoke' if smoke else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"bench": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), "code": code(),
               **payload}
    tmp = path.with_name(f".{path.name}.tmp")  # a crash mid-write leaves the old results, not half a file
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)
    return path


def code() -> dict[str, Any]:
    """The commit the bench ran from and whether tracked files differed from it, so that results from several
    invocations are pooled only when they measured the same code."""
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", "src", "bench", ":(exclude)bench/results")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def fmt(value: Any, spec: str = "{:.1f}") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return spec.format(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]], name_key: str = "side") -> str:
    """Plain-text table: one row per contender; ``columns`` are (header, key, format)."""
    headers = [""] + [c[0] for c in columns]
    body = [[str(r.get(name_key, "?"))] + [fmt(r.get(key), spec) for _, key, spec in columns] for r in rows]
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    for b in body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(b, widths))))
    return "\n".join(lines)


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def check(label: str, ok: bool | None, detail: str) -> str:
    state = "n/a " if ok is None else ("PASS" if ok else "FAIL")
    return f"[{state}] {label}: {detail}"
