"""The registry of tasks: the only gate between a task name and code that runs.

The worker, the scheduler and the monitor look names up here. Nothing in carrot imports a
module because a message or a form named it; modules are imported at startup by
``carrot.discovery.autodiscover()`` (every installed app's ``tasks`` module plus
``CARROT['task_modules']``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from carrot.exceptions import TaskNotRegistered

if TYPE_CHECKING:
    from carrot.scheduling.declaration import Declaration
    from carrot.tasks import Task


class Registry:
    """Registered tasks by name (``module.qualname``)."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._schedules: dict[str, Declaration] = {}
        self._lock = threading.Lock()

    def register(self, task: Task) -> None:
        """Add ``task``; a re-import of the same module replaces its earlier entry."""
        with self._lock:
            self._tasks[task.name] = task

    def get(self, name: str) -> Task | None:
        """Return the task called ``name``, or None."""
        return self._tasks.get(name)

    def __getitem__(self, name: str) -> Task:
        try:
            return self._tasks[name]
        except KeyError:
            raise TaskNotRegistered(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(sorted(self._tasks.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._tasks)

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._tasks)

    def declare(self, declaration: Declaration) -> None:
        """Add a schedule declared with ``@periodic``; a re-import replaces it."""
        with self._lock:
            self._schedules[declaration.name] = declaration

    def undeclare(self, name: str) -> None:
        """Remove the schedule declaration called ``name`` if there is one."""
        with self._lock:
            self._schedules.pop(name, None)

    def declarations(self) -> list[Declaration]:
        """Return the declared schedules, sorted by name."""
        return [self._schedules[name] for name in sorted(self._schedules)]


registry = Registry()
