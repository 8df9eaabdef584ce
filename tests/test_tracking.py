"""Trackers: MLflow to a temporary local store (params, per-step metrics, report and model artifacts),
TensorBoard files, and the unknown-name error."""

import json

import pytest

from tuneforge.registry import UnknownNameError
from tuneforge.tracking import STATE, log_run_files, open_trackers


def test_mlflow_to_a_temp_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model: minilm\ntrain:\n  lr: 0.0001\n  epochs: 2\n")
    trackers = open_trackers(run, ["mlflow", "tensorboard"])
    for step, loss in [(1, 2.0), (2, 1.5), (3, 0.9)]:
        trackers.add_scalar("train/loss", loss, step)
    trackers.add_scalar("validation/accuracy", 0.8, 3)
    trackers.close()
    (run / "report.html").write_text("<html></html>")
    (run / "best").mkdir()
    (run / "best" / "model.safetensors").write_bytes(b"weights")
    log_run_files(run, ["mlflow", "tensorboard"])

    state = json.loads((run / STATE).read_text())["mlflow"]
    assert state["uri"] == (tmp_path / "runs" / "mlruns").as_uri()
    client = MlflowClient(state["uri"])
    got = client.get_run(state["run_id"])
    assert got.data.params["train.lr"] == "0.0001" and got.data.params["model"] == "minilm"
    assert got.info.status == "FINISHED" and got.info.run_name == "demo"
    history = client.get_metric_history(state["run_id"], "train.loss")
    assert [(m.step, m.value) for m in history] == [(1, 2.0), (2, 1.5), (3, 0.9)]
    assert got.data.metrics["validation.accuracy"] == 0.8
    assert [f.path for f in client.list_artifacts(state["run_id"], "report")] == ["report/config.yaml",
                                                                            "report/report.html"]
    assert [f.path for f in client.list_artifacts(state["run_id"], "model")] == ["model/model.safetensors"]
    assert any((run / "tb").iterdir())


def test_unknown_tracker_lists_known(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown tracker 'neptune'; known: mlflow, tensorboard, wandb"):
        open_trackers(tmp_path, ["neptune"])
