"""Freezing policies train exactly the intended parameters; a NaN loss stops training with a clear error."""

from __future__ import annotations

import pytest
import torch

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.config import config_from_dict
from tuneforge.models import load_backbone
from tuneforge.runner import train
from tuneforge.tasks.classification.head import SequenceClassifier
from tuneforge.training.freezing import apply_freezing
from tuneforge.training.loop import NonFiniteLossError


def model(tiny_bert_dir):
    return SequenceClassifier(load_backbone(str(tiny_bert_dir)), num_labels=3)


def trainable(m):
    return {n for n, p in m.named_parameters() if p.requires_grad}


def test_full_head_only_bitfit_top_k(tiny_bert_dir):
    m = model(tiny_bert_dir)
    counts = apply_freezing(m, "full")
    assert counts["trainable"] == counts["total"]
    m = model(tiny_bert_dir)
    apply_freezing(m, "head_only")
    assert trainable(m) == {"classifier.weight", "classifier.bias"}
    m = model(tiny_bert_dir)
    apply_freezing(m, "bitfit")
    names = trainable(m)
    assert "classifier.weight" in names and all(n.endswith("bias") for n in names - {"classifier.weight"})
    assert any("encoder.layer.0" in n for n in names)
    m = model(tiny_bert_dir)
    apply_freezing(m, "top_k", k=1)
    names = trainable(m)
    assert any("encoder.layer.1." in n for n in names)
    assert not any("encoder.layer.0." in n or "embeddings" in n for n in names)
    with pytest.raises(ValueError, match="has 2 layers"):
        apply_freezing(model(tiny_bert_dir), "top_k", k=5)


def test_frozen_weights_do_not_move_and_head_only_checkpoint_is_small(tiny_bert_dir, tmp_path):
    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=80)
    cfg = config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": str(tmp_path / "run"),
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}},
        "train": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "progress": False, "precision": "fp32"},
        "freeze": {"policy": "head_only"}, "eval": {"baselines": []},
    })
    before = load_backbone(str(tiny_bert_dir)).state_dict()
    train(cfg)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "run" / "best" / "model.safetensors"))
    assert set(saved) == {"classifier.weight", "classifier.bias"}
    from tuneforge.inference.predictor import Predictor

    loaded = Predictor.from_run_dir(tmp_path / "run").model
    for name, tensor in loaded.backbone.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_nan_loss_stops_with_a_clear_error(tiny_bert_dir, tmp_path):
    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=60)
    cfg = config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": str(tmp_path / "run"),
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}},
        "train": {"epochs": 50, "batch_size": 8, "lr": 1e30, "progress": False, "precision": "fp32",
                  "max_grad_norm": None, "optimizer": "sgd", "momentum": 0.0, "warmup_ratio": 0.0},
        "eval": {"baselines": []},
    })
    with pytest.raises(NonFiniteLossError, match="loss is (nan|inf)"):
        train(cfg)


def test_word_embeddings_freeze(tiny_bert_dir, tiny_llama_dir):
    from tuneforge.training.freezing import freeze_word_embeddings

    m = model(tiny_bert_dir)
    assert freeze_word_embeddings(m, True, vocab_grew=False)
    names = trainable(m)
    assert "backbone.embeddings.word_embeddings.weight" not in names
    assert {"backbone.embeddings.position_embeddings.weight", "backbone.embeddings.LayerNorm.weight"} <= names
    m = model(tiny_bert_dir)
    assert not freeze_word_embeddings(m, False, vocab_grew=False)
    assert len(trainable(m)) == len(list(m.parameters()))
    m = model(tiny_bert_dir)
    apply_freezing(m, "top_k", k=1)  # the policy already froze them: reported, not changed
    assert freeze_word_embeddings(m, False, vocab_grew=False)
    with pytest.raises(ValueError, match="added tokens"):
        freeze_word_embeddings(model(tiny_bert_dir), True, vocab_grew=True)

    class Lm(torch.nn.Module):  # input embeddings tied to the LM head: refused
        def __init__(self):
            super().__init__()
            self.backbone = load_backbone(str(tiny_llama_dir), causal_lm=True)

    with pytest.raises(ValueError, match="tied"):
        freeze_word_embeddings(Lm(), True, vocab_grew=False)


def test_freeze_embeddings_config_reaches_the_model(tiny_bert_dir, tmp_path):
    from tuneforge.build import build_model
    from tuneforge.config import ConfigError
    from tuneforge.models import resolve_model
    from tuneforge.run import make_task

    for setting in (True, False):
        cfg = config_from_dict({"model": str(tiny_bert_dir), "output_dir": str(tmp_path),
                                "freeze": {"embeddings": setting}})
        resolved = resolve_model(cfg.model)
        task = make_task(cfg, resolved)
        task.labels = ["a", "b"]
        built = build_model(task, resolved, None, cfg.freeze.policy, cfg.freeze.k, None,
                            freeze_embeddings=cfg.freeze.embeddings)
        weight = built.model.backbone.embeddings.word_embeddings.weight
        assert weight.requires_grad is not setting
        assert built.parameters["trainable"] == built.parameters["total"] - setting * weight.numel()
    with pytest.raises(ConfigError, match="freeze.embeddings"):
        config_from_dict({"model": "x", "freeze": {"embeddings": "sometimes"}})
