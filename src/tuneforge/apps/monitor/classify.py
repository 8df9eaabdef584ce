"""The two classifiers the monitor runs per batch: sentiment (a classifier run) and topic (a classifier run, or
zero-shot by embedding similarity to topic descriptions)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from tuneforge.apps.monitor.store import LABELS
from tuneforge.evaluation.evaluate import model_inputs
from tuneforge.training.batching import by_length

OTHER = "other"
PAD_MULTIPLE = 8  # tokens; see pad_to_multiple
PADDED = ("input_ids", "attention_mask", "token_type_ids")


class Predicts(Protocol):
    def predict(self, items: Sequence[str]) -> list[dict[str, Any]]: ...


def bf16_copy(module: nn.Module) -> nn.Module:
    """A bf16-weight copy of ``module`` for prediction. Casting once beats autocast on this small encoder: autocast
    re-casts every weight and converts activations around each op on every forward, which on 2 cores cost about as
    much as the bf16 matmuls saved (MiniLM, batches of 64: autocast 20 ms per text, bf16 weights 8 to 9, fp32 17
    to 21, under the same load)."""
    return copy.deepcopy(module).to(torch.bfloat16).eval()


class Bf16Classifier(nn.Module):
    """A sequence classifier predicting with bf16 weights, its fp32 original kept as ``exact``:
    ``evaluate.predict_features`` redoes in ``exact`` the rows within ``near_tie_margin`` logits of another label,
    so the labels are fp32's. The margin is the classification task's 0.2; bf16 weights moved the sentiment run's
    logits by at most 0.039 and a top-2 gap by at most 0.063 on 4,846 PhraseBank sentences
    (bench/results/monitor_bf16_error.json)."""

    near_tie_margin = 0.2

    def __init__(self, exact: nn.Module):
        super().__init__()
        self.exact, self.fast = exact.eval(), bf16_copy(exact)
        self.rows_predicted = self.rows_rechecked = 0  # counted by evaluate.predict_features

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.float() for k, v in self.fast(**pad_to_multiple(inputs)).items()}


def pad_to_multiple(inputs: dict[str, torch.Tensor], multiple: int = PAD_MULTIPLE) -> dict[str, torch.Tensor]:
    """(B, T) inputs right-padded (id 0, mask 0) to a multiple of ``multiple`` tokens. oneDNN builds bf16 kernels
    for each new shape it sees (10 to 25 ms more for a 64-text batch on this host), and a stream brings a new
    longest text with nearly every batch: rounding the length up bounds the shapes at the cost of a few padded
    tokens, which the attention mask and the pooling leave out."""
    width = inputs["input_ids"].shape[1]
    extra = -width % multiple
    if not extra:
        return inputs
    return {k: F.pad(v, (0, extra)) if v.dim() == 2 and k in PADDED else v for k, v in inputs.items()}


def cast_once(predictor: Any) -> Any:
    """``predictor`` (fp32) predicting through a ``Bf16Classifier``."""
    predictor.model = Bf16Classifier(predictor.model)
    return predictor


def precision_of(predictor: Any) -> str:
    return "bf16" if isinstance(predictor.model, Bf16Classifier) else predictor.precision


class Sentiment:
    """Labels and probabilities over negative / neutral / positive from any predictor with ``.predict``."""

    def __init__(self, predictor: Predicts):
        self.predictor = predictor

    @property
    def precision(self) -> str:
        return precision_of(self.predictor)

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

    @property
    def precision(self) -> str:
        return precision_of(self.predictor)

    def __call__(self, texts: Sequence[str]) -> list[str]:
        return [row["label"] for row in self.predictor.predict(list(texts))]


class ZeroShotTopics:
    """Each text goes to the topic whose description is nearest in a sentence encoder's space (mean-pooled,
    L2-normalised), or to ``other`` below ``min_similarity``.

    Texts are tokenised once to sort them by token length, then encoded in batches of ``batch_size`` (little
    padding). ``precision="bf16"`` encodes with a bf16-weight copy of the encoder (``bf16_copy``) and recomputes in
    fp32 the rows whose topic it could flip (``near_ties``): bf16 weights moved MiniLM's similarities by at most
    0.0038 and a top-2 gap by at most 0.0031 on 4,846 PhraseBank sentences (bench/results/monitor_bf16_error.json),
    inside ``NEAR_TIE`` (0.01), so the topics are fp32's.

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
        self.fast = bf16_copy(body) if precision == "bf16" else None
        self.batch_size = batch_size
        self.rows_predicted = self.rows_rechecked = 0
        self.centroids = self.embed(list(descriptions.values()))  # (K, H), always fp32

    @property
    def precision(self) -> str:
        return "fp32" if self.fast is None else "bf16"

    @classmethod
    def load(cls, encoder: str, descriptions: dict[str, str], min_similarity: float = 0.0,
             precision: str = "fp32", batch_size: int = 64) -> ZeroShotTopics:
        from tuneforge.models import load_backbone, load_tokenizer, resolve_model

        path = resolve_model(encoder).path
        return cls(load_backbone(path), load_tokenizer(path), descriptions, min_similarity, precision=precision,
                   batch_size=batch_size)

    def embed(self, texts: Sequence[str], fast: bool = False) -> torch.Tensor:
        """(N, H) fp32 unit vectors; ``fast``: from the bf16 copy (when there is one)."""
        fast = fast and self.fast is not None
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             pad_to_multiple_of=PAD_MULTIPLE if fast else None, return_tensors="pt")
        enc.pop("token_type_ids", None)
        body = self.fast if fast else self.body
        device = next(body.parameters()).device
        with torch.inference_mode():
            hidden = body(**model_inputs(enc, device)).last_hidden_state.float()  # (B, T, H)
        m = enc["attention_mask"].to(device).unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        return F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1.0), dim=-1).cpu()  # (B, H)

    def similarities(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, K) cosine similarities to the topic descriptions, in the order of ``texts``."""
        lengths = [len(ids) for ids in self.tokenizer(list(texts), truncation=True,
                                                      max_length=self.max_length)["input_ids"]]
        sims = torch.empty(len(texts), len(self.names))
        for idx in by_length(lengths, self.batch_size):
            sims[idx] = self.embed([texts[i] for i in idx], fast=True) @ self.centroids.T
        if self.fast is not None:
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
    """The sentiment and topic classifiers a ``MonitorConfig`` names, at its ``precision``. bf16 (asked for, or
    what ``auto`` resolves to) predicts with bf16-weight copies, near ties redone in fp32; ``int8`` serves
    classifier runs (zero-shot topics then run in fp32)."""
    from tuneforge.training.precision import resolve_precision

    precision = resolve_precision(cfg.precision)
    sentiment = Sentiment(_predictor(cfg.resolve(cfg.sentiment_run), precision))
    if cfg.topics.run:
        return sentiment, TopicRun(_predictor(cfg.resolve(cfg.topics.run), precision))
    precision = "bf16" if precision == "bf16" else "fp32"
    return sentiment, ZeroShotTopics.load(cfg.topics.encoder, cfg.topics.descriptions, cfg.topics.min_similarity,
                                          precision)


def _predictor(run_dir: Any, precision: str) -> Any:
    from tuneforge.inference.predictor import Predictor

    if precision == "bf16":
        return cast_once(Predictor.from_run_dir(run_dir, precision="fp32"))
    return Predictor.from_run_dir(run_dir, precision=precision)
