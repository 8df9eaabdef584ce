"""Extractive question answering (SQuAD v1.1 / v2.0): answer spans found in windows over long contexts."""

from tuneforge.tasks.qa.task import QaTask

__all__ = ["QaTask"]
