"""tuneforge search on a tiny model: trials are runs, the pruner sees each validation, a killed search resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.test_smoke_pipeline import write_toy_csv

optuna = pytest.importorskip("optuna")


def write_search_config(tiny_bert_dir: Path, tmp_path: Path, trials: int = 3, **search) -> Path:
    data = tmp_path / "toy.csv"
    write_toy_csv(data)
    cfg = {"model": str(tiny_bert_dir), "output_dir": str(tmp_path / "run"), "seed": 3,
           "data": {"train": "toy.csv", "split": {"validation": 0.2, "test": 0.2}},
           "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "eval_every": 4, "progress": False,
                     "precision": "fp32", "trackers": []},
           "eval": {"baselines": []},
           "search": {"space": {"train.lr": {"log_uniform": [1e-4, 1e-2]}, "train.batch_size": [8, 16]},
                      "trials": trials, **search}}
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_three_trials_best_config_and_test_of_best_only(tiny_bert_dir, tmp_path):
    from tuneforge.config import load_config
    from tuneforge.search.study import run_search

    summary = run_search(write_search_config(tiny_bert_dir, tmp_path), log=lambda _: None)
    folder = tmp_path / "run-search"
    assert summary["metric"] == "accuracy" and summary["direction"] == "maximize"
    assert len(summary["trials"]) == 3
    first = summary["trials"][0]
    assert first["default"] and first["params"] == {"train.lr": 3e-3, "train.batch_size": 8}
    for row in summary["trials"]:
        run = Path(row["run_dir"])
        assert run.parent == folder / "trials" and (run / "config.yaml").is_file()
        assert row["last_step"] is not None  # the pruner was told each validation
    best = summary["best"]
    assert best["validation"] == max(r["validation"] for r in summary["trials"] if r["state"] == "COMPLETE")
    report = json.loads((Path(best["run_dir"]) / "report.json").read_text())
    assert best["test"] == report["metrics"]["test"]["accuracy"]
    assert all("test" not in r for r in summary["trials"])  # the trial table carries validation only
    cfg = load_config(folder / "best_config.yaml")  # ready for tuneforge train
    assert cfg.train.lr == pytest.approx(best["values"]["train.lr"])
    assert cfg.train.batch_size == best["values"]["train.batch_size"]
    assert cfg.output_dir.endswith("run-best")
    html = (folder / "search.html").read_text()
    assert "plotly" in html.lower() and "Best trial" in html
    assert "| trial | state | validation" in (folder / "search.md").read_text()


def test_pruner_stops_a_trial_at_a_validation(tiny_bert_dir, tmp_path, monkeypatch):
    from tuneforge.search.study import run_search

    asked: list[int] = []

    def prune_after_first(self):
        asked.append(self.number)
        return self.number > 0  # the default trial runs through; later ones are pruned at their first validation

    monkeypatch.setattr(optuna.trial.Trial, "should_prune", prune_after_first)
    summary = run_search(write_search_config(tiny_bert_dir, tmp_path, trials=2), log=lambda _: None)
    states = [r["state"] for r in summary["trials"]]
    assert states == ["COMPLETE", "PRUNED"]
    assert summary["trials"][1]["last_step"] == 4  # stopped at its first validation (eval_every 4)
    assert asked.count(0) >= 2 and 1 in asked


def test_errors_name_the_file_and_key(tiny_bert_dir, tmp_path):
    from tuneforge.config_typing import ConfigError
    from tuneforge.search.study import load_search

    path = write_search_config(tiny_bert_dir, tmp_path, pruner="hyperband")
    with pytest.raises(ConfigError, match=r"search.yaml: search.pruner: 'hyperband' is not one of median"):
        load_search(path)
    raw = yaml.safe_load(path.read_text())
    raw["search"] = {"space": {"train.lrr": [1, 2]}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"search.yaml: search.space.train.lrr: unknown config key"):
        load_search(path)


def test_killed_search_resumes(tiny_bert_dir, tmp_path):
    path = write_search_config(tiny_bert_dir, tmp_path, trials=3)
    folder = tmp_path / "run-search"
    cmd = [sys.executable, "-m", "tuneforge", "search", str(path), "--stale-after", "2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 240
    # kill it once the second trial has started training: one trial finished, one left running
    while not list((folder / "trials").glob("trial-0001/metrics.jsonl")) and time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{folder / 'study.db'}")
    assert [t.state.name for t in study.trials][:2] == ["COMPLETE", "RUNNING"]
    time.sleep(3)  # past --stale-after: the dead worker's trial is recognised as stale

    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 trials finished before, 2 to go" in out.stdout
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{folder / 'study.db'}")
    states = [t.state.name for t in study.trials]
    assert states[1] == "FAIL" and states.count("COMPLETE") + states.count("PRUNED") == 3
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == 1]
    assert retried and retried[0].params == study.trials[1].params  # the killed trial's values ran again
    summary = json.loads((folder / "search.json").read_text())
    assert summary["best"] is not None
