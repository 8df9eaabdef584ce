"""Two-process DDP on CPU (gloo) through `accelerate launch`: training happens, only rank 0 writes the run dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_smoke_pipeline import write_toy_csv


@pytest.mark.slow
def test_accelerate_launch_two_processes(tiny_bert_dir, tmp_path):
    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=200)
    run_dir = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": str(tiny_bert_dir), "output_dir": str(run_dir),
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}},
        "train": {"epochs": 3, "batch_size": 8, "lr": 3e-3, "progress": False, "precision": "fp32",
                  "early_stopping": {"patience": None}},
        "eval": {"baselines": ["majority"]},
    }))
    accelerate = Path(sys.executable).with_name("accelerate")
    launcher = [str(accelerate)] if accelerate.exists() else [shutil.which("accelerate") or "accelerate"]
    # accelerate's torchrun launcher is behind --multi_gpu; on a CPU-only machine it starts gloo processes
    cmd = launcher + ["launch", "--multi_gpu", "--num_processes", "2", "--num_cpu_threads_per_process", "1",
                      "--main_process_port", "29517", "-m", "tuneforge", "train", str(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["training"]["world_size"] == 2
    # 120 train rows / batch 8 = 15 batches, sharded over 2 ranks = 8 per rank per epoch
    assert report["training"]["steps"] == 24
    assert report["metrics"]["test"]["accuracy"] > report["baselines"]["majority"]["accuracy"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val_steps = [r["step"] for r in rows if r["split"] == "validation"]
    assert val_steps == [8, 16, 24]  # one row per evaluation: a second writer would duplicate them
    assert json.loads((run_dir / "meta.json").read_text())["world_size"] == 2
    assert proc.stdout.count("Before/after fine-tuning") == 1  # rank 1 prints and writes nothing
