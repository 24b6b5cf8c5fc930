"""Tasks: the registry (name -> the task's pieces) and one LightningModule per task.

Importing this package imports only the registry; a task's module loads when used.
"""

from tumorscope.tasks.registry import TaskSpec, get_task, register_task, task_names

__all__ = ["TaskSpec", "get_task", "register_task", "task_names"]
