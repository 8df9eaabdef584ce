"""ONNX Runtime backend for classification inference: ``Predictor.from_run_dir(run, backend="onnxruntime")``,
``tuneforge predict|serve RUN --backend onnxruntime``.

The run's exact classifier (body + TuneForge's pooling head, any merged-in or live adapter) is exported once with
``torch.onnx.export`` to ``RUN/onnx/model.onnx`` (written to a temp file, then renamed), with the batch and sequence
dimensions dynamic, and checked against the torch model on a sample batch before it is kept. Later loads reuse the
file while the weights it was exported from are unchanged (size and mtime of the weights file, recorded beside it).
ONNX Runtime then runs the same length-sorted batches as the torch path (evaluate.predict_features), in fp32, with
the same thread count. Outputs match torch's to ~1e-5 (tests/test_onnx_backend.py), so labels are the same.
Speed on 2 Xeon cores: no gain over the torch path (368 vs 403 sentences/s on SST-2 test, 601 vs 608 on 10k
BANKING77 texts; bench/bench_inference.py), so this is for deployment without torch, not for speed.

Sequence-level classification (single-label, multi-label, pairs) only: other tasks keep the torch backend. Needs the
``onnx`` extra (``pip install tuneforge[onnx]``: onnxruntime, onnx, onnxscript).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuneforge.evaluation.evaluate import model_inputs
from tuneforge.io_utils import atomic_write_json

BACKENDS = ("torch", "onnxruntime")
FOLDER = "onnx"
MODEL_FILE = "model.onnx"
META_FILE = "export.json"
OPSET = 17
PARITY_ATOL = 1e-3  # max |logit difference| allowed between torch and ONNX Runtime on the check batch


class OnnxBackendError(RuntimeError):
    """The ONNX backend cannot serve this run (missing package, unsupported task, failed export or parity)."""


def require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise OnnxBackendError("backend onnxruntime needs the onnx extra: pip install 'tuneforge[onnx]' "
                               "(onnxruntime, onnx, onnxscript)") from e
    return onnxruntime


class _Logits(nn.Module):
    """Positional inputs in ``names`` order → the logits tensor (ONNX graphs take positional inputs)."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, args)))["logits"]


def weights_fingerprint(weights_file: Path) -> dict[str, Any]:
    st = weights_file.stat()
    return {"weights": weights_file.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def export_classifier(model: nn.Module, task: Any, sample: list[dict[str, Any]], folder: Path,
                      fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Export ``model`` (eval mode, fp32) to ``folder/model.onnx`` atomically; ``sample`` features make the trace
    and parity batch. Returns the metadata written beside it (``export.json``)."""
    ort = require_onnxruntime()
    model = model.eval()
    batch = task.collate(sample)
    inputs = model_inputs(batch, torch.device("cpu"))
    names = list(inputs)
    wrapper = _Logits(model, names).eval()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".model-", suffix=".onnx.tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            torch.onnx.export(wrapper, tuple(inputs[n] for n in names), str(tmp), input_names=names,
                              output_names=["logits"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names},
                                            "logits": {0: "batch"}})
            expected = wrapper(*(inputs[n] for n in names)).float()
        session = _session(ort, tmp, 1)
        got = torch.from_numpy(session.run(None, {n: inputs[n].numpy() for n in names})[0])
        gap = float((got - expected).abs().max())
        if not gap <= PARITY_ATOL:
            raise OnnxBackendError(f"ONNX export of {folder.parent} differs from the torch model by {gap:.2e} "
                                   f"logits (allowed {PARITY_ATOL}); use the torch backend")
        meta = {**fingerprint, "inputs": names, "opset": OPSET, "parity_max_abs": gap,
                "torch": torch.__version__, "onnxruntime": ort.__version__}
        os.replace(tmp, folder / MODEL_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_json(folder / META_FILE, meta)
    return meta


def _session(ort: Any, path: Path, threads: int) -> Any:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxClassifier(nn.Module):
    """Stands in for the torch classifier in ``predict_features``: ``model(**inputs)`` → ``{"logits": ...}``."""

    def __init__(self, path: Path, input_names: list[str], threads: int | None = None):
        super().__init__()
        ort = require_onnxruntime()
        self.path, self.input_names = path, input_names
        self.session = _session(ort, path, threads or torch.get_num_threads())

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise OnnxBackendError(f"{self.path}: inputs {missing} missing from the batch")
        feed = {n: inputs[n].cpu().numpy() for n in self.input_names}
        return {"logits": torch.from_numpy(self.session.run(None, feed)[0])}


def onnx_classifier(run_dir: Path, weights_file: Path, model: nn.Module, task: Any,
                    sample: list[dict[str, Any]]) -> OnnxClassifier:
    """The run's ONNX classifier: reuse ``RUN/onnx/model.onnx`` when it was exported from these weights, else
    export (and parity-check) it first."""
    from tuneforge.tasks.classification.task import ClassificationTask

    if type(task) is not ClassificationTask:
        raise OnnxBackendError(f"backend onnxruntime serves sequence classification runs; {run_dir} is a "
                               f"{getattr(task, 'name', type(task).__name__)} run: use the torch backend")
    folder = run_dir / FOLDER
    fingerprint = weights_fingerprint(weights_file)
    meta_path = folder / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if not (folder / MODEL_FILE).is_file() or any(meta.get(k) != v for k, v in fingerprint.items()):
        try:
            meta = export_classifier(model, task, sample, folder, fingerprint)
        except OSError as e:
            raise OnnxBackendError(f"cannot write the ONNX export under {folder}: {e}") from e
    return OnnxClassifier(folder / MODEL_FILE, list(meta["inputs"]))
