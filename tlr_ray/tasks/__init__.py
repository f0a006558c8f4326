"""Tasks: a task is data, a head and a metric. It knows nothing of Ray, variants or adapters' cycling.

Every task module `tlr_ray/tasks/<name>.py` defines `make_task(**options) -> Task` (options come from the
sweep's `tasks.<name>.options`); `get_task(name, options)` calls it.
The training recipes in `tlr_ray.train` only talk to tasks through this interface.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from tlr_ray.tasks.base import DataError, DataSource, Task

__all__ = ["DataError", "DataSource", "Task", "get_task", "implemented_tasks"]


def implemented_tasks() -> tuple[str, ...]:
    """Tasks with a module here (`tlr_ray/tasks/<name>.py` defining `make_task`); found without importing
    them, so planning stays free of torch."""
    here = Path(__file__).parent
    return tuple(sorted(p.stem for p in here.glob("*.py")
                        if not p.stem.startswith("_") and "def make_task(" in p.read_text()))


def get_task(name: str, options: dict | None = None) -> Task:
    """The task called `name`, configured with the sweep's `tasks.<name>.options`."""
    if name not in implemented_tasks():
        raise KeyError(f"unknown task {name!r}; implemented tasks: {', '.join(implemented_tasks())}")
    module = importlib.import_module(f"tlr_ray.tasks.{name}")  # imports torch: only when running a job
    return module.make_task(**(options or {}))
