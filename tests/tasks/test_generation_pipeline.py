"""The whole path on a tiny random Llama through ``runner.train``: train → report (before/after) → predict → chat,
plus classification with a decoder both ways (last-token head, and label words scored by the LM)."""

from __future__ import annotations

import importlib.util
import io
import json
import random

import pytest

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.cli import main as cli_main
from tuneforge.commands.chat import ChatSession, chat_loop
from tuneforge.config import config_from_dict
from tuneforge.inference.predictor import Predictor
from tuneforge.runner import train

PAIRS = [("where is my card", "it has not arrived yet"), ("what is the exchange rate", "the rate is good"),
         ("close my account", "please change pin"), ("i lost my money", "refund pending")]
TRAIN = {"batch_size": 8, "lr": 1e-2, "progress": False, "precision": "fp32", "warmup_ratio": 0.0}


def write_alpaca(path, copies: int = 12) -> None:
    rows = [{"instruction": q, "input": "", "output": a} for q, a in PAIRS for _ in range(copies)]
    random.Random(0).shuffle(rows)
    path.write_text(json.dumps(rows))


def generation_config(model_dir, tmp_path, **sections):
    data = tmp_path / "alpaca.json"
    write_alpaca(data)
    raw = {"model": str(model_dir), "task": "generation", "output_dir": str(tmp_path / "run"), "seed": 1,
           "data": {"train": str(data), "max_length": 64, "split": {"validation": 0.15, "test": 0.15,
                                                                    "group_duplicates": False}},
           "train": {**TRAIN, "epochs": 5}, "generation": {"max_new_tokens": 8, "packing": True},
           "eval": {"baselines": ["zero_shot"], "batch_size": 16}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return config_from_dict(raw)


def test_generation_train_report_predict_chat(tiny_llama_dir, tmp_path, capsys, monkeypatch, no_network):
    result = train(generation_config(tiny_llama_dir, tmp_path))
    report = json.loads((result.run_dir / "report.json").read_text())
    tuned, zero = report["metrics"]["test"], report["baselines"]["zero_shot"]
    for key in ("rougeL", "rouge1", "rouge2", "bleu", "chrf", "exact_match", "loss"):
        assert key in tuned and key in zero, key
    assert tuned["rougeL"] > zero["rougeL"] and tuned["loss"] < zero["loss"]
    assert (result.run_dir / "tokenizer" / "tokenizer_config.json").is_file()
    audit = json.loads((result.run_dir / "audit.json").read_text())
    assert audit["splits"]["train"]["truncated"]["max_length"] == 64

    predictor = Predictor.from_run_dir(result.run_dir)
    preds = predictor.predict(["where is my card", {"instruction": "close my account"}])
    assert all(isinstance(p["generated"], str) for p in preds)
    assert set(preds[0]["generated"].split()) & set(PAIRS[0][1].split())  # it learned something of the answer

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("where is my card\n")
    assert cli_main(["predict", str(result.run_dir), "--input", str(inputs)]) == 0
    assert "generated" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    monkeypatch.setattr("sys.stdin", io.StringIO("where is my card\n/exit\n"))
    assert cli_main(["chat", str(result.run_dir), "--max-new-tokens", "4"]) == 0
    assert "assistant> " in capsys.readouterr().out

    session = ChatSession(predictor, system="be short")
    streamed: list[str] = []
    assert chat_loop(session, ["where is my card", "/reset", "close my account", "/exit", "ignored"],
                     streamed.append) == 2
    assert session.messages[0]["role"] == "system" and len(session.messages) == 3  # system, user, assistant
    assert session.messages[-1]["content"] == "".join(streamed).split("assistant> ")[-1].strip()


@pytest.mark.skipif(importlib.util.find_spec("tuneforge.peft_methods") is None,
                    reason="tuneforge.peft_methods (another engineer's module) is not there yet")
def test_generation_with_lora(tiny_llama_dir, tmp_path, no_network):
    cfg = generation_config(tiny_llama_dir, tmp_path, peft={"method": "lora", "r": 4, "alpha": 8, "dropout": 0.0},
                            train={"epochs": 3, "lr": 2e-2}, eval={"baselines": []})
    result = train(cfg)
    assert result.report["training"]["trainable_parameters"] < result.report["training"]["total_parameters"] / 2
    preds = Predictor.from_run_dir(result.run_dir).predict(["where is my card"])
    assert isinstance(preds[0]["generated"], str)


def classification_config(model_dir, tmp_path, task: str, **extra):
    data = tmp_path / "toy.csv"
    write_toy_csv(data)
    return config_from_dict({
        "model": str(model_dir), "task": task, "output_dir": str(tmp_path / task), "seed": 1,
        "data": {"train": str(data), "max_length": 48, "split": {"validation": 0.2, "test": 0.2}},
        "train": {**TRAIN, "epochs": 8, "early_stopping": {"patience": None}},
        "eval": {"baselines": ["majority", "zero_shot"]}, **extra})


def assert_per_class(report):
    per_class = report["metrics"]["test"]["per_class"]
    assert set(per_class) == {"negative", "positive"}
    assert all({"precision", "recall", "f1", "support"} <= set(v) for v in per_class.values())
    assert report["metrics"]["test"]["accuracy"] > report["baselines"]["majority"]["accuracy"]


def test_decoder_classification_with_last_token_head(tiny_llama_dir, tmp_path, no_network):
    result = train(classification_config(tiny_llama_dir, tmp_path, "classification", train={**TRAIN, "epochs": 6}))
    assert json.loads((result.run_dir / "task.json").read_text())["state"]["pooling"] == "last"
    assert_per_class(result.report)
    preds = Predictor.from_run_dir(result.run_dir).predict(["great love film", "terrible bad movie"])
    assert [p["label"] for p in preds] == ["positive", "negative"]


def test_decoder_classification_by_label_words(tiny_llama_dir, tmp_path, no_network):
    # a short prompt: the 2-layer random model struggles to find the cue behind a long, character-split one
    cfg = classification_config(tiny_llama_dir, tmp_path, "classification_generative",
                                generation={"instruction": "is it positive or negative"},
                                train={**TRAIN, "epochs": 12, "warmup_ratio": 0.06,
                                       "early_stopping": {"patience": None}})
    result = train(cfg)
    assert_per_class(result.report)
    assert "zero_shot" in result.report["baselines"]
    preds = Predictor.from_run_dir(result.run_dir).predict(["great love film", "terrible bad movie"])
    assert [p["label"] for p in preds] == ["positive", "negative"]
    assert all(set(p["scores"]) == {"negative", "positive"} for p in preds)  # constrained to the label set
