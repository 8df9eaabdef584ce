"""End to end on a tiny random BERT: train → report → predict, from a config."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

from tuneforge.config import config_from_dict
from tuneforge.inference.predictor import Predictor
from tuneforge.runner import train


def write_toy_csv(path: Path, n: int = 120, seed: int = 0) -> None:
    rng = random.Random(seed)
    pos = ["good", "great", "love"]
    neg = ["bad", "terrible", "hate"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            label = "positive" if i % 2 else "negative"
            words = rng.sample(pos if label == "positive" else neg, 2) + rng.sample(["the", "movie", "film", "it"], 2)
            rng.shuffle(words)
            w.writerow([" ".join(words), label])


def test_train_report_predict(tiny_bert_dir, tmp_path):
    data = tmp_path / "toy.csv"
    write_toy_csv(data)
    cfg = config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": str(tmp_path / "run"), "seed": 1,
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}},
        "train": {"epochs": 8, "batch_size": 8, "lr": 3e-3, "progress": False, "precision": "fp32"},
        "eval": {"baselines": ["majority"]},
    })
    result = train(cfg)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["metrics"]["test"]["accuracy"] > report["baselines"]["majority"]["accuracy"]
    assert 0 <= report["metrics"]["test"]["macro_f1"] <= 1
    for name in ("config.yaml", "meta.json", "audit.json", "metrics.jsonl", "report.md", "best/model.safetensors"):
        assert (result.run_dir / name).exists(), name
    # head.pooling=auto settles when the head is built; the run records what was built, and the Predictor rebuilds it
    assert json.loads((result.run_dir / "task.json").read_text())["state"]["pooling"] == "mean_pooler"
    predictor = Predictor.from_run_dir(result.run_dir)
    assert predictor.model.pooling == "mean_pooler"
    preds = predictor.predict(["great love film", "terrible bad movie"])
    assert [p["label"] for p in preds] == ["positive", "negative"]


def test_training_twice_in_one_process_with_different_precisions(tiny_bert_dir, tmp_path):
    """accelerate's state is process-wide; a second run with another precision must still work."""
    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=40)
    for i, precision in enumerate(("fp32", "bf16", "fp32")):
        result = train(config_from_dict({
            "model": str(tiny_bert_dir), "output_dir": str(tmp_path / f"run_{i}_{precision}"),
            "data": {"train": str(data), "split": {"validation": 0.25, "test": 0.25}},
            "train": {"epochs": 1, "batch_size": 8, "progress": False, "precision": precision},
            "eval": {"baselines": []},
        }))
        assert result.report["training"]["precision"] == precision


def test_training_reads_a_list_of_train_files(tiny_bert_dir, tmp_path, monkeypatch):
    """data.train as a list of relative paths: the saved config holds absolute paths, meta.json hashes each file."""
    import yaml

    monkeypatch.chdir(tmp_path)
    write_toy_csv(tmp_path / "a.csv", n=30, seed=0)
    write_toy_csv(tmp_path / "b.csv", n=30, seed=1)
    result = train(config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": "run",
        "data": {"train": ["a.csv", "b.csv"], "split": {"validation": 0.2, "test": 0.2}},
        "train": {"epochs": 1, "batch_size": 8, "progress": False, "precision": "fp32"}, "eval": {"baselines": []},
    }))
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["data"]["train"] == [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    meta = json.loads((result.run_dir / "meta.json").read_text())
    assert [Path(e["path"]).name for e in meta["data"]["train"]] == ["a.csv", "b.csv"]
    audit = json.loads((result.run_dir / "audit.json").read_text())
    assert sum(audit["splits"][s]["count"] for s in ("train", "validation", "test")) == 60
