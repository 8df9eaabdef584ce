"""Task folders; importing this package registers every built-in task."""

from tuneforge.tasks import (  # noqa: F401  (each registers itself)
    classification,
    classification_generative,
    generation,
    ner,
    qa,
    recommendation,
    relation,
)
from tuneforge.tasks.base import TASKS, Task, TaskContext, build_task

__all__ = ["TASKS", "Task", "TaskContext", "build_task"]
