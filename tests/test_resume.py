"""Exact resume: SIGKILL mid-training, resume=true, and the final weights equal an uninterrupted run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.training.checkpoint import PICKLED_STATE, WEIGHTS, list_checkpoints, verify
from tuneforge.training.ema import FILE as EMA_FILE


def config(tmp_path: Path, model: Path, data: Path, out: str) -> Path:
    cfg = {
        "model": str(model), "output_dir": str(tmp_path / out), "seed": 5,
        "data": {"train": str(data), "split": {"validation": 0.1, "test": 0.1}},
        "train": {"epochs": 3, "batch_size": 4, "grad_accum": 2, "lr": 1e-3, "save_every": 5, "eval_every": 30,
                  "progress": False, "precision": "fp32", "keep_checkpoints": 3, "num_threads": 1,
                  "early_stopping": {"patience": None}},
        "eval": {"baselines": ["majority"]},
    }
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(cfg: Path, *extra: str, kill_after: Path | None = None) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "tuneforge", "train", str(cfg), *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is not None:
        deadline = time.time() + 120
        while not kill_after.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    if kill_after is None and proc.returncode != 0:
        raise AssertionError(err.decode()[-3000:])
    return proc.returncode


def final_weights(run_dir: Path, file: str = WEIGHTS) -> tuple[dict, str]:
    steps = sorted((run_dir / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    return load_file(str(steps[-1] / file)), steps[-1].name


@pytest.mark.slow
@pytest.mark.parametrize("extra,damage", [([], False), (["train.ema_decay=0.95"], False),
                                          (["train.batch_tokens=14"], False), ([], True)],
                         ids=["plain", "ema", "token_budget", "damaged_newest"])
def test_sigkill_then_resume_matches_uninterrupted_run(tiny_bert_dir, tmp_path, extra, damage):
    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=400)
    straight = config(tmp_path, tiny_bert_dir, data, "straight")
    broken = config(tmp_path, tiny_bert_dir, data, "broken")
    run(straight, *extra)

    # step 45 is mid-epoch (40 optimizer steps per epoch; 80 with the token budget's 2-item batches): resume must
    # restore the data position and RNG
    rc = run(broken, *extra, kill_after=tmp_path / "broken" / "checkpoints" / "step-45" / "progress.json")
    assert rc == -signal.SIGKILL
    assert not (tmp_path / "broken" / "report.json").exists(), "the run finished before it could be killed"
    if damage:  # a truncated newest checkpoint: resume falls back to the previous one and still ends identical
        newest = list_checkpoints(tmp_path / "broken" / "checkpoints")[-1] / WEIGHTS
        newest.write_bytes(newest.read_bytes()[:-16])
    run(broken, *extra, "resume=true")
    for folder in list_checkpoints(tmp_path / "broken" / "checkpoints"):  # checksummed, and no pickle anywhere
        verify(folder)
    assert not list((tmp_path / "broken").rglob(PICKLED_STATE))

    ema = any(e.startswith("train.ema_decay") for e in extra)
    for file in (WEIGHTS, EMA_FILE) if ema else (WEIGHTS,):  # with EMA the average must resume exactly too
        a, name_a = final_weights(tmp_path / "straight", file)
        b, name_b = final_weights(tmp_path / "broken", file)
        assert name_a == name_b
        assert a.keys() == b.keys()
        worst = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert worst == 0.0, f"{file}: max abs diff {worst}"  # bitwise: same data order, RNG draws and maths
    # metrics after resume continue the same history
    ra = (tmp_path / "straight" / "report.json").read_text()
    rb = (tmp_path / "broken" / "report.json").read_text()
    import json

    assert json.loads(ra)["metrics"]["test"]["accuracy"] == json.loads(rb)["metrics"]["test"]["accuracy"]
    _, last = final_weights(tmp_path / "broken")
    assert json.loads((tmp_path / "broken" / "checkpoints" / last / "progress.json").read_text())["precision"] == "fp32"
