"""FAQ retrieval: a bi-encoder (mean-pooled, L2-normalised sentence embeddings) that can be fine-tuned on
question-answer pairs with in-batch negatives, and a small index that finds the nearest FAQ question."""

from __future__ import annotations

import inspect
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tuneforge.tasks.classification.head import pool


class BiEncoder:
    """``embed(texts) -> (N, H)`` unit vectors from a transformer body and its tokenizer.

    >>> # enc = BiEncoder.load("minilm"); enc.embed(["where is my card?"]).shape
    """

    def __init__(self, body: nn.Module, tokenizer: Any, max_length: int = 64):
        self.body, self.tokenizer, self.max_length = body.eval(), tokenizer, max_length
        self._inputs = set(inspect.signature(body.forward).parameters)  # decoders take no token_type_ids

    @classmethod
    def load(cls, location: str) -> BiEncoder:
        """``minilm`` (or any model name TuneForge resolves), a local model folder, or a folder ``save`` wrote."""
        from tuneforge.models import load_backbone, load_tokenizer, resolve_model

        path = resolve_model(location).path
        return cls(load_backbone(path), load_tokenizer(path))

    def save(self, folder: str | Path) -> None:
        self.body.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def _encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {k: v for k, v in enc.items() if k in self._inputs}

    def _forward(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self._encode(texts)
        hidden = self.body(**enc).last_hidden_state  # (B, T, H)
        return F.normalize(pool(hidden, enc["attention_mask"], "mean"), dim=-1)  # (B, H)

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, 0)
        self.body.eval()
        with torch.inference_mode():
            return torch.cat([self._forward(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)])

    def fine_tune(self, pairs: Sequence[tuple[str, str]], epochs: int = 1, lr: float = 2e-5, batch_size: int = 16,
                  scale: float = 20.0, seed: int = 0) -> list[float]:
        """Contrastive tuning on (question, answer) pairs: each question should be nearest its own answer among
        the batch's answers (multiple-negatives ranking loss, cross-entropy over scaled cosine similarities).
        Returns the mean loss of each epoch."""
        if len(pairs) < 2:
            raise ValueError("FAQ fine-tuning needs at least 2 question-answer pairs (the others are the negatives)")
        rng = random.Random(seed)
        torch.manual_seed(seed)
        optim = torch.optim.AdamW([p for p in self.body.parameters() if p.requires_grad], lr=lr)
        order = list(range(len(pairs)))
        losses = []
        self.body.train()
        for _ in range(epochs):
            rng.shuffle(order)
            total, batches = 0.0, 0
            for s in range(0, len(order), batch_size):
                batch = [pairs[i] for i in order[s:s + batch_size]]
                if len(batch) < 2:
                    continue
                q = self._forward([a for a, _ in batch])  # (B, H)
                a = self._forward([b for _, b in batch])  # (B, H)
                loss = F.cross_entropy(scale * q @ a.T, torch.arange(len(batch)))
                optim.zero_grad()
                loss.backward()
                optim.step()
                total, batches = total + loss.item(), batches + 1
            losses.append(total / max(1, batches))
        self.body.eval()
        return losses


@dataclass
class Match:
    index: int
    question: str
    answer: str
    similarity: float


class FaqIndex:
    """The FAQ embedded once; ``best(text)`` returns the pair whose question or answer is nearest ``text``
    (the answer counts too: a bi-encoder tuned on question-answer pairs puts a question next to its answer)."""

    def __init__(self, encoder: BiEncoder, pairs: Sequence[tuple[str, str]]):
        self.encoder, self.pairs = encoder, list(pairs)
        self.keys = encoder.embed([t for p in self.pairs for t in p]) if self.pairs else None  # (2F, H)

    def best(self, text: str) -> Match | None:
        if self.keys is None:
            return None
        sims = (self.encoder.embed([text]) @ self.keys.T)[0].view(-1, 2).max(-1).values  # (F,)
        i = int(sims.argmax())
        return Match(i, self.pairs[i][0], self.pairs[i][1], float(sims[i]))
