"""Named-entity recognition: BIO tagging over words, scored on strict entity spans."""

from tuneforge.tasks.ner.task import NerTask

__all__ = ["NerTask"]
