"""Task folders; importing this package registers every built-in task."""

from tuneforge.tasks import classification  # noqa: F401
from tuneforge.tasks.base import TASKS, Task, TaskContext, build_task

__all__ = ["TASKS", "Task", "TaskContext", "build_task"]
