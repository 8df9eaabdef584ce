"""Few-shot and prompting runs end to end on tiny models: k-shot draws, zero-shot and in-context runs without
training, SetFit training, all writing the usual report."""

from __future__ import annotations

import json

import pytest

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.config import ConfigError, config_from_dict
from tuneforge.runner import train


def _cfg(model, data_file, out, **sections):
    raw = {"model": str(model), "output_dir": str(out), "seed": 5,
           "data": {"train": str(data_file), "split": {"validation": 0.2, "test": 0.2}},
           "train": {"epochs": 1, "batch_size": 8, "lr": 3e-3, "progress": False, "precision": "fp32"},
           "eval": {"baselines": ["majority", "zero_shot"]}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return config_from_dict(raw)


@pytest.mark.parametrize("how", [{"fewshot": {"method": "zero_shot"}}, {"train": {"epochs": 0}}])
def test_zero_shot_run_writes_the_usual_report(tiny_bert_dir, tmp_path, how):
    data = tmp_path / "toy.csv"
    write_toy_csv(data)
    cfg = _cfg(tiny_bert_dir, data, tmp_path / "run", fewshot={"descriptions": {"positive": ["good great love"],
                                                                            "negative": ["bad terrible hate"]},
                                                           **how.get("fewshot", {})}, **{
        k: v for k, v in how.items() if k != "fewshot"})
    report = train(cfg).report
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["metrics"]["test"]["accuracy"] == report["metrics"]["test"]["accuracy"]
    assert {"majority", "zero_shot"} <= set(saved["baselines"])
    assert saved["training"]["steps"] == 0 and saved["prompting"]["test"]["mode"] == "description_similarity"
    assert not (tmp_path / "run" / "best").exists()


def test_setfit_on_a_kshot_draw_trains_and_serves(tiny_bert_dir, tmp_path):
    pytest.importorskip("setfit")
    from tuneforge.inference.predictor import Predictor

    data = tmp_path / "toy.csv"
    write_toy_csv(data)
    cfg = _cfg(tiny_bert_dir, data, tmp_path / "run", data={"shots_per_class": 4},
               fewshot={"method": "setfit", "setfit_iterations": 2, "setfit_batch_size": 8,
                        "setfit_descriptions": True, "descriptions": {"positive": ["good"], "negative": ["bad"]}})
    assert cfg.head.pooling == "mean"  # auto resolves to the pooling SetFit trains
    report = train(cfg).report
    shots = json.loads((tmp_path / "run" / "shots.json").read_text())
    assert shots["per_class"] == {"negative": 4, "positive": 4} and len(shots["ids"]) == 8
    assert all(i.startswith(str(data)) for i in shots["ids"])
    # 8 drawn + 2 descriptions as examples: 2 iterations x 2 kinds x 10 / batch 8 → 5 steps
    assert report["training"]["steps"] == 5 and report["metrics"]["test"]["accuracy"] >= 0.0
    pred = Predictor.from_run_dir(tmp_path / "run")
    assert pred.predict(["good great film"])[0]["label"] in {"positive", "negative"}


def test_setfit_rejects_a_non_mean_head():
    with pytest.raises(ConfigError, match="head.pooling mean"):
        config_from_dict({"fewshot": {"method": "setfit"}, "head": {"pooling": "cls"}})
    with pytest.raises(ConfigError, match="needs task classification_generative"):
        config_from_dict({"fewshot": {"method": "prompt"}})


def test_icl_run_on_a_decoder_reports_demonstrations(tiny_llama_dir, tmp_path):
    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=40)
    cfg = _cfg(tiny_llama_dir, data, tmp_path / "run", task="classification_generative",
               data={"shots_per_class": 3}, fewshot={"method": "icl", "k": 1, "max_prompt_tokens": 50})
    report = train(cfg).report
    test = report["prompting"]["test"]
    assert test["mode"] == "icl" and len(test["demonstrations"]) == 2
    assert test["overflow_count"] == len(test["overflow"]) > 0  # a 50-token budget cannot hold the demonstrations
    assert 0.0 <= report["metrics"]["test"]["accuracy"] <= 1.0 and "zero_shot" in report["baselines"]


def test_prompt_method_trains_the_verbaliser_words_and_serves_them(tiny_llama_dir, tmp_path):
    from tuneforge.inference.predictor import Predictor

    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=40)
    cfg = _cfg(tiny_llama_dir, data, tmp_path / "run", task="classification_generative",
               data={"shots_per_class": 4}, train={"epochs": 2},
               fewshot={"method": "prompt", "instruction": "Mood? {labels}",
                        "verbaliser": {"positive": ["good"], "negative": ["bad"]}})
    train(cfg)
    state = json.loads((tmp_path / "run" / "task.json").read_text())["state"]
    assert state["prompt"]["verbaliser"] == {"negative": ["bad"], "positive": ["good"]}
    pred = Predictor.from_run_dir(tmp_path / "run")
    assert pred.task.prompt.instruction == "Mood? {labels}"
    ex = pred.task.parse_input("good film")
    assert pred.task.messages({**ex, "labels": ["positive"]})[-1] == {"role": "assistant", "content": "good"}
    assert pred.predict(["good film"])[0]["label"] in {"positive", "negative"}
