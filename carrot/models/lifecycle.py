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

from carrot.exceptions import (
    MessagePurged,
    MessageRejected,
    PublishError,
    TaskCancelled,
    TaskInterrupted,
)

PUBLISHED = "PUBLISHED"
IN_PROGRESS = "IN_PROGRESS"
FAILED = "FAILED"
COMPLETED = "COMPLETED"
CANCELLED = "CANCELLED"
FINISHED = (FAILED, COMPLETED, CANCELLED)
ACTIVE = (PUBLISHED, IN_PROGRESS)  # queued or running: a unique task has one at most

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
class Archive:
    """``attempt_history`` with the row's current attempt appended (worker, start time,
    and its error: this transition's ``exception``/``exception_type``/``traceback``
    parameters, the row's columns, or none). With ``only_unarchived`` the attempt is
    appended only if it is not there yet (``attempts`` > the history's length).

    Evaluated by the database from the row's values before the UPDATE; it is the first
    assignment of its transition (MySQL evaluates assignments left to right).
    """

    error: str  # "params", "columns" or "none"
    only_unarchived: bool = False


def error_type(exc_class: type[BaseException]) -> str:
    """Return the dotted path of an exception class, as ``exception_type`` stores it."""
    return f"{exc_class.__module__}.{exc_class.__qualname__}"


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


# The error types of failures that are carrot's, not a task's.
REJECTED_TYPE = error_type(MessageRejected)
INTERRUPTED_TYPE = error_type(TaskInterrupted)
PURGED_TYPE = error_type(MessagePurged)
NOT_PUBLISHED_TYPE = error_type(PublishError)
CANCELLED_TYPE = error_type(TaskCancelled)

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
    {
        "attempt_history": Archive("none"),
        "attempts": PLUS_ONE,
        "interruptions": PLUS_ONE,
        "start_time": NOW,
    },
    ("worker",),
)
COMPLETE = Transition(
    "complete",
    (IN_PROGRESS,),
    COMPLETED,
    {"exception": "", "exception_type": "", "traceback": "", "completion_time": NOW},
    ("output", "log"),
)
FAIL = Transition(
    "fail",
    (IN_PROGRESS,),
    FAILED,
    {"failure_time": NOW},
    ("exception", "exception_type", "traceback", "log"),
)
RETRY = Transition(  # back to the queue for a later attempt, keeping this attempt's error
    "retry",
    (IN_PROGRESS,),
    PUBLISHED,
    {"attempt_history": Archive("params"), "failure_time": NOW},
    ("eta", "exception", "exception_type", "traceback", "log"),
)
GIVE_UP = Transition(  # interrupted too often: its worker died every time it ran
    "give up",
    (IN_PROGRESS,),
    FAILED,
    {"exception_type": INTERRUPTED_TYPE, "traceback": "", "failure_time": NOW},
    ("exception",),
)
REQUEUE = Transition(  # a failed task published again under the same id
    "requeue",
    (FAILED,),
    PUBLISHED,
    {
        "attempt_history": Archive("columns", only_unarchived=True),
        "exception": "",
        "exception_type": "",
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
    "reject",
    (PUBLISHED, IN_PROGRESS),
    FAILED,
    {"exception_type": REJECTED_TYPE, "failure_time": NOW},
    ("exception",),
)
NOT_PUBLISHED = Transition(  # RabbitMQ did not take it (exception: the reason)
    "not published",
    (PUBLISHED,),
    FAILED,
    {"exception_type": NOT_PUBLISHED_TYPE, "failure_time": NOW},
    ("exception",),
)
PURGE = Transition(  # its message was purged from the queue by an operator
    "purge",
    (PUBLISHED,),
    FAILED,
    {"exception_type": PURGED_TYPE, "failure_time": NOW},
    ("exception",),
)

CANCEL_QUEUED = Transition(  # cancelled before it ran: it never will
    "cancel queued",
    (PUBLISHED,),
    CANCELLED,
    {"exception_type": CANCELLED_TYPE, "traceback": "", "cancelled_at": NOW},
    ("exception", "cancelled_by"),
)
ASK_TO_CANCEL = Transition(  # running: the worker asks it to stop (carrot.worker.cancels)
    "ask to cancel",
    (IN_PROGRESS,),
    IN_PROGRESS,
    {"cancelled_at": NOW},
    ("cancelled_by",),
)
CANCEL = Transition(  # the attempt ended because it was cancelled: not failed, not retried
    "cancel",
    (IN_PROGRESS,),
    CANCELLED,
    {"exception_type": CANCELLED_TYPE},
    ("exception", "traceback", "log"),
)

# Not a status move: a running attempt's log lines so far, written while it runs
# (``carrot.worker.livelog``, through ``apply_each``): only a row still IN_PROGRESS at the
# same attempt matches, so it never replaces the log an outcome wrote, nor a later attempt's.
LOG_SO_FAR = Transition("log so far", (IN_PROGRESS,), IN_PROGRESS, params=("log",))

TRANSITIONS = (
    CLAIM,
    RESUME,
    COMPLETE,
    FAIL,
    RETRY,
    GIVE_UP,
    REQUEUE,
    REJECT,
    NOT_PUBLISHED,
    PURGE,
    CANCEL_QUEUED,
    ASK_TO_CANCEL,
    CANCEL,
    LOG_SO_FAR,
)


def rejected(reason: str) -> str:
    """Return the exception text of a message the worker refused."""
    return f"{REJECTED_PREFIX}{reason}"


def not_published(reason: str) -> str:
    """Return the exception text of a task RabbitMQ did not take."""
    return f"{NOT_PUBLISHED_PREFIX}{reason}"
