"""backend=onnxruntime: the run's classifier exported once, parity-checked, reused, and giving torch's predictions."""

from __future__ import annotations

import json

import pytest

from tests.classifier_runs import TEXTS, cli_predict_labels, pair_items, train_run
from tuneforge.inference.onnx_backend import FOLDER, META_FILE, MODEL_FILE, OnnxBackendError, OnnxClassifier
from tuneforge.inference.predictor import Predictor

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

@pytest.mark.parametrize("kind", ["single", "pairs", "lora"])
def test_onnx_predictions_equal_torch(tiny_bert_dir, tmp_path, kind):
    run = train_run(tiny_bert_dir, tmp_path, kind)
    items = pair_items() if kind == "pairs" else TEXTS
    torch_preds = Predictor.from_run_dir(run, precision="fp32").predict(items)
    onnx_pred = Predictor.from_run_dir(run, backend="onnxruntime")
    assert isinstance(onnx_pred.model, OnnxClassifier)
    onnx_preds = onnx_pred.predict(items)
    assert [p["label"] for p in onnx_preds] == [p["label"] for p in torch_preds]
    for a, b in zip(torch_preds, onnx_preds):
        assert b["score"] == pytest.approx(a["score"], abs=1e-4)
    meta = json.loads((run / FOLDER / META_FILE).read_text())
    assert meta["parity_max_abs"] <= 1e-3
    assert set(meta["inputs"]) >= {"input_ids", "attention_mask"}
    if kind == "pairs":
        assert "token_type_ids" in meta["inputs"]
    # reused while the weights are unchanged: no second export
    stamp = (run / FOLDER / MODEL_FILE).stat().st_mtime_ns
    Predictor.from_run_dir(run, backend="onnxruntime")
    assert (run / FOLDER / MODEL_FILE).stat().st_mtime_ns == stamp
    assert not [p for p in (run / FOLDER).iterdir() if p.name.startswith(".")], "temp files left behind"


def test_stale_export_is_redone_when_the_weights_change(tiny_bert_dir, tmp_path):
    run = train_run(tiny_bert_dir, tmp_path, "single")
    Predictor.from_run_dir(run, backend="onnxruntime")
    meta_path = run / FOLDER / META_FILE
    meta = json.loads(meta_path.read_text())
    meta["mtime_ns"] -= 1  # as if exported from older weights
    meta_path.write_text(json.dumps(meta))
    Predictor.from_run_dir(run, backend="onnxruntime")
    assert json.loads(meta_path.read_text())["mtime_ns"] == meta["mtime_ns"] + 1


def test_unsupported_backend_and_task_are_refused(tiny_bert_dir, tmp_path):
    run = train_run(tiny_bert_dir, tmp_path, "single")
    with pytest.raises(OnnxBackendError, match="choose one of"):
        Predictor.from_run_dir(run, backend="tensorrt")
    from tuneforge.inference import onnx_backend

    class NotClassification:
        name = "ner"

    with pytest.raises(OnnxBackendError, match="sequence classification"):
        onnx_backend.onnx_classifier(run, run / "best" / "model.safetensors", None, NotClassification(), [])


def test_cli_predict_with_the_onnx_backend(tiny_bert_dir, tmp_path):
    run = train_run(tiny_bert_dir, tmp_path, "single")
    got, expected = cli_predict_labels(run, TEXTS, tmp_path, "--backend", "onnxruntime")
    assert got == expected
