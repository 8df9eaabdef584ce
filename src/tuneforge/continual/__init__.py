"""Continual learning: train on a sequence of stages and measure what is kept and what is forgotten."""
