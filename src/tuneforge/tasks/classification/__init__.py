"""Sequence classification: single-label, multi-label and sentence pairs."""

from tuneforge.tasks.classification.task import ClassificationTask

__all__ = ["ClassificationTask"]
