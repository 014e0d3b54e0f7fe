"""The registry entry of a Django task: a carrot ``Task`` that knows its Django ``Task``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from carrot.registry import registry
from carrot.tasks import Task


@dataclass(frozen=True, eq=False, repr=False)
class DjangoTaskEntry(Task):
    """A Django task as carrot's registry holds it (registered by a carrot backend)."""

    django_task: Any = None  # the django.tasks Task (or the backport's)
    alias: str = ""  # the TASKS alias that registered it


def django_task_of(name: str) -> Any | None:
    """Return the Django task registered as ``name``, or None (a carrot ``@task``, or
    nothing)."""
    entry = registry.get(name)
    return entry.django_task if isinstance(entry, DjangoTaskEntry) else None
