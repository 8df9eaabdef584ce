"""Classification by a causal LM that answers with a label word, constrained to the label set when predicting."""

from tuneforge.tasks.classification_generative.task import GenerativeClassificationTask

__all__ = ["GenerativeClassificationTask"]
