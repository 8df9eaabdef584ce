"""The two classifiers the monitor runs per batch: sentiment (a classifier run) and topic (a classifier run, or
zero-shot by embedding similarity to topic descriptions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from tuneforge.apps.monitor.store import LABELS

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

    >>> # ZeroShotTopics.load("minilm", {"layoffs": "job cuts and redundancies"})(["Nokia cuts 1,000 jobs"])
    """

    def __init__(self, body: torch.nn.Module, tokenizer: Any, descriptions: dict[str, str],
                 min_similarity: float = 0.0, max_length: int = 64):
        self.body, self.tokenizer, self.max_length = body.eval(), tokenizer, max_length
        self.names = list(descriptions)
        self.min_similarity = min_similarity
        self.centroids = self.embed(list(descriptions.values()))  # (K, H)

    @classmethod
    def load(cls, encoder: str, descriptions: dict[str, str], min_similarity: float = 0.0) -> ZeroShotTopics:
        from tuneforge.models import load_backbone, load_tokenizer, resolve_model

        path = resolve_model(encoder).path
        return cls(load_backbone(path), load_tokenizer(path), descriptions, min_similarity)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        enc.pop("token_type_ids", None)
        with torch.inference_mode():
            hidden = self.body(**enc).last_hidden_state  # (B, T, H)
            m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
            return F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1)  # (B, H)

    def __call__(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        sims = torch.cat([self.embed([texts[i] for i in order[j:j + 64]]) @ self.centroids.T
                          for j in range(0, len(order), 64)])  # (N, K)
        best, idx = sims.max(dim=1)
        out = [OTHER] * len(texts)
        for pos, i in enumerate(order):
            out[i] = self.names[int(idx[pos])] if float(best[pos]) >= self.min_similarity else OTHER
        return out


def load_classifiers(cfg: Any) -> tuple[Sentiment, Any]:
    """The sentiment and topic classifiers a ``MonitorConfig`` names."""
    from tuneforge.inference.predictor import Predictor

    sentiment = Sentiment(Predictor.from_run_dir(cfg.resolve(cfg.sentiment_run), precision=cfg.precision))
    if cfg.topics.run:
        return sentiment, TopicRun(Predictor.from_run_dir(cfg.resolve(cfg.topics.run), precision=cfg.precision))
    return sentiment, ZeroShotTopics.load(cfg.topics.encoder, cfg.topics.descriptions, cfg.topics.min_similarity)
