"""A schedule declared in code with ``@periodic``; synced into the table by ``sync``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from carrot.scheduling.cadence import Cadence


@dataclass(frozen=True)
class Declaration:
    """A schedule declared in code with ``@periodic``."""

    name: str
    task: str
    cadence: Cadence
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = ""
    priority: int | None = None

    def fields(self) -> dict[str, Any]:
        """Return the ScheduledTask column values this declaration stands for."""
        return {
            "task": self.task,
            **self.cadence.fields(),
            "task_args": list(self.args),
            "task_kwargs": dict(self.kwargs),
            "queue": self.queue,
            "priority": self.priority,
        }
