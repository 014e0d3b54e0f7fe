"""The task lifecycle: every MessageLog transition, defined once.

PUBLISHED -> IN_PROGRESS -> COMPLETED or FAILED, with the ways back: a retry (IN_PROGRESS
-> PUBLISHED), a requeue (FAILED -> PUBLISHED) and a restart after an interrupted
attempt (IN_PROGRESS -> IN_PROGRESS). Each transition is one conditional UPDATE: it only
matches rows in its source states, so a late or duplicate writer changes nothing and a
status never goes backwards. The ORM methods (``MessageLogQuerySet.apply``) and the
worker's batched SQL (``apply_each``, ``claim_many``) are both built from these
definitions, and a test proves they write the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PUBLISHED = "PUBLISHED"
IN_PROGRESS = "IN_PROGRESS"
FAILED = "FAILED"
COMPLETED = "COMPLETED"
FINISHED = (FAILED, COMPLETED)

# MessageLog.exception of a row the worker refused before running anything.
REJECTED_PREFIX = "Message rejected: "
# MessageLog.exception of a row RabbitMQ never took.
NOT_PUBLISHED_PREFIX = "Not published: "


class _Now:
    """The time of the write, taken when the UPDATE is built."""

    def __repr__(self) -> str:
        return "NOW"


NOW: Any = _Now()


@dataclass(frozen=True)
class Increment:
    """The column's current value plus one."""


PLUS_ONE: Any = Increment()


@dataclass(frozen=True)
class Transition:
    """A move of rows in ``sources`` to ``target``: fixed column values, plus the values
    named in ``params`` that each call gives."""

    name: str
    sources: tuple[str, ...]
    target: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    params: tuple[str, ...] = ()

    def changes(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Return column -> value for one row (``NOW`` and ``PLUS_ONE`` left to the writer)."""
        missing = set(self.params) - set(values)
        extra = set(values) - set(self.params)
        if missing or extra:
            raise TypeError(
                f"the {self.name} transition takes {sorted(self.params)}, got {sorted(values)}"
            )
        return {"status": self.target, **self.fixed, **values}


CLAIM = Transition(
    "claim",
    (PUBLISHED,),
    IN_PROGRESS,
    {"attempts": PLUS_ONE, "start_time": NOW},
    ("worker",),
)
RESUME = Transition(  # claimed again after an attempt that ended without an outcome
    "resume",
    (IN_PROGRESS,),
    IN_PROGRESS,
    {"attempts": PLUS_ONE, "interruptions": PLUS_ONE, "start_time": NOW},
    ("worker",),
)
COMPLETE = Transition(
    "complete",
    (IN_PROGRESS,),
    COMPLETED,
    {"exception": "", "traceback": "", "completion_time": NOW},
    ("output", "log"),
)
FAIL = Transition(
    "fail", (IN_PROGRESS,), FAILED, {"failure_time": NOW}, ("exception", "traceback", "log")
)
RETRY = Transition(  # back to the queue for a later attempt, keeping this attempt's error
    "retry",
    (IN_PROGRESS,),
    PUBLISHED,
    {"failure_time": NOW},
    ("eta", "exception", "traceback", "log"),
)
GIVE_UP = Transition(  # interrupted too often: its worker died every time it ran
    "give up", (IN_PROGRESS,), FAILED, {"traceback": "", "failure_time": NOW}, ("exception",)
)
REQUEUE = Transition(  # a failed task published again under the same id
    "requeue",
    (FAILED,),
    PUBLISHED,
    {
        "exception": "",
        "traceback": "",
        "output": None,
        "log": [],
        "start_time": None,
        "completion_time": None,
        "failure_time": None,
        "interruptions": 0,
        "worker": "",
        "eta": None,
        "publish_time": NOW,
    },
)
REJECT = Transition(  # dead-lettered by the worker without running (exception: the reason)
    "reject", (PUBLISHED, IN_PROGRESS), FAILED, {"failure_time": NOW}, ("exception",)
)
NOT_PUBLISHED = Transition(  # RabbitMQ did not take it (exception: the reason)
    "not published", (PUBLISHED,), FAILED, {"failure_time": NOW}, ("exception",)
)
PURGE = Transition(  # its message was purged from the queue by an operator
    "purge", (PUBLISHED,), FAILED, {"failure_time": NOW}, ("exception",)
)

TRANSITIONS = (CLAIM, RESUME, COMPLETE, FAIL, RETRY, GIVE_UP, REQUEUE, REJECT, NOT_PUBLISHED, PURGE)


def rejected(reason: str) -> str:
    """Return the exception text of a message the worker refused."""
    return f"{REJECTED_PREFIX}{reason}"


def not_published(reason: str) -> str:
    """Return the exception text of a task RabbitMQ did not take."""
    return f"{NOT_PUBLISHED_PREFIX}{reason}"
