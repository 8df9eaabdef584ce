"""Continual runs on the tiny BERT: every strategy end to end on two stages, both scenarios, resume, predict."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from tuneforge.config import config_from_dict
from tuneforge.config_typing import ConfigError
from tuneforge.continual.runner import run_continual

# four classes, each with its own words: stages filter them by label (class-incremental) or use two files
CLASSES = {"positive": ["good", "great", "love"], "negative": ["bad", "terrible", "hate"],
           "card": ["card", "pin", "atm"], "transfer": ["transfer", "pending", "exchange"]}


def write_csv(path: Path, labels: list[str], n: int = 80, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            label = labels[i % len(labels)]
            words = rng.sample(CLASSES[label], 2) + rng.sample(["the", "my", "it", "this"], 2)
            rng.shuffle(words)
            w.writerow([" ".join(words), label])
    return path


def continual_cfg(tiny_bert_dir: Path, tmp_path: Path, scenario: str, strategy: str, **extra) -> object:
    tmp_path.mkdir(parents=True, exist_ok=True)
    split = {"validation": 0.2, "test": 0.2}
    if scenario == "task_incremental":
        stages = [{"name": "sentiment", "data": {"train": str(write_csv(tmp_path / "a.csv", ["positive", "negative"]))}},
                  {"name": "banking", "data": {"train": str(write_csv(tmp_path / "b.csv", ["card", "transfer"]))}}]
    else:
        all4 = str(write_csv(tmp_path / "all.csv", list(CLASSES), n=160))
        stages = [{"name": "first", "labels": ["positive", "negative"], "data": {"train": all4}},
                  {"name": "second", "labels": ["card", "transfer"], "data": {"train": all4}}]
    return config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": str(tmp_path / f"run_{strategy}"), "seed": 3,
        "data": {"split": split},
        "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "progress": False, "precision": "fp32",
                  "keep_checkpoints": 1, **extra.pop("train", {})},
        "eval": {"baselines": []},
        "continual": {"scenario": scenario, "strategy": strategy, "stages": stages, "ewc_samples": 8,
                      "replay_batch_size": 4, **extra},
    })


@pytest.mark.parametrize("strategy", ["naive", "replay", "ewc", "lwf", "adapter_per_stage", "joint"])
def test_each_strategy_runs_task_incremental(tiny_bert_dir, tmp_path, strategy):
    cfg = continual_cfg(tiny_bert_dir, tmp_path, "task_incremental", strategy)
    report = run_continual(cfg)
    r = report["R"]
    assert len(r) == 2 and all(len(row) == 2 for row in r)
    assert all(0.0 <= v <= 1.0 for row in r for v in row)
    assert report["average_accuracy"] == pytest.approx((r[1][0] + r[1][1]) / 2)
    assert report["forgetting"] == pytest.approx(r[0][0] - r[1][0])
    run = Path(cfg.output_dir)
    saved = json.loads((run / "report.json").read_text())
    assert saved["R"] == r and Path(saved["heatmap"]).is_file()
    assert len(saved["cost"]) == 2 and saved["cost"][1]["seconds"] >= 0
    if strategy == "adapter_per_stage":  # the base is frozen and stage 0's adapter untouched: nothing forgotten
        assert r[1][0] == r[0][0]
        assert report["cost"][0]["extra_parameters"] > 0
    if strategy == "replay":
        assert report["cost"][1]["buffer_rows"] == int(0.1 * report["cost"][0]["train_rows"])


def test_final_heads_predict_their_own_stage(tiny_bert_dir, tmp_path):
    from tuneforge.inference.predictor import Predictor

    cfg = continual_cfg(tiny_bert_dir, tmp_path, "task_incremental", "naive", train={"epochs": 4})
    report = run_continual(cfg)
    first = Predictor.from_run_dir(report["models"]["sentiment"])
    second = Predictor.from_run_dir(report["models"]["banking"])
    assert set(first.task.labels) == {"positive", "negative"}
    assert set(second.task.labels) == {"card", "transfer"}
    assert second.predict(["card pin my"])[0]["label"] in ("card", "transfer")


@pytest.mark.parametrize("strategy", ["naive", "replay", "ewc", "lwf", "joint"])
def test_each_strategy_runs_class_incremental(tiny_bert_dir, tmp_path, strategy):
    cfg = continual_cfg(tiny_bert_dir, tmp_path, "class_incremental", strategy, replay_sampling="class_balanced")
    report = run_continual(cfg)
    assert len(report["R"]) == 2
    labels = json.loads((Path(cfg.output_dir) / "stages" / "0-first" / "task.json").read_text())["state"]
    assert labels["labels"] == ["negative", "positive", "card", "transfer"]  # stage order, one head throughout


def test_joint_sees_more_rows_than_naive(tiny_bert_dir, tmp_path):
    naive = run_continual(continual_cfg(tiny_bert_dir, tmp_path, "class_incremental", "naive"))
    joint = run_continual(continual_cfg(tiny_bert_dir, tmp_path, "class_incremental", "joint"))
    assert joint["cost"][1]["train_rows"] == naive["cost"][1]["train_rows"] + naive["cost"][0]["train_rows"]


def test_resume_across_a_stage_boundary(tiny_bert_dir, tmp_path, monkeypatch):
    """A run killed in stage 1 resumes there and ends with the same R matrix as one that never stopped."""
    import tuneforge.continual.runner as runner

    whole = run_continual(continual_cfg(tiny_bert_dir, tmp_path / "a", "task_incremental", "ewc"))
    cfg = continual_cfg(tiny_bert_dir, tmp_path / "b", "task_incremental", "ewc")
    real = runner._train_stage

    def dies_in_stage_1(cfg_, stage, *args):
        if stage.index == 1:
            raise KeyboardInterrupt
        return real(cfg_, stage, *args)

    monkeypatch.setattr(runner, "_train_stage", dies_in_stage_1)
    with pytest.raises(KeyboardInterrupt):
        run_continual(cfg)
    state = json.loads((Path(cfg.output_dir) / "continual_state.json").read_text())
    assert state["done"] == 1 and len(state["R"]) == 1
    assert (Path(cfg.output_dir) / "strategy" / "ewc.safetensors").is_file()
    monkeypatch.setattr(runner, "_train_stage", real)
    with pytest.raises(FileExistsError, match="--resume"):
        run_continual(cfg)
    resumed = run_continual(cfg, resume=True)
    assert resumed["R"][0] == whole["R"][0]
    assert resumed["R"][1] == pytest.approx(whole["R"][1])


def test_bad_sequences_are_refused(tiny_bert_dir, tmp_path):
    cfg = continual_cfg(tiny_bert_dir, tmp_path, "class_incremental", "adapter_per_stage")
    with pytest.raises(ConfigError, match="task_incremental"):
        run_continual(cfg)
    cfg = continual_cfg(tiny_bert_dir, tmp_path, "task_incremental", "naive")
    cfg.continual.stages[1].name = cfg.continual.stages[0].name
    with pytest.raises(ConfigError, match="earlier stage"):
        run_continual(cfg)
    cfg = continual_cfg(tiny_bert_dir, tmp_path, "class_incremental", "naive")
    cfg.continual.stages[1].labels = ["nothing"]
    with pytest.raises(ConfigError, match="no training rows"):
        run_continual(cfg)


def test_cli_runs_a_sequence(tiny_bert_dir, tmp_path):
    import yaml

    from tuneforge.cli import main

    cfg = continual_cfg(tiny_bert_dir, tmp_path, "task_incremental", "naive")
    path = tmp_path / "seq.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert main(["continual", str(path)]) == 0
    assert (Path(cfg.output_dir) / "report.json").is_file()


def test_adapter_lr_is_every_adapter_stage_s_rate(tiny_bert_dir, tmp_path):
    from tuneforge.continual.stages import stage_config

    cfg = continual_cfg(tiny_bert_dir, tmp_path, "task_incremental", "adapter_per_stage", adapter_lr=2e-3)
    cfg.continual.stages[1].train = {"lr": 1e-5}  # a full fine-tuning rate on one stage: the adapter's rate wins
    assert [stage_config(cfg, i, tmp_path / "run").train.lr for i in range(2)] == [2e-3, 2e-3]
    cfg.continual.adapter_lr = None
    assert [stage_config(cfg, i, tmp_path / "run").train.lr for i in range(2)] == [3e-3, 1e-5]
    cfg.continual.strategy = "naive"
    cfg.continual.adapter_lr = 2e-3
    assert stage_config(cfg, 1, tmp_path / "run").train.lr == 1e-5
