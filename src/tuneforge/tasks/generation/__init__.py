"""Generative SFT of causal LMs: instructions, multi-turn dialogue, summarisation and translation."""

from tuneforge.tasks.generation.task import GenerationTask

__all__ = ["GenerationTask"]
