"""One attempt at a task: the claim that allows it, and the record its outcome becomes.

A ``Claim`` answers "may this worker run this delivery?"; once the task ran, its
``Outcome`` becomes a ``Record``: completed, failed, or retrying (with the wait before
the next attempt), which the recorder writes and the worker then settles.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from carrot.models.lifecycle import CANCEL, COMPLETE, FAIL, RETRY, Transition
from carrot.tasks import Task
from carrot.worker.retries import retry_delay
from carrot.worker.runner import Outcome


@dataclass(frozen=True)
class Claim:
    """The answer to "may this worker run this delivery?"."""

    run: bool
    log_id: int | None = None
    attempt: int = 0
    reason: str = ""
    # Not now: ask again after this many seconds (the task runs on another live worker,
    # or its row is not visible yet).
    wait: float = 0.0
    # Not run, for good: the task kept interrupting its worker and is now FAILED.
    gave_up: bool = False


class OutcomeKind(enum.Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"

    @property
    def outcome(self) -> str:
        """The outcome's name in metrics and traces."""
        return "retried" if self is OutcomeKind.RETRYING else self.value

    @property
    def transition(self) -> Transition:
        return {"completed": COMPLETE, "failed": FAIL, "retrying": RETRY, "cancelled": CANCEL}[
            self.value
        ]


@dataclass(frozen=True)
class Record:
    """An attempt's outcome as the recorder writes it."""

    kind: OutcomeKind
    claim: Claim
    values: dict[str, Any] = field(default_factory=dict)  # the transition's parameters
    retry_in: float | None = None

    @property
    def row_id(self) -> int:
        assert self.claim.log_id is not None  # only claimed attempts have outcomes
        return self.claim.log_id


def record_for(task: Task, claim: Claim, outcome: Outcome) -> Record:
    """Decide what an attempt's outcome means: done, failed for good, or retried later."""
    if outcome.succeeded:
        return Record(OutcomeKind.COMPLETED, claim, {"output": outcome.output, "log": outcome.log})
    if outcome.cancelled:  # never retried
        return Record(
            OutcomeKind.CANCELLED,
            claim,
            {"exception": outcome.exception, "traceback": outcome.traceback, "log": outcome.log},
        )
    wait = retry_delay(task, outcome.error, claim.attempt)
    if wait is not None:
        return Record(
            OutcomeKind.RETRYING,
            claim,
            {
                "eta": datetime.now(tz=UTC) + timedelta(seconds=wait),
                "exception": outcome.exception,
                "exception_type": outcome.exception_type,
                "traceback": outcome.traceback,
                "log": outcome.log,
            },
            retry_in=wait,
        )
    exception = outcome.exception
    if task.retries and claim.attempt > 1:
        exception = f"{exception} (gave up after {claim.attempt} attempts)"
    return Record(
        OutcomeKind.FAILED,
        claim,
        {
            "exception": exception,
            "exception_type": outcome.exception_type,
            "traceback": outcome.traceback,
            "log": outcome.log,
        },
    )


def log_outcome(
    logger: logging.Logger,
    message_id: str,
    queue: str,
    task: Task,
    outcome: Outcome,
    record: Record,
) -> None:
    """Log the attempt's outcome; in JSON logs with fields a log system can index."""
    level = logging.INFO if outcome.succeeded else logging.WARNING
    if not logger.isEnabledFor(level):
        return
    kind, attempt = record.kind, record.claim.attempt
    fields: dict[str, Any] = {
        "task_id": message_id,
        "task": task.name,
        "queue": queue,
        "attempt": attempt,
        "duration": round(outcome.duration, 6),
        "outcome": kind.value,
    }
    if not outcome.succeeded:
        fields["error"] = outcome.exception
    if record.retry_in is not None:
        fields["retry_in"] = round(record.retry_in, 3)
        text = (
            f"Retrying {task.name} {message_id} in {record.retry_in:.1f}s: attempt "
            f"{attempt} failed after {outcome.duration:.3f}s: {outcome.exception}"
        )
    else:
        text = f"{kind.value.capitalize()} {task.name} {message_id} in {outcome.duration:.3f}s" + (
            "" if outcome.succeeded else f": {outcome.exception}"
        )
    logger.log(level, "%s", text, extra={"carrot": fields})
