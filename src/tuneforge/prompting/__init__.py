"""Prompt learning and few-shot methods: templates and verbalisers, k-shot draws, zero-shot, in-context learning
and SetFit, wired into ordinary training runs (runs.py)."""
