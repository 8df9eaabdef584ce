"""Metrics are classification's own (accuracy, macro/micro F1, per-class P/R/F1, confusion matrix), so both ways of
classifying with a decoder report the same numbers."""

from tuneforge.tasks.classification.metrics import single_label_metrics

__all__ = ["single_label_metrics"]
