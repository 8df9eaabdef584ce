"""``tuneforge compare``: one config, one split, one run per method, each in its own process; a table and a plot.

Every method trains from the same config (same data, split, seed and epochs) plus the method's overrides below,
in a fresh subprocess so that its peak RSS is its own (``getrusage`` of that process). Rows come only from
files the runs wrote (report.json, metrics.jsonl, checkpoints); a run that fails gets a "failed" row.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.io_utils import atomic_write_json, atomic_write_text
from tuneforge.peft_methods import PEFT_METHODS, adalora_ranks

FREEZE_METHODS = {"full": "full", "head_only": "head_only", "top_k": "top_k", "bitfit": "bitfit"}

# Starting learning rates per method (the config's train.lr is kept for full and top_k). Methods that train few
# parameters need larger steps: LoRA 1e-3 (SST-2/MiniLM, one epoch, chosen on validation: 0.927 vs 0.918 at 5e-4),
# IA3 ~3e-3 (Liu et al.), prompt tuning far more.
# Change one with --set METHOD:train.lr=VALUE.
METHOD_LR: dict[str, float | None] = {
    "full": None, "top_k": None, "head_only": 1e-3, "bitfit": 1e-3, "lora": 1e-3, "adalora": 1e-3, "ia3": 3e-3,
    "prefix_tuning": 1e-2, "prompt_tuning": 3e-2, "p_tuning": 1e-2, "adapter": 1e-3,
}
# Baselines are the same for every method, so compare runs skip them; progress bars would flood the logs.
# each method's run folder is compare's own: a new compare replaces it
COMMON = ["eval.baselines=[]", "train.progress=false", "train.resume=false", "train.overwrite=true"]


def known_methods() -> list[str]:
    return list(FREEZE_METHODS) + PEFT_METHODS.names()


def method_overrides(method: str) -> list[str]:
    """Config overrides that select ``method``. ``lora`` → ``peft.method=lora`` + full freezing policy."""
    if method in FREEZE_METHODS:
        out = ["peft.method=null", f"freeze.policy={FREEZE_METHODS[method]}"]
    elif method in PEFT_METHODS:
        out = [f"peft.method={method}", "freeze.policy=full", "freeze.embeddings=false"]
    else:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(known_methods())}")
    lr = METHOD_LR.get(method)
    return out + ([f"train.lr={lr}"] if lr is not None else [])


@dataclass
class Row:
    method: str
    status: str  # "ok" or "failed (...)"
    lr: float | None = None
    trainable: int | None = None
    total: int | None = None
    trainable_pct: float | None = None
    peak_rss_mb: float | None = None
    seconds_per_epoch: float | None = None
    metric: str | None = None
    test_metric: float | None = None
    checkpoint_mb: float | None = None
    wall_seconds: float | None = None
    notes: str = ""
    overrides: list[str] = field(default_factory=list)


def compare(config: str | Path, methods: list[str], out: str | Path, overrides: list[str] | None = None,
            per_method: dict[str, list[str]] | None = None, timeout: float | None = None) -> list[Row]:
    """Train ``config`` once per method under ``out/<method>/`` and write ``compare.{md,json,png}`` in ``out``.

    >>> # compare("configs/classification/sst2.yaml", ["full", "lora"], "runs/sst2_compare")
    """
    for m in methods:
        method_overrides(m)  # fail fast on an unknown name
    from tuneforge.config import load_config, save_config

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # every method reads this snapshot (data paths made absolute), so editing the config file while a long
    # compare runs cannot give its rows different settings
    snapshot = out / "config.yaml"
    save_config(load_config(config), snapshot)
    rows = []
    for m in methods:
        run_dir = out / m
        args = [*(overrides or []), *COMMON, *method_overrides(m), *(per_method or {}).get(m, []),
                f"output_dir={run_dir}"]
        rows.append(_run_method(m, str(snapshot), args, run_dir, out / "logs", timeout))
        print(f"compare: {m}: {rows[-1].status}", flush=True)
        write_outputs(out, rows, str(config))
    return rows


def _run_method(method: str, config: str, overrides: list[str], run_dir: Path, logs: Path,
                timeout: float | None) -> Row:
    """One method in its own process; its output goes to ``logs/METHOD.log``, beside (not in) its run folder."""
    logs.mkdir(parents=True, exist_ok=True)
    result, log_path = logs / f"{method}.json", logs / f"{method}.log"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "tuneforge.compare", "--worker", config, str(result), *overrides]
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    wall = time.perf_counter() - start
    if rc != 0 or not result.is_file():
        why = f"timeout after {timeout:g} s" if rc == "timeout" else f"rc={rc}: {_last_error(log_path)}"
        return Row(method, f"failed ({why}); log: {log_path}", wall_seconds=round(wall, 1),
                   overrides=overrides)
    return collect_row(method, run_dir, json.loads(result.read_text()), overrides, wall)


def _last_error(log: Path) -> str:
    """The last line of the log that is not a warning (for a crash: the exception line)."""
    lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Warning" not in ln and not ln.startswith("warnings.warn")]
    return (useful or lines or ["(empty log)"])[-1][:300]


def collect_row(method: str, run_dir: Path, worker: dict[str, Any], overrides: list[str], wall: float) -> Row:
    """One table row from what the run wrote."""
    report = json.loads((run_dir / "report.json").read_text())
    training = report.get("training", {})
    split = report.get("test_split", "test")
    metric = report["main_metric"]
    value = report["metrics"].get(split, {}).get(metric)
    trainable, total = training.get("trainable_parameters"), training.get("total_parameters")
    weights = _weights_file(run_dir)
    notes = f"{split} split"
    if method == "adalora" and weights is not None:
        from safetensors.torch import load_file

        ranks = sorted(adalora_ranks(load_file(str(weights))).values())
        if ranks:
            notes += f"; AdaLoRA ranks min/mean/max {ranks[0]}/{sum(ranks) / len(ranks):.1f}/{ranks[-1]}"
    lr = next((float(o.split("=", 1)[1]) for o in reversed(overrides) if o.startswith("train.lr=")), None)
    return Row(method, "ok", lr=lr if lr is not None else worker.get("lr"), trainable=trainable, total=total,
               trainable_pct=100.0 * trainable / total if trainable and total else None,
               peak_rss_mb=round(worker["peak_rss_mb"], 1), seconds_per_epoch=_seconds_per_epoch(run_dir, training),
               metric=f"{split} {metric}", test_metric=value,
               checkpoint_mb=weights.stat().st_size / 2**20 if weights else None,
               wall_seconds=round(wall, 1), notes=notes, overrides=overrides)


def _weights_file(run_dir: Path) -> Path | None:
    best = run_dir / "best" / "model.safetensors"
    if best.is_file():
        return best
    found = sorted(run_dir.glob("checkpoints/step-*/model.safetensors"), key=lambda p: int(p.parent.name[5:]))
    return found[-1] if found else None


def _seconds_per_epoch(run_dir: Path, training: dict[str, Any]) -> float | None:
    """fit's wall time (validation passes included) over the epochs it covered (from metrics.jsonl)."""
    seconds = training.get("train_seconds")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = max((r.get("epoch", 0) for r in rows if r.get("split") == "validation"), default=0)
    return round(seconds / epochs, 2) if seconds is not None and epochs else None


# ---------------- outputs ----------------
def markdown_table(rows: list[Row], config: str) -> str:
    metric = next((r.metric for r in rows if r.metric), "test metric")
    head = ["method", "lr", "trainable", "trainable %", "peak RSS (MB)", "s / epoch", metric, "checkpoint (MB)",
            "notes"]
    lines = [f"# Method comparison: `{config}`", "",
             "Each method ran in its own process on the same config and split. Peak RSS is that process's "
             "maximum resident memory; s / epoch includes the validation passes inside fit.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.status != "ok":
            status = r.status.replace("|", "/")
            lines.append(f"| {r.method} | " + " | ".join(["—"] * (len(head) - 2)) + f" | {status} |")
            continue
        cells = [r.method, _fmt(r.lr, "{:g}"), _fmt(r.trainable, "{:,}"), _fmt(r.trainable_pct, "{:.3f}"),
                 _fmt(r.peak_rss_mb, "{:.0f}"), _fmt(r.seconds_per_epoch, "{:.1f}"), _fmt(r.test_metric, "{:.4f}"),
                 _fmt(r.checkpoint_mb, "{:.3g}"), r.notes]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any, spec: str) -> str:
    return "—" if value is None else spec.format(value)


def write_outputs(out: Path, rows: list[Row], config: str) -> None:
    atomic_write_json(out / "compare.json", {"config": config, "rows": [asdict(r) for r in rows]})
    atomic_write_text(out / "compare.md", markdown_table(rows, config))
    try:
        plot(rows, out / "compare.png")
    except ImportError:  # matplotlib is optional (the plots extra): the table and JSON are the results
        print("compare: no compare.png (pip install 'tuneforge[plots]' or matplotlib for the plot)", flush=True)


def plot(rows: list[Row], path: Path) -> None:
    """Five bar charts, one per measured column, methods on the x axis (failed runs are left out)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.status == "ok"]
    panels = [("test_metric", ok[0].metric if ok else "test metric", False),
              ("trainable_pct", "trainable parameters (%)", True), ("peak_rss_mb", "peak RSS (MB)", False),
              ("seconds_per_epoch", "seconds per epoch", False), ("checkpoint_mb", "checkpoint (MB)", True)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for ax, (attr, title, log) in zip(axes, panels):
        names = [r.method for r in ok if getattr(r, attr) is not None]
        values = [getattr(r, attr) for r in ok if getattr(r, attr) is not None]
        ax.bar(names, values, color="#4C72B0")
        ax.set_title(title, fontsize=10)
        if log and values and min(values) > 0:
            ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=60, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------- the worker: one method, in its own process ----------------
def worker(config: str, result: str, overrides: list[str]) -> int:
    from tuneforge.config import load_config
    from tuneforge.runner import train

    cfg = load_config(config, overrides)
    start = time.perf_counter()
    train(cfg)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    atomic_write_json(result, {"peak_rss_mb": peak_kb / 1024, "seconds": time.perf_counter() - start,
                               "lr": cfg.train.lr})
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[1] != "--worker":
        raise SystemExit("usage: python -m tuneforge.compare --worker CONFIG RESULT_JSON [overrides...]")
    raise SystemExit(worker(sys.argv[2], sys.argv[3], sys.argv[4:]))
