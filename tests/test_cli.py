"""The CLI: --help for each command, train → eval → predict → data audit, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.cli import COMMANDS, build_parser, main


def test_every_command_has_help(capsys):
    build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: tuneforge" in capsys.readouterr().out


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "tuneforge", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "train" in out.stdout


@pytest.fixture
def toy_run(tiny_bert_dir, tmp_path):
    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=100)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": str(tiny_bert_dir), "output_dir": str(tmp_path / "run"),
        "data": {"train": "toy.csv", "split": {"validation": 0.2, "test": 0.2}},
        "train": {"epochs": 6, "batch_size": 8, "lr": 3e-3, "progress": False, "precision": "fp32"},
        "eval": {"baselines": ["majority"]},
    }))
    assert main(["train", str(cfg), "seed=3"]) == 0
    return tmp_path, cfg


def test_train_eval_predict_audit(toy_run, capsys):
    tmp_path, cfg = toy_run
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(tmp_path / "toy.csv")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] > 0.8
    (tmp_path / "in.txt").write_text("great love film\nterrible bad movie\n")
    assert main(["predict", str(run), "--input", str(tmp_path / "in.txt"), "--output", str(tmp_path / "o.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == ["positive", "negative"]
    assert set(rows[0]["scores"]) == {"positive", "negative"} and 0 <= rows[0]["score"] <= 1
    assert main(["data", "audit", str(cfg), "--json", str(tmp_path / "audit.json")]) == 0
    assert "JS-div" in capsys.readouterr().out
    assert json.loads((tmp_path / "audit.json").read_text())["splits"]["train"]["count"] == 60


def test_predict_reads_stdin(toy_run, monkeypatch, capsys):
    import io

    tmp_path, _ = toy_run
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"text": "great love film"}\n'))
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), "--input", "-"]) == 0
    assert json.loads(capsys.readouterr().out.strip())["label"] == "positive"


def test_errors_are_reported_without_traceback(tmp_path, capsys):
    bad = tmp_path / "c.yaml"
    bad.write_text("train:\n  lerning_rate: 1\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "train.lerning_rate: unknown field" in err and str(bad) in err
    cfg = tmp_path / "d.yaml"
    (tmp_path / "d.csv").write_text("text,label\nok,\n")
    cfg.write_text("model: minilm\ndata:\n  train: d.csv\n")
    assert main(["data", "audit", str(cfg)]) == 2
    assert "d.csv:2 [field 'label']: empty label" in capsys.readouterr().err
