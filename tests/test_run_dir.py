"""Run directories never mix: a fresh run refuses a used folder, a resume refuses another config or other data,
and the run assembly (``prepare`` / ``open_run``) is what train, predict and in-memory data share."""

from __future__ import annotations

import json

import pytest

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.config import config_from_dict
from tuneforge.config_typing import ConfigError
from tuneforge.data.readers import DataError
from tuneforge.run import open_run, prepare
from tuneforge.run_dir import config_differences, flatten
from tuneforge.runner import train


def _cfg(tiny_bert_dir, tmp_path, data, **train_kw):
    return config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": str(tmp_path / "run"), "seed": 1,
        "data": {"train": str(data), "split": {"validation": 0.25, "test": 0.25}},
        "train": {"epochs": 1, "batch_size": 8, "progress": False, "precision": "fp32", **train_kw},
        "eval": {"baselines": []},
    })


@pytest.fixture()
def toy(tmp_path):
    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=40)
    return data


def test_fresh_run_into_a_used_folder_is_refused_then_overwritten(tiny_bert_dir, tmp_path, toy):
    train(_cfg(tiny_bert_dir, tmp_path, toy))
    stale = tmp_path / "run" / "checkpoints" / "step-999"
    stale.mkdir()
    with pytest.raises(ConfigError, match="already holds files.*resume=true.*train.overwrite=true"):
        train(_cfg(tiny_bert_dir, tmp_path, toy))
    train(_cfg(tiny_bert_dir, tmp_path, toy, overwrite=True))
    assert not stale.exists()  # the old run's checkpoints are gone, not mixed with the new ones


def test_resume_refuses_another_config_and_names_the_field(tiny_bert_dir, tmp_path, toy):
    train(_cfg(tiny_bert_dir, tmp_path, toy))
    with pytest.raises(ConfigError, match=r"train\.lr: 5e-05 → 0\.001"):
        train(_cfg(tiny_bert_dir, tmp_path, toy, resume=True, lr=1e-3))
    # what only changes how the run is shown may differ
    train(_cfg(tiny_bert_dir, tmp_path, toy, resume=True, num_threads=1, log_every=3))


def test_resume_refuses_changed_data(tiny_bert_dir, tmp_path, toy):
    train(_cfg(tiny_bert_dir, tmp_path, toy))
    write_toy_csv(toy, n=40, seed=7)
    with pytest.raises(ConfigError, match=r"data\.train: toy\.csv \(sha256 [0-9a-f]{12}\) → toy\.csv"):
        train(_cfg(tiny_bert_dir, tmp_path, toy, resume=True))


def test_a_config_or_data_error_leaves_no_run_folder(tiny_bert_dir, tmp_path):
    with pytest.raises(DataError):
        train(_cfg(tiny_bert_dir, tmp_path, tmp_path / "missing.csv"))
    assert not (tmp_path / "run").exists()


def test_config_differences_treats_builder_filled_fields_and_numbers_as_equal():
    saved = flatten({"train": {"lr": 5e-5, "epochs": 3}, "peft": {"target_modules": ["query"]}})
    same = flatten({"train": {"lr": 5e-05, "epochs": 3.0}, "peft": {"target_modules": None}})
    assert config_differences(saved, same) == []
    assert config_differences(saved, flatten({"train": {"lr": 1e-4, "epochs": 3}})) == [
        "peft.target_modules: ['query'] → '<unset>'", "train.lr: 5e-05 → 0.0001"]


def test_prepare_takes_in_memory_records_and_open_run_rebuilds_the_model(tiny_bert_dir, tmp_path):
    rows = [{"text": f"{w} movie", "label": lab} for w, lab in (("good", "pos"), ("bad", "neg")) * 8]
    cfg = _cfg(tiny_bert_dir, tmp_path, "unused.csv")
    prepared = prepare(cfg, {"train": rows, "validation": rows[:4]})
    assert prepared.task.labels == ["neg", "pos"]
    assert prepared.validation_split == "validation" and prepared.test_split == "validation"
    assert len(prepared.features["train"]) == 16 and prepared.total_steps() == 2
    result = train(cfg, records={"train": rows, "validation": rows[:4], "test": rows[:4]})
    assert json.loads((result.run_dir / "meta.json").read_text())["data"] == {}  # nothing on disk to hash
    loaded = open_run(result.run_dir)
    assert loaded.weights.name == "best" and loaded.task.labels == ["neg", "pos"]
    with pytest.raises(DataError, match="unknown split 'dev'"):
        prepare(cfg, {"train": rows, "dev": rows})


def test_prepare_takes_a_dataframe_or_a_datasets_dataset(tiny_bert_dir, tmp_path):
    pd = pytest.importorskip("pandas")
    datasets = pytest.importorskip("datasets")
    rows = [{"text": f"{w} movie", "label": lab} for w, lab in (("good", "pos"), ("bad", "neg")) * 4]
    cfg = _cfg(tiny_bert_dir, tmp_path, "unused.csv")
    for table in (pd.DataFrame(rows), datasets.Dataset.from_list(rows)):
        prepared = prepare(cfg, {"train": table, "validation": rows[:2]})
        assert [ex["text"] for ex in prepared.splits["train"]] == [r["text"] for r in rows]
    with pytest.raises(DataError, match=r"<records>:2: a record must be a mapping"):
        prepare(cfg, {"train": [rows[0], "bad movie"]})
