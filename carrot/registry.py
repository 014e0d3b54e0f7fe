"""The registry of tasks: the only gate between a task name and code that runs.

The worker, the scheduler and the monitor look names up here. Nothing in carrot imports a
module because a message or a form named it; modules are imported at startup by
``autodiscover()`` (every installed app's ``tasks`` module plus ``CARROT['task_modules']``).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from carrot.exceptions import TaskNotRegistered

if TYPE_CHECKING:
    from carrot.scheduler import Declaration
    from carrot.tasks import Task

logger = logging.getLogger(__name__)


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

    def unregister(self, name: str) -> None:
        """Remove the task called ``name`` if it is registered."""
        with self._lock:
            self._tasks.pop(name, None)

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


def register_module_functions(module_path: str) -> None:
    """Register the public functions defined in a CARROT['task_modules'] module.

    The seed let any function of a listed module run as a task; listing the module is the
    explicit allow-list, so its plain functions become tasks with default options.
    """
    from carrot.tasks import Task, make_task

    module = importlib.import_module(module_path)
    for attr, value in vars(module).items():
        if attr.startswith("_") or isinstance(value, Task):
            continue
        if inspect.isfunction(value) and value.__module__ == module.__name__:
            name = f"{value.__module__}.{value.__qualname__}"
            if name not in registry:
                registry.register(make_task(value))


def autodiscover() -> None:
    """Import every installed app's ``tasks`` module and the CARROT['task_modules']."""
    from django.utils.module_loading import autodiscover_modules

    from carrot.conf import get_config

    autodiscover_modules("tasks")
    for module_path in get_config().task_modules:
        try:
            register_module_functions(module_path)
        except ModuleNotFoundError as exc:
            # A missing listed module is reported by the system check carrot.E005; an
            # ImportError raised *inside* an existing module is a bug and propagates.
            if exc.name is None or not module_path.startswith(exc.name):
                raise
            logger.warning("CARROT['task_modules'] lists %r, which cannot be imported", module_path)
