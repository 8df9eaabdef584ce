"""Frozen-feature cache: what gets cached, and that training from the cache equals the uncached path (dropout 0)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.config import config_from_dict
from tuneforge.models import load_backbone, load_tokenizer
from tuneforge.runner import train
from tuneforge.tasks.classification.head import SequenceClassifier
from tuneforge.training.feature_cache import (
    CachedClassifier,
    CachedTask,
    CachePlan,
    cache_frozen_features,
    compute_cache,
    plan_cache,
)
from tuneforge.training.freezing import apply_freezing


def classifier(folder, policy: str, k: int = 1, dropout: float | None = None,
               pooling: str = "mean") -> SequenceClassifier:
    torch.manual_seed(0)
    model = SequenceClassifier(load_backbone(str(folder), dropout=dropout), num_labels=3, pooling=pooling)
    apply_freezing(model, policy, k)
    return model


class ToyTask:
    """Just enough of the classification task for collate: pad input ids, stack labels."""

    def collate(self, features):
        from tuneforge.tasks.classification.data import collate

        return collate(features, 0, 3, False)


def toy_features(folder, n: int = 10) -> list[dict]:
    tok = load_tokenizer(str(folder))
    texts = ["the movie", "great film i love it", "bad", "what a terrible terrible film this was",
             "it is good", "my card has not arrived yet", "love", "the film was great and the cast was good",
             "hate it", "where is my money"]
    out = []
    for i, text in enumerate((texts * 2)[:n]):
        enc = tok(text, truncation=True, max_length=32)
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                    "token_type_ids": enc["token_type_ids"], "length": len(enc["input_ids"]), "labels": i % 3})
    return out


def test_plan_reads_the_frozen_bottom_from_requires_grad(tiny_bert_dir):
    assert plan_cache(classifier(tiny_bert_dir, "head_only")) == CachePlan("pooled", 2)
    assert plan_cache(classifier(tiny_bert_dir, "top_k", k=1)) == CachePlan("hidden", 1)
    assert plan_cache(classifier(tiny_bert_dir, "top_k", k=2)) is None  # every layer trains: nothing to skip
    assert plan_cache(classifier(tiny_bert_dir, "full")) is None
    assert plan_cache(classifier(tiny_bert_dir, "bitfit")) is None  # biases train in every layer
    assert plan_cache(torch.nn.Linear(2, 2)) is None  # not a SequenceClassifier: the ordinary path
    # the pretrained pooler sits above the stack: it trains with top_k and does not block the cache
    top = classifier(tiny_bert_dir, "top_k", k=1, pooling="pooler")
    assert all(p.requires_grad for p in top.backbone.pooler.parameters())
    assert plan_cache(top) == CachePlan("hidden", 1)
    assert plan_cache(classifier(tiny_bert_dir, "head_only", pooling="pooler")) == CachePlan("pooled", 2)


@pytest.mark.parametrize("method", ["lora", "p_tuning"])
def test_peft_wrapped_bodies_are_never_cached(tiny_bert_dir, method):
    from tuneforge.config import PeftConfig
    from tuneforge.peft_methods import apply_peft

    body, _ = apply_peft(load_backbone(str(tiny_bert_dir)), PeftConfig(method=method, num_virtual_tokens=4))
    assert plan_cache(SequenceClassifier(body, num_labels=2)) is None


@pytest.mark.parametrize("pooling", ["mean", "pooler", "mean_pooler"])
@pytest.mark.parametrize("policy", ["head_only", "top_k"])
def test_cached_forward_equals_the_full_forward(tiny_bert_dir, policy, pooling):
    model = classifier(tiny_bert_dir, policy, k=1, pooling=pooling).eval()
    feats = toy_features(tiny_bert_dir)
    task = ToyTask()
    new_model, new_task, cached, _ = cache_frozen_features(model, task, feats, [], torch.device("cpu"), None)
    assert isinstance(new_model, CachedClassifier) and isinstance(new_task, CachedTask)
    # same parameter names as the full model: checkpoints, optimizer groups and load_weights see no difference
    assert [n for n, _ in new_model.named_parameters()] == [n for n, _ in model.named_parameters()]
    idx = [0, 3, 5, 7]  # mixed lengths: padding differs between the two paths
    full_batch = task.collate([feats[i] for i in idx])
    with torch.no_grad():
        want = model(**{k: v for k, v in full_batch.items() if k != "labels"})["logits"]
        batch = new_task.collate([cached[i] for i in idx])
        assert ("pooled" in batch) == (policy == "head_only") and ("hidden" in batch) == (policy == "top_k")
        got = new_model.eval()(**{k: v for k, v in batch.items() if k != "labels"})["logits"]
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_frozen_part_runs_in_eval_mode_even_during_training(tiny_bert_dir):
    model = classifier(tiny_bert_dir, "head_only", dropout=0.5).train()
    feats = toy_features(tiny_bert_dir, n=4)
    plan = plan_cache(model)
    a = compute_cache(model, ToyTask(), feats, plan, torch.device("cpu"), None)
    b = compute_cache(model, ToyTask(), feats, plan, torch.device("cpu"), None)
    assert model.training  # restored
    with torch.no_grad():
        clean = model.eval().features(**{k: v for k, v in ToyTask().collate(feats[:1]).items() if k != "labels"})
    assert all(torch.equal(x["pooled"], y["pooled"]) for x, y in zip(a, b))
    assert torch.allclose(a[0]["pooled"], clean[0], atol=1e-6)


def run_config(tmp_path, tiny_bert_dir, data, name: str, policy: str, cache: bool) -> dict:
    return config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": str(tmp_path / name), "seed": 3,
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}},
        "head": {"dropout": 0.1},  # the head's dropout stays on: it must draw the same masks on both paths
        "train": {"epochs": 2, "batch_size": 8, "lr": 5e-3, "progress": False, "precision": "fp32", "dropout": 0.0,
                  "num_threads": 1, "log_every": 1, "feature_cache": cache, "keep_checkpoints": 1,
                  "early_stopping": {"patience": None}},
        "freeze": {"policy": policy, "k": 1}, "eval": {"baselines": []},
    })


@pytest.mark.parametrize("policy", ["head_only", "top_k"])
def test_training_from_the_cache_matches_the_uncached_path(tiny_bert_dir, tmp_path, capsys, policy):
    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=80)
    runs = {}
    for cache in (True, False):
        name = f"{policy}_{cache}"
        result = train(run_config(tmp_path, tiny_bert_dir, data, name, policy, cache))
        rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
        step_dir = sorted((result.run_dir / "checkpoints").glob("step-*"))[-1]
        runs[cache] = {"loss": [r["loss"] for r in rows if r["split"] == "train"],
                       "val": [r["accuracy"] for r in rows if r["split"] == "validation"],
                       "weights": load_file(str(step_dir / "model.safetensors")),
                       "test": result.report["metrics"]["test"]["accuracy"]}
    assert "frozen-feature cache:" in capsys.readouterr().out
    cached, plain = runs[True], runs[False]
    assert len(cached["loss"]) == len(plain["loss"]) > 5
    assert cached["loss"] == pytest.approx(plain["loss"], abs=1e-5)
    assert cached["val"] == plain["val"] and cached["test"] == plain["test"]
    assert set(cached["weights"]) == set(plain["weights"])
    for name, tensor in cached["weights"].items():
        assert torch.allclose(tensor, plain["weights"][name], atol=1e-5), name
