"""The two classifiers the monitor runs per batch: sentiment (a classifier run) and topic (a classifier run, or
zero-shot by embedding similarity to topic descriptions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from tuneforge.apps.monitor.store import LABELS
from tuneforge.evaluation.evaluate import autocast_context, model_inputs
from tuneforge.training.batching import by_length

OTHER = "other"


class Predicts(Protocol):
    def predict(self, items: Sequence[str]) -> list[dict[str, Any]]: ...


class Sentiment:
    """Labels and probabilities over negative / neutral / positive from any predictor with ``.predict``."""

    def __init__(self, predictor: Predicts):
        self.predictor = predictor

    def __call__(self, texts: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
        out = []
        for row in self.predictor.predict(list(texts)):
            scores = row.get("scores") or {row["label"]: row.get("score", 1.0)}
            probs = {k: float(scores.get(k, 0.0)) for k in LABELS}
            if row["label"] not in LABELS:
                raise ValueError(f"sentiment model label {row['label']!r}; the monitor needs {', '.join(LABELS)}")
            out.append((row["label"], probs))
        return out


class TopicRun:
    """Topics from a classifier run: its predicted label."""

    def __init__(self, predictor: Predicts):
        self.predictor = predictor

    def __call__(self, texts: Sequence[str]) -> list[str]:
        return [row["label"] for row in self.predictor.predict(list(texts))]


class ZeroShotTopics:
    """Each text goes to the topic whose description is nearest in a sentence encoder's space (mean-pooled,
    L2-normalised), or to ``other`` below ``min_similarity``.

    Texts are tokenised once to sort them by token length, then encoded in batches of ``batch_size`` (little
    padding). ``precision="bf16"`` encodes under bf16 autocast and recomputes in fp32 the rows whose topic it could
    flip (``near_ties``): bf16 moved MiniLM's similarities by at most 0.0023 and a top-2 gap by at most 0.003 on 512
    PhraseBank sentences, and ``NEAR_TIE`` is 0.01, so the topics are fp32's.

    >>> # ZeroShotTopics.load("minilm", {"layoffs": "job cuts and redundancies"})(["Nokia cuts 1,000 jobs"])
    """

    NEAR_TIE = 0.01  # cosine similarity

    def __init__(self, body: torch.nn.Module, tokenizer: Any, descriptions: dict[str, str],
                 min_similarity: float = 0.0, max_length: int = 64, precision: str = "fp32", batch_size: int = 64):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"zero-shot topics: precision {precision!r}; choose fp32 or bf16")
        self.body, self.tokenizer, self.max_length = body.eval(), tokenizer, max_length
        self.names = list(descriptions)
        self.min_similarity = min_similarity
        self.dtype = torch.bfloat16 if precision == "bf16" else None
        self.batch_size = batch_size
        self.rows_predicted = self.rows_rechecked = 0
        self.centroids = self.embed(list(descriptions.values()))  # (K, H), always fp32

    @property
    def precision(self) -> str:
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"

    @classmethod
    def load(cls, encoder: str, descriptions: dict[str, str], min_similarity: float = 0.0,
             precision: str = "fp32", batch_size: int = 64) -> ZeroShotTopics:
        from tuneforge.models import load_backbone, load_tokenizer, resolve_model

        path = resolve_model(encoder).path
        return cls(load_backbone(path), load_tokenizer(path), descriptions, min_similarity, precision=precision,
                   batch_size=batch_size)

    def embed(self, texts: Sequence[str], dtype: torch.dtype | None = None) -> torch.Tensor:
        """(N, H) fp32 unit vectors; the encoder runs under ``dtype`` autocast when given."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        enc.pop("token_type_ids", None)
        device = next(self.body.parameters()).device
        with torch.inference_mode(), autocast_context(device, dtype):
            hidden = self.body(**model_inputs(enc, device)).last_hidden_state.float()  # (B, T, H)
        m = enc["attention_mask"].to(device).unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1).cpu()  # (B, H)

    def similarities(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, K) cosine similarities to the topic descriptions, in the order of ``texts``."""
        lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=True,
                                                      max_length=self.max_length)["input_ids"]]
        sims = torch.empty(len(texts), len(self.names))
        for idx in by_length(lengths, self.batch_size):
            sims[idx] = self.embed([texts[i] for i in idx], self.dtype) @ self.centroids.T
        if self.dtype is not None:
            near = self.near_ties(sims)
            for idx in by_length([lengths[i] for i in near], self.batch_size):
                rows = [near[j] for j in idx]
                sims[rows] = self.embed([texts[i] for i in rows]) @ self.centroids.T
            self.rows_rechecked += len(near)
        self.rows_predicted += len(texts)
        return sims

    def near_ties(self, sims: torch.Tensor) -> list[int]:
        """Rows whose topic a change of ``NEAR_TIE`` in the similarities could flip: the top two within it of each
        other, or the best within it of ``min_similarity``."""
        best = sims.max(dim=1).values
        near = (best - self.min_similarity).abs() < self.NEAR_TIE
        if sims.shape[1] > 1:
            top = sims.topk(2, dim=1).values
            near |= (top[:, 0] - top[:, 1]) < self.NEAR_TIE
        return near.nonzero().flatten().tolist()

    def __call__(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        best, idx = self.similarities(texts).max(dim=1)
        return [self.names[int(i)] if float(b) >= self.min_similarity else OTHER for b, i in zip(best, idx)]


def load_classifiers(cfg: Any) -> tuple[Sentiment, Any]:
    """The sentiment and topic classifiers a ``MonitorConfig`` names, at its ``precision``. Zero-shot topics run
    in bf16 where ``auto`` resolves to it (or ``bf16`` is asked for), else in fp32 (also under ``int8``, which only
    classifier runs support)."""
    from tuneforge.inference.predictor import Predictor
    from tuneforge.training.precision import resolve_precision

    sentiment = Sentiment(Predictor.from_run_dir(cfg.resolve(cfg.sentiment_run), precision=cfg.precision))
    if cfg.topics.run:
        return sentiment, TopicRun(Predictor.from_run_dir(cfg.resolve(cfg.topics.run), precision=cfg.precision))
    precision = "bf16" if resolve_precision(cfg.precision) == "bf16" else "fp32"
    return sentiment, ZeroShotTopics.load(cfg.topics.encoder, cfg.topics.descriptions, cfg.topics.min_similarity,
                                          precision)
