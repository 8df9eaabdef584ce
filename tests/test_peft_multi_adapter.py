"""One base model, several runs on top (different tasks, LoRA and head_only), each selected by name."""

from __future__ import annotations

import json

import pytest
import torch

from tests.peft_harness import outputs_of, probe_batch, tiny_config, train_pair
from tuneforge.cli import main
from tuneforge.inference.multi_adapter import MultiAdapterError, MultiAdapterPredictor
from tuneforge.inference.predictor import Predictor


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert_dir):
    mp = pytest.MonkeyPatch()
    out = {}
    for name, task, method, freeze in (("sentiment", "classification", "lora", "full"),
                                       ("entities", "ner", "lora", "full"),
                                       ("probe", "classification", None, "head_only"),
                                       ("prompt", "classification", "prompt_tuning", "full")):
        folder = tmp_path_factory.mktemp(name)
        cfg = tiny_config(task, method, folder, tiny_bert_dir, train={"epochs": 3}, freeze={"policy": freeze})
        out[name] = train_pair(cfg, mp)
    mp.undo()
    return out


def test_each_adapter_reproduces_its_own_run(runs):
    shared = MultiAdapterPredictor.from_run_dirs({n: runs[n].run_dir for n in ("sentiment", "entities", "probe")})
    assert shared.names == ["sentiment", "entities", "probe"]
    bodies = {id(p.model.backbone) for p in shared.predictors.values()}
    assert len(bodies) == 1  # one base model in memory
    for name in ("probe", "sentiment", "entities", "sentiment"):  # switching back and forth
        alone = Predictor.from_run_dir(runs[name].run_dir)
        batch = probe_batch(alone.task, runs[name].cfg)
        with shared.using(name) as predictor:
            got = outputs_of(predictor.model, batch)
        want = outputs_of(runs[name].model, batch)
        for key in want:
            torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=0)


def test_runs_pooling_differently_share_one_body(runs, tmp_path, tiny_bert_dir):
    """A mean-pooling run loaded first drops the body's unused pooler; a later run that pools with it still works."""
    cfg = tiny_config("classification", "lora", tmp_path, tiny_bert_dir, train={"epochs": 3},
                      head={"dropout": 0.0, "pooling": "mean"})
    mp = pytest.MonkeyPatch()
    try:
        plain = train_pair(cfg, mp)
    finally:
        mp.undo()
    assert runs["sentiment"].model.pooling == "mean_pooler"  # auto, on a body with a pooler
    shared = MultiAdapterPredictor.from_run_dirs({"plain": plain.run_dir, "sentiment": runs["sentiment"].run_dir})
    for name, pair in (("plain", plain), ("sentiment", runs["sentiment"])):
        batch = probe_batch(Predictor.from_run_dir(pair.run_dir).task, pair.cfg)
        with shared.using(name) as predictor:
            got = outputs_of(predictor.model, batch)
        torch.testing.assert_close(got["logits"], outputs_of(pair.model, batch)["logits"], atol=1e-5, rtol=0)


def test_cli_predict_adapters(runs, tmp_path, capsys):
    inputs = tmp_path / "in.txt"
    inputs.write_text("great love film\n")
    args = ["predict-adapters", f"s={runs['sentiment'].run_dir}", f"p={runs['probe'].run_dir}", "--input", str(inputs)]
    assert main([*args, "--adapter", "s"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["adapter"] == "s" and row["label"] in ("positive", "negative")
    assert main([*args, "--adapter", "nope"]) == 2
    assert "unknown adapter 'nope'" in capsys.readouterr().err


def test_unshareable_runs_are_refused(runs):
    with pytest.raises(MultiAdapterError, match="cannot be shared"):
        MultiAdapterPredictor.from_run_dirs([f"a={runs['sentiment'].run_dir}", f"b={runs['prompt'].run_dir}"])
