"""Calibration of a trained single-label classification run: fit on validation, store ``calibration.json``, add
ECE / abstention / OOS metrics to each split's report entry, and apply the stored calibration at prediction time."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tuneforge.evaluation import calibration as cal
from tuneforge.evaluation.embedding_tap import EmbeddingTap, classifier_modules
from tuneforge.evaluation.evaluate import predict_features
from tuneforge.io_utils import atomic_path, atomic_write_json, atomic_write_text

FILE = "calibration.json"
CENTROIDS = "calibration_centroids.safetensors"
SCORES = (*cal.SCORES, "distance")


class LogitsView:
    """A task whose ``predict`` returns raw logits rows (with the sentence vector appended when ``tap`` is given):
    lets ``predict_features`` batch the pass."""

    def __init__(self, task: Any, tap: EmbeddingTap | None = None):
        self.task, self.tap = task, tap

    def collate(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return self.task.collate(features)

    def predict(self, outputs: dict[str, torch.Tensor], batch: Any) -> list[list[float]]:
        logits = outputs["logits"].float().cpu()
        if self.tap is not None:
            logits = torch.cat([logits, self.tap.take()], dim=-1)  # (B, C + H)
        return logits.tolist()


def collect_outputs(model: torch.nn.Module, task: Any, features: Sequence[dict[str, Any]], batch_size: int = 64,
                    embeddings: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, C) fp32 logits of ``features`` in their order, and with ``embeddings`` their (N, H) sentence vectors."""
    tap = EmbeddingTap(model) if embeddings else None
    try:
        rows = predict_features(model, LogitsView(task, tap), features, batch_size)
    finally:
        if tap is not None:
            tap.close()
    c = len(task.labels)
    out = np.asarray(rows, dtype=np.float64).reshape(len(features), -1) if rows else np.zeros((0, c))
    return out[:, :c], (out[:, c:] if embeddings else None)


def collect_logits(model: torch.nn.Module, task: Any, features: Sequence[dict[str, Any]],
                   batch_size: int = 64) -> np.ndarray:
    """(N, C) fp32 logits of ``features`` in their order."""
    return collect_outputs(model, task, features, batch_size)[0]


def class_centroids(model: torch.nn.Module, task: Any, train: Sequence[dict[str, Any]], per_class: int = 50,
                    seed: int = 0, batch_size: int = 64) -> np.ndarray:
    """(C, H) mean sentence vector of up to ``per_class`` training rows of each class (a seeded draw)."""
    rng = np.random.default_rng(seed)
    labels = np.array([f["labels"] for f in train])
    picked = np.concatenate([rng.permutation(np.nonzero(labels == c)[0])[:per_class]
                             for c in range(len(task.labels))])
    _, emb = collect_outputs(model, task, [train[i] for i in picked], batch_size, embeddings=True)
    rows = labels[picked]
    # a class with no training rows (a fixed label set) gets a zero centroid: similarity 0, never the nearest
    return np.stack([emb[rows == c].mean(0) if (rows == c).any() else np.zeros(emb.shape[1])
                     for c in range(len(task.labels))])


def score_rows(name: str, logits: np.ndarray, temperature: float, emb: np.ndarray | None = None,
               centroids: np.ndarray | None = None) -> np.ndarray:
    """The named OOS score of each row (higher = in-scope); ``distance`` needs sentence vectors and centroids."""
    if name == "distance":
        return cal.distance_score(emb, centroids)
    return cal.oos_score(logits, name, temperature)


def supports(task: Any) -> bool:
    return getattr(task, "name", None) == "classification" and not getattr(task, "multi_label", False)


def _gold(task: Any, examples: Sequence[dict[str, Any]], oos_label: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Gold indices (-1 where the label has no head output) and the OOS mask (gold == ``oos_label``)."""
    idx = task.label_index
    gold = np.array([idx.get(ex["labels"][0], -1) for ex in examples], dtype=int)
    is_oos = np.array([oos_label is not None and ex["labels"][0] == oos_label for ex in examples], dtype=bool)
    return gold, is_oos


def fit(logits: np.ndarray, gold: np.ndarray, is_oos: np.ndarray, options: Any, emb: np.ndarray | None = None,
        centroids: np.ndarray | None = None) -> dict[str, Any]:
    """The stored calibration, from validation: temperature, OOS score, threshold and the rule that chose it
    (and the threshold each other score would get by the same rule, for the report's comparison)."""
    known = gold >= 0
    temperature = cal.fit_temperature(logits[known], gold[known])
    names = [n for n in SCORES if n != "distance" or emb is not None]
    scores = {n: score_rows(n, logits, temperature, emb, centroids) for n in names}
    aurocs = {n: cal.auroc(s[~is_oos], s[is_oos]) for n, s in scores.items()}
    score = options.oos_score
    if score == "auto":
        score = max(aurocs, key=lambda n: aurocs[n]) if is_oos.any() else "max_softmax"
    if score not in names:
        raise ValueError(f"calibration.oos_score {score!r}; known: auto, {', '.join(names)}")
    correct = logits.argmax(-1) == gold
    thresholds = {n: cal.select_threshold(options.rule, options.target, s, correct, is_oos)[0]
                  for n, s in scores.items()}
    _, rule, target = cal.select_threshold(options.rule, options.target, scores[score], correct, is_oos)
    return {"temperature": temperature, "oos_score": score, "threshold": thresholds[score], "rule": rule,
            "target": target, "abstain": bool(options.abstain), "validation_auroc": aurocs,
            "score_thresholds": thresholds, "bins": options.bins}


def split_metrics(logits: np.ndarray, gold: np.ndarray, is_oos: np.ndarray, stored: dict[str, Any],
                  emb: np.ndarray | None = None, centroids: np.ndarray | None = None) -> dict[str, Any]:
    """ECE before/after on in-scope rows, abstention at the stored threshold, and the curves."""
    bins, temperature = stored["bins"], stored["temperature"]
    ins = ~is_oos
    correct = logits.argmax(-1) == gold
    before = cal.softmax(logits).max(-1)
    after = cal.softmax(logits, temperature).max(-1)
    every = {n: score_rows(n, logits, temperature, emb, centroids) for n in stored["score_thresholds"]}
    scores = every[stored["oos_score"]]
    out: dict[str, Any] = {
        "ece_before_calibration": cal.ece(before[ins], correct[ins], bins),
        "ece": cal.ece(after[ins], correct[ins], bins),
        "temperature": temperature,
        "threshold": stored["threshold"], "threshold_rule": f"{stored['rule']} {stored['target']:g} on validation",
        "oos_score": stored["oos_score"],
        **cal.abstention_metrics(scores, correct, is_oos, stored["threshold"]),
        "by_score": {n: cal.abstention_metrics(s, correct, is_oos, stored["score_thresholds"][n])
                     for n, s in every.items()},
        "coverage_risk": cal.coverage_risk_curve(scores[ins], correct[ins]),
        "reliability": {"before": cal.reliability_bins(before[ins], correct[ins], bins),
                        "after": cal.reliability_bins(after[ins], correct[ins], bins)},
    }
    if is_oos.any():
        out["oos_auroc"] = {n: cal.auroc(s[ins], s[is_oos]) for n, s in every.items()}
        out["oos_curve"] = cal.oos_curve(scores, correct, is_oos)
    return out


def calibrate_run(model: torch.nn.Module, task: Any, features: dict[str, list], splits: dict[str, list],
                  validation_split: str, options: Any, oos_label: str | None, run_dir: Path | None,
                  batch_size: int = 64, seed: int = 0,
                  outputs: dict[str, tuple[np.ndarray, np.ndarray | None]] | None = None) -> dict[str, dict[str, Any]]:
    """Fit on ``validation_split``, write ``run_dir/calibration.json`` (and the class centroids the distance score
    needs) and the reliability diagrams, and return the metrics to merge into each split's report entry (``{}``
    when off or not a single-label classifier). The distance score is measured when ``features`` has ``train``
    (centroids of up to 50 rows a class) and the model has a ``classifier`` layer. ``outputs``: per split,
    ``collect_outputs``'s (logits, sentence vectors) when the caller has them already."""
    if not options.enabled or not supports(task):
        return {}
    has_oos = oos_label is not None and any(ex["labels"][0] == oos_label for ex in splits[validation_split])
    # the distance score costs a pass over training rows: only when asked for, or when auto can measure it
    use_emb = (options.oos_score == "distance" or (options.oos_score == "auto" and has_oos)) \
        and bool(features.get("train")) and bool(classifier_modules(model))
    if outputs is not None:
        use_emb = use_emb and all(emb is not None for _, emb in outputs.values())
    outputs = outputs or {name: collect_outputs(model, task, features[name], batch_size, use_emb)
                          for name in ("validation", "test") if name in splits}
    centroids = class_centroids(model, task, features["train"], seed=seed, batch_size=batch_size) if use_emb \
        else None
    gold = {name: _gold(task, splits[name], oos_label) for name in outputs}
    stored = fit(*outputs[validation_split][:1], *gold[validation_split], options, outputs[validation_split][1],
                 centroids)
    metrics = {name: split_metrics(outputs[name][0], *gold[name], stored, outputs[name][1], centroids)
               for name in outputs}
    if run_dir is not None:
        if centroids is not None:
            save_centroids(run_dir / CENTROIDS, centroids)
        atomic_write_json(run_dir / FILE, {**stored, "labels": list(task.labels), "oos_label": oos_label})
        for name, m in metrics.items():
            atomic_write_text(run_dir / f"reliability_{name}.svg", reliability_svg(m["reliability"], name))
    return metrics


def save_centroids(path: Path, centroids: np.ndarray) -> None:
    from safetensors.numpy import save_file

    with atomic_path(path) as tmp:
        save_file({"centroids": centroids.astype(np.float32)}, str(tmp))


def load_centroids(path: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    return load_file(str(path))["centroids"].astype(np.float64)


def add_calibration_metrics(metrics: dict[str, dict[str, Any]], model: torch.nn.Module, task: Any,
                            features: dict[str, list], splits: dict[str, list], validation_split: str, cfg: Any,
                            run_dir: Path | None) -> dict[str, dict[str, Any]]:
    """``metrics`` with each split's calibration and abstention figures merged in (the runner's one call)."""
    extra = calibrate_run(model, task, features, splits, validation_split, cfg.calibration, cfg.eval.oos_label,
                          run_dir, cfg.eval.batch_size, cfg.seed)
    return {name: {**m, **extra.get(name, {})} for name, m in metrics.items()}


def recalibrate(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Calibrate a finished run from its directory (its saved config's data, its best weights): writes
    ``calibration.json`` and merges the figures into ``report.json``; returns them per split. For runs trained
    before calibration existed, or after changing the ``calibration`` section in the run's config.yaml."""
    from tuneforge.data.load import load_splits
    from tuneforge.run import open_run

    loaded = open_run(run_dir)
    cfg, task = loaded.cfg, loaded.task
    if not supports(task):
        raise ValueError(f"{run_dir}: calibration applies to single-label classification runs")
    if not cfg.data.train:
        raise ValueError(f"{run_dir}: its config names no data files (trained from in-memory records)")
    splits = load_splits(cfg.data, task, cfg.seed).splits
    features = {name: [task.encode(ex) for ex in exs] for name, exs in splits.items()}
    val = "validation" if "validation" in splits else "test"
    extra = calibrate_run(loaded.model, task, features, splits, val, cfg.calibration, cfg.eval.oos_label,
                          loaded.run_dir, cfg.eval.batch_size, cfg.seed)
    merge_into_report(loaded.run_dir, extra)
    return extra


def merge_into_report(run_dir: Path, extra: dict[str, dict[str, Any]]) -> None:
    """Add per-split calibration figures to an existing ``report.json`` (atomically)."""
    path = Path(run_dir) / "report.json"
    if path.is_file() and extra:
        report = json.loads(path.read_text())
        for name, m in extra.items():
            report["metrics"].setdefault(name, {}).update(m)
        atomic_write_json(path, report)


def load_calibration(run_dir: str | Path | None) -> dict[str, Any] | None:
    path = Path(run_dir) / FILE if run_dir is not None else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())


# ---------------------------------------------------------------- prediction time
class ScoredProbs(list):
    """Calibrated probabilities of one row, carrying its OOS score (a list, so metrics and decisions still work)."""

    oos_score: float = math.nan


class Calibration:
    """A run's stored calibration applied to its task: ``predict`` returns temperature-scaled probabilities (each
    row carrying its OOS score) and ``format_prediction`` adds ``confidence`` and ``unknown`` (score under the
    stored threshold). ``attach`` installs both on the task instance, so the task keeps its own type.

    The distance score reads each row's sentence vector through an ``EmbeddingTap`` on ``model``; a model without a
    ``classifier`` layer (an ONNX export) gets no ``unknown`` flag, with a warning."""

    def __init__(self, task: Any, stored: dict[str, Any], model: Any = None, centroids: np.ndarray | None = None):
        self.stored, self.centroids = stored, centroids
        self._format = task.format_prediction  # the task's own, before attach replaces it
        self.tap: EmbeddingTap | None = None
        if stored["oos_score"] == "distance":
            try:
                self.tap = EmbeddingTap(model) if centroids is not None else None
            except ValueError:
                self.tap = None
            if self.tap is None:
                warnings.warn("the run's out-of-scope score is distance, which this model cannot provide (no "
                              "classifier layer, or no stored centroids): predictions carry no unknown flag",
                              stacklevel=3)

    def attach(self, task: Any) -> Any:
        task.predict, task.format_prediction, task.calibration = self.predict, self.format_prediction, self.stored
        return task

    def _scores(self, z: np.ndarray) -> np.ndarray:
        name, temperature = self.stored["oos_score"], self.stored["temperature"]
        if name != "distance":
            return cal.oos_score(z, name, temperature)
        emb = self.tap.take() if self.tap is not None else None
        if emb is None or emb.shape[0] != z.shape[0]:
            return np.full(z.shape[0], np.nan)
        return cal.distance_score(emb.numpy().astype(np.float64), self.centroids)

    def predict(self, outputs: dict[str, torch.Tensor], batch: Any) -> list[ScoredProbs]:
        z = outputs["logits"].float().cpu().numpy()
        probs = cal.softmax(z, self.stored["temperature"])
        rows = []
        for p, s in zip(probs, self._scores(z)):
            row = ScoredProbs(p.tolist())
            row.oos_score = float(s)
            rows.append(row)
        return rows

    def format_prediction(self, pred: Any, ex: dict[str, Any]) -> dict[str, Any]:
        out = self._format(pred, ex)
        out["confidence"] = out["score"]  # the calibrated top probability
        score = getattr(pred, "oos_score", None)
        if score is not None and not math.isnan(score):
            out["oos_score"] = round(score, 6)
            if self.stored.get("abstain", True):
                out["unknown"] = bool(score < self.stored["threshold"])
        return out


def with_calibration(task: Any, run_dir: str | Path | None, model: Any = None) -> Any:
    """``task`` with ``run_dir``'s stored calibration attached (``Calibration``), or unchanged when there is none."""
    stored = load_calibration(run_dir)
    if stored is None or not supports(task):
        return task
    path = Path(run_dir) / CENTROIDS
    centroids = load_centroids(path) if stored["oos_score"] == "distance" and path.is_file() else None
    return Calibration(task, stored, model, centroids).attach(task)


def reliability_svg(reliability: dict[str, list[dict[str, Any]]], split: str, size: int = 320) -> str:
    """A reliability diagram (accuracy per confidence bin, before and after temperature scaling) as plain SVG."""
    pad, inner = 36, size - 48
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" font-family="sans-serif" '
             f'font-size="10"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{pad}" y="14">reliability ({split}): grey = before, blue = after</text>',
             f'<line x1="{pad}" y1="{pad + inner}" x2="{pad + inner}" y2="{pad}" stroke="#999" '
             f'stroke-dasharray="3,3"/>',
             f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="none" stroke="black"/>']
    for kind, color, shift in (("before", "#bbb", 0.0), ("after", "#3572b0", 0.5)):
        bins = reliability[kind]
        w = inner / len(bins) / 2
        for i, b in enumerate(bins):
            if b["count"]:
                h = inner * b["accuracy"]
                x = pad + inner * i / len(bins) + shift * 2 * w
                parts.append(f'<rect x="{x:.1f}" y="{pad + inner - h:.1f}" width="{w:.1f}" height="{h:.1f}" '
                             f'fill="{color}"/>')
    parts.append(f'<text x="{pad}" y="{size - 4}">confidence 0 → 1 (y: accuracy)</text></svg>')
    return "\n".join(parts) + "\n"
