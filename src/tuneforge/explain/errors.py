"""The error explanations raise when a model or its environment cannot be explained as asked."""


class ExplainError(RuntimeError):
    """A missing extra, no embedding layer, an unknown label, or a task explanations do not cover."""
