"""The HTTP server answers /health, /info and /predict with the same predictions as the Predictor."""

from __future__ import annotations

import pytest

from tests.test_smoke_pipeline import write_toy_csv
from tuneforge.config import config_from_dict
from tuneforge.inference.predictor import Predictor
from tuneforge.runner import train


def test_server_predicts_like_the_predictor(tiny_bert_dir, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from tuneforge.inference.server import create_app

    data = tmp_path / "toy.csv"
    write_toy_csv(data, n=80)
    train(config_from_dict({
        "model": str(tiny_bert_dir), "output_dir": str(tmp_path / "run"),
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}},
        "train": {"epochs": 4, "batch_size": 8, "lr": 3e-3, "progress": False, "precision": "fp32"},
        "eval": {"baselines": []},
    }))
    predictor = Predictor.from_run_dir(tmp_path / "run")
    client = TestClient(create_app(predictor))
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/info").json()["labels"] == ["negative", "positive"]
    assert client.get("/info").json()["precision"] in ("fp32", "bf16")
    texts = ["great love film", {"text": "terrible bad movie"}]
    got = client.post("/predict", json={"inputs": texts}).json()["predictions"]
    assert got == predictor.predict(texts)
    assert client.post("/predict", json={"inputs": []}).status_code == 422
    assert client.post("/predict", json={"inputs": [{"label": "x"}]}).status_code == 422
