"""train.ema_decay: the weight average's maths and what is validated and saved (exact resume: test_resume.py)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from tests.test_resume import final_weights
from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.config import ConfigError, config_from_dict
from tuneforge.runner import train
from tuneforge.training.ema import FILE, WeightAverage


def test_average_follows_the_warmed_up_decay_and_swaps_back():
    model = nn.Linear(3, 2)
    model.bias.requires_grad_(False)  # only trainable weights are averaged
    start = model.weight.detach().clone()
    avg = WeightAverage(model, decay=0.9)
    assert avg.names == ["weight"]
    expected = start.clone()
    for n in range(5):
        with torch.no_grad():
            model.weight.add_(1.0)
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * model.weight.detach()
        avg.update()
    torch.testing.assert_close(avg.shadow[0], expected)
    raw = model.weight.detach().clone()
    with avg.swapped():
        torch.testing.assert_close(model.weight.detach(), expected)
    torch.testing.assert_close(model.weight.detach(), raw)  # the optimizer keeps stepping the raw weights


def test_save_load_round_trip(tmp_path):
    model = nn.Linear(3, 2)
    avg = WeightAverage(model, 0.99)
    with torch.no_grad():
        model.weight.mul_(3)
    avg.update()
    avg.save(tmp_path)
    other = WeightAverage(nn.Linear(3, 2), 0.99)
    other.load(tmp_path)
    assert other.updates == 1
    for a, b in zip(avg.shadow, other.shadow):
        torch.testing.assert_close(a, b)


def test_config_rejects_a_decay_outside_0_1():
    with pytest.raises(ConfigError, match="ema_decay"):
        config_from_dict({"model": "m", "train": {"ema_decay": 1.0}})


def test_best_checkpoint_holds_the_average_and_report_scores_it(tiny_bert_dir, tmp_path):
    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=120)
    cfg = config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": str(tmp_path / "run"), "seed": 3,
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}},
        "train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "progress": False, "precision": "fp32",
                  "ema_decay": 0.9, "early_stopping": {"patience": None}, "num_threads": 1},
        "eval": {"baselines": []},
    })
    result = train(cfg)
    run_dir = tmp_path / "run"
    best = load_file(str(run_dir / "best" / "model.safetensors"))
    best_step = json.loads((run_dir / "best" / "progress.json").read_text())["best_step"]
    average = load_file(str(run_dir / "checkpoints" / f"step-{best_step}" / FILE))
    assert best.keys() == average.keys()
    assert all(torch.equal(best[k], average[k]) for k in best)  # best/ = the validated (averaged) weights
    assert not (run_dir / "best" / FILE).exists()  # weights only: the average is what best/ holds
    raw, _ = final_weights(run_dir)  # step checkpoints keep the raw weights, for resume
    assert any(not torch.equal(raw[k], best[k]) for k in best)
    # the reported validation score is the averaged model's, the same one fit selected
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    selected = max(r["accuracy"] for r in rows if r.get("split") == "validation")
    assert result.report["metrics"]["validation"]["accuracy"] == pytest.approx(selected)
