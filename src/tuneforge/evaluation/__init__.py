"""Evaluation: batched prediction over features, metrics, and the before/after report."""
