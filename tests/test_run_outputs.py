"""What every training run leaves behind: ``predictions/test.jsonl`` (text, gold, predicted) for every task, and no
output folder at all when the config or the data is wrong."""

from __future__ import annotations

import json

import pytest

from tests.peft_harness import tiny_config
from tests.tiny_tasks import TINY_TASKS
from tuneforge import runner
from tuneforge.config import ConfigError
from tuneforge.data.readers import DataError


@pytest.fixture
def model_for(request, tiny_bert_dir):
    return lambda kind: tiny_bert_dir if kind == "encoder" else request.getfixturevalue("tiny_llama_dir")


@pytest.mark.parametrize("task", ["classification", "ner", "relation", "qa", "generation"])
def test_every_task_saves_its_test_predictions(task, tmp_path, model_for, no_network):
    spec = TINY_TASKS[task](tmp_path)
    cfg = tiny_config(task, None, tmp_path, model_for(spec.model_kind), spec, train={"epochs": 1},
                      generation={"max_new_tokens": 4})
    result = runner.train(cfg)
    path = result.run_dir / "predictions" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 8, task  # every tiny task writes 8 test rows (tests/tiny_tasks.py)
    for row in rows:
        assert {"text", "gold", "predicted"} <= set(row), row
        assert isinstance(row["text"], str) and row["text"], row
        assert row["gold"] not in (None, [], ""), row
    first = rows[0]["predicted"]
    expected_key = {"classification": "label", "ner": "entities", "relation": "relation", "qa": "answer",
                    "generation": "generated"}[task]
    if isinstance(first, dict):  # classification's richer rows put the label at the top level
        assert expected_key in first, first
    else:
        assert expected_key == "label" and rows[0]["confidence"] is not None


def test_a_failed_config_or_data_error_leaves_no_output_folder(tmp_path, tiny_bert_dir, no_network):
    spec = TINY_TASKS["classification"](tmp_path)
    cfg = tiny_config("classification", None, tmp_path, tiny_bert_dir, spec)
    cfg.data.train = str(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="file not found"):
        runner.train(cfg)
    assert not (tmp_path / "run").exists()
    (tmp_path / "bad.csv").write_text("text,label\nfine,a\n,b\n")
    cfg.data.train = str(tmp_path / "bad.csv")
    with pytest.raises(DataError, match=r"bad\.csv:3"):
        runner.train(cfg)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError):
        tiny_config("classification", None, tmp_path, tiny_bert_dir, spec, train={"lr": -1.0})
    assert not (tmp_path / "run").exists()


def test_cli_config_error_leaves_no_output_folder(tmp_path, capsys):
    from tuneforge.cli import main

    (tmp_path / "c.yaml").write_text(f"task: classification\noutput_dir: {tmp_path / 'out'}\n"
                                     f"data: {{train: {tmp_path / 'x.csv'}}}\n")
    assert main(["train", str(tmp_path / "c.yaml"), "train.batch_size=0"]) == 2
    assert "train.batch_size" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
