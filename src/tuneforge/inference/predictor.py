"""``Predictor``: load a run directory once, predict many inputs (sorted by length, batched, inference_mode)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from tuneforge.config import RunConfig
from tuneforge.evaluation.calibrate_run import with_calibration
from tuneforge.evaluation.evaluate import predict_features
from tuneforge.run import open_run
from tuneforge.training.precision import resolve_precision

PRECISIONS = ("auto", "fp32", "bf16", "int8")


def export_sample(task: Any) -> list[dict[str, Any]]:
    """A few encoded inputs of different lengths (pairs where the task has them) to trace an export with."""
    texts = ["fine", "the card I ordered last week has still not arrived", "why was I charged twice for this?"]
    pair = task.pair_col
    return [task.encode({"text": t, **({"text_pair": texts[-1 - i]} if pair else {})}) for i, t in enumerate(texts)]


class Predictor:
    """Predictions from a finished (or interrupted) run.

    >>> # p = Predictor.from_run_dir("runs/banking77_demo"); p.predict(["my card has not arrived"])[0]["label"]
    """

    def __init__(self, cfg: RunConfig, task: Any, model: torch.nn.Module, batch_size: int = 64,
                 dtype: torch.dtype | None = None, run_dir: Path | None = None):
        self.cfg, self.task, self.model = cfg, task, model.eval()
        self.batch_size, self.dtype = batch_size, dtype
        self.run_dir = run_dir  # where the run's other files live (calibration, report), when loaded from one
        self.task = with_calibration(task, run_dir, self.model)  # calibrated probabilities + unknown flag

    @classmethod
    def from_run_dir(cls, run_dir: str | Path, batch_size: int | None = None, precision: str = "auto",
                     backend: str = "torch") -> Predictor:
        """Load ``run_dir``'s best weights (else its newest checkpoint). ``backend="onnxruntime"`` runs
        sequence classification through an ONNX export of the same model (inference/onnx_backend.py), in fp32.
        ``precision``: ``auto`` (bf16 where the CPU/GPU runs it measurably faster, else fp32), ``fp32``, ``bf16``,
        or ``int8`` (sequence classification on CPU: int8 body, near ties redone in fp32; inference/int8.py)."""
        from tuneforge.inference.onnx_backend import BACKENDS, OnnxBackendError

        if backend not in BACKENDS:
            raise OnnxBackendError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        if precision == "int8" and backend != "torch":
            raise OnnxBackendError("precision int8 runs on the torch backend; the onnxruntime backend is fp32")
        loaded = open_run(run_dir)
        cfg, task, built, weights = loaded.cfg, loaded.task, loaded.built, loaded.weights
        if backend == "onnxruntime":
            from tuneforge.inference.onnx_backend import onnx_classifier

            model = onnx_classifier(loaded.run_dir, weights / "model.safetensors", built.model.float(), task,
                                    export_sample(task))
            return cls(cfg, task, model, batch_size or cfg.eval.batch_size, None, loaded.run_dir)
        if precision == "int8":
            from tuneforge.inference.int8 import FORCE_ENV, int8_classifier, int8_too_slow
            from tuneforge.peft_methods import PEFT_METHODS

            method = cfg.peft.method
            mergeable = method is not None and PEFT_METHODS.get(method).mergeable
            model = int8_classifier(built.model, task, method, mergeable)  # refuses what int8 cannot serve
            reason = int8_too_slow()
            if not reason:
                return cls(cfg, task, model, batch_size or cfg.eval.batch_size, None, loaded.run_dir)
            # labels would be fp32's anyway (near ties are redone in fp32): only the speed differs
            warnings.warn(f"precision int8: {reason}; predicting in fp32 instead (same labels, faster). Set "
                          f"{FORCE_ENV}=1 to run int8 anyway", stacklevel=2)
            return cls(cfg, task, built.model, batch_size or cfg.eval.batch_size, None, loaded.run_dir)
        dtype = torch.bfloat16 if resolve_precision(precision) == "bf16" else None
        return cls(cfg, task, built.model, batch_size or cfg.eval.batch_size, dtype, loaded.run_dir)

    @property
    def precision(self) -> str:
        """What the predictions run in: ``int8`` (near ties in fp32), ``bf16`` (near ties in fp32) or ``fp32``."""
        if hasattr(self.model, "rows_rechecked"):
            return "int8"
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"

    def predict_raw(self, items: Iterable[str | dict[str, Any]]) -> tuple[list[Any], list[dict[str, Any]]]:
        examples = [self.task.parse_input(item) for item in items]
        features = [self.task.encode(ex) for ex in examples]
        return predict_features(self.model, self.task, features, self.batch_size, self.dtype), examples

    def predict(self, items: Iterable[str | dict[str, Any]]) -> list[dict[str, Any]]:
        """One dict per input: for classification ``{"label", "score", "scores"}``."""
        preds, examples = self.predict_raw(items)
        return [self.task.format_prediction(p, ex) for p, ex in zip(preds, examples)]

    def explain(self, items: Iterable[str | dict[str, Any]], label: str | None = None, steps: int = 50,
                span: tuple[int, int] | None = None, span_text: str | None = None,
                answer: str | None = None) -> list[dict[str, Any]]:
        """Per-word Integrated Gradients and occlusion scores for ``label`` (default: the prediction) of each input,
        with IG's completeness check (``tuneforge.explain``). Generation runs: the prompt's words for a span of the
        answer (``span`` token bounds or ``span_text``; generated unless ``answer`` is given)."""
        from tuneforge.explain import explain_inputs

        return explain_inputs(self.model, self.task, items, label, steps, span, span_text, answer)

    def evaluate(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Metrics on labelled examples (already parsed by the task)."""
        features = [self.task.encode(ex) for ex in examples]
        preds = predict_features(self.model, self.task, features, self.batch_size, self.dtype)
        return self.task.metrics(preds, examples)
