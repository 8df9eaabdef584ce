"""The allocator choice: keep big freed blocks only where a per-step embedding gradient reuses them."""

from __future__ import annotations

from torch import nn

from tuneforge.training.allocator import mmap_threshold_mb, trains_word_embeddings


def test_threshold_by_body_and_embedding_gradient(monkeypatch):
    monkeypatch.delenv("TUNEFORGE_MMAP_THRESHOLD_MB", raising=False)
    assert mmap_threshold_mb(causal_lm=False) == 512  # encoder full fine-tuning: reuse the embedding gradient
    assert mmap_threshold_mb(causal_lm=False, embedding_gradient=False) == 1  # nothing to reuse: no fragmentation
    assert mmap_threshold_mb(causal_lm=True) == 1
    monkeypatch.setenv("TUNEFORGE_MMAP_THRESHOLD_MB", "64")
    assert mmap_threshold_mb(causal_lm=False, embedding_gradient=False) == 64


def test_trains_word_embeddings_reads_the_largest_table():
    model = nn.ModuleDict({"words": nn.Embedding(1000, 8), "positions": nn.Embedding(16, 8), "out": nn.Linear(8, 2)})
    assert trains_word_embeddings(model)
    model["words"].weight.requires_grad_(False)  # positions still train: the word table decides
    assert not trains_word_embeddings(model)
    assert not trains_word_embeddings(nn.Linear(3, 3))
