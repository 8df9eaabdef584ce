"""One run with the real packaged MiniLM on the committed BANKING77 sample (the README demo, shortened)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneforge.config import load_config
from tuneforge.inference.predictor import Predictor
from tuneforge.runner import train

DEMO = Path(__file__).resolve().parents[1] / "configs" / "classification" / "banking77_demo.yaml"


@pytest.mark.slow
def test_demo_config_on_real_minilm(tmp_path, no_network):
    cfg = load_config(DEMO, [f"output_dir={tmp_path / 'run'}", "train.epochs=1", "train.progress=false",
                             "data.limit=480"])
    report = train(cfg).report
    tuned = report["metrics"]["test"]["accuracy"]
    assert tuned > report["baselines"]["majority"]["accuracy"] + 0.3
    assert 0.3 < report["baselines"]["zero_shot"]["accuracy"] < 1.0  # the embedding baseline really ran
    pred = Predictor.from_run_dir(tmp_path / "run")
    out = pred.predict(["I still have not received my new card", "how do I change my PIN?"])
    assert out[0]["label"] in pred.task.labels and abs(sum(out[0]["scores"].values()) - 1) < 1e-4
