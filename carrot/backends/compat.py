"""Django's task framework, wherever it comes from: ``django.tasks`` (Django 6.0 and
later) or the ``django-tasks`` backport (``django_tasks``, Django 5.2). The one place that
knows the difference; ``available`` is False when neither is installed."""

from __future__ import annotations

import importlib
from typing import Any

SOURCE = ""  # the package the framework was imported from
_modules: dict[str, Any] = {}
for _package in ("django.tasks", "django_tasks"):  # Django 6.0+, then the backport
    try:
        _modules = {
            part: importlib.import_module(f"{_package}{part}")
            for part in ("", ".base", ".backends.base", ".exceptions", ".signals")
        }
    except ImportError:
        continue
    SOURCE = _package
    break


def _get(part: str, *names: str) -> Any:
    module = _modules.get(part)
    for name in names:
        if module is not None and hasattr(module, name):
            return getattr(module, name)
    return None


TaskResult: Any = _get("", "TaskResult")
TaskResultStatus: Any = _get("", "TaskResultStatus")
task_backends: Any = _get("", "task_backends")
BaseTaskBackend: Any = _get(".backends.base", "BaseTaskBackend")
Task: Any = _get(".base", "Task")
TaskContext: Any = _get(".base", "TaskContext")
TaskError: Any = _get(".base", "TaskError")
TASK_MAX_PRIORITY: int = _get(".base", "TASK_MAX_PRIORITY") or 100
TASK_MIN_PRIORITY: int = _get(".base", "TASK_MIN_PRIORITY") or -100
InvalidTask: Any = _get(".exceptions", "InvalidTask", "InvalidTaskError")
TaskResultDoesNotExist: Any = _get(".exceptions", "TaskResultDoesNotExist")
task_enqueued: Any = _get(".signals", "task_enqueued")
task_started: Any = _get(".signals", "task_started")
task_finished: Any = _get(".signals", "task_finished")


def _normalize_json() -> Any:
    """Django's JSON rules for task values (django.utils.json, or the backport's utils)."""
    for path in ("django.utils.json", "django_tasks.utils"):
        try:
            found = getattr(importlib.import_module(path), "normalize_json", None)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


normalize_json: Any = _normalize_json() if SOURCE else None

available = bool(SOURCE)

UNAVAILABLE = (
    "carrot.backends.RabbitMQBackend is a backend for Django's task framework, which this "
    "project does not have: upgrade to Django 6.0 or later, or on Django 5.2 install the "
    "backport (`pip install django-carrot[tasks]`, then add 'django_tasks' to "
    "INSTALLED_APPS), or use carrot's own @task."
)

__all__: list[Any] = [
    "SOURCE",
    "TASK_MAX_PRIORITY",
    "TASK_MIN_PRIORITY",
    "UNAVAILABLE",
    "BaseTaskBackend",
    "InvalidTask",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "available",
    "normalize_json",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
