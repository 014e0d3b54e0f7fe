"""A MessageLog as Django's ``TaskResult``: the same history through either API.

Status: PUBLISHED is READY (also between retries), IN_PROGRESS is RUNNING, COMPLETED is
SUCCESSFUL, FAILED is FAILED. ``worker_ids`` and ``errors`` come from the row's attempts
(``carrot.models.history``): one worker per attempt, one ``TaskError`` per failed one.
"""

from __future__ import annotations

import uuid
from typing import Any

from carrot.backends import compat
from carrot.backends.entries import django_task_of
from carrot.conf import get_config
from carrot.exceptions import CarrotError
from carrot.models import MessageLog
from carrot.models.history import attempts_of
from carrot.registry import registry

STATUS = {
    MessageLog.PUBLISHED: "READY",
    MessageLog.IN_PROGRESS: "RUNNING",
    MessageLog.COMPLETED: "SUCCESSFUL",
    MessageLog.FAILED: "FAILED",
    # Django's task framework has no cancelled state: a cancelled task did not succeed,
    # and its errors say TaskCancelled.
    MessageLog.CANCELLED: "FAILED",
}
# The error type of a failure recorded before carrot stored error types.
UNKNOWN_ERROR = "builtins.Exception"


def django_priority(priority: int, queue: str) -> int:
    """Map a RabbitMQ priority (0..the queue's ``max_priority``) onto -100..100."""
    try:
        top = get_config().queue(queue).max_priority
    except CarrotError:
        top = 255
    low, high = compat.TASK_MIN_PRIORITY, compat.TASK_MAX_PRIORITY
    return max(low, min(high, round(low + min(priority, top) * (high - low) / top)))


def task_for(log: MessageLog, alias: str) -> Any:
    """Return the Django ``Task`` of a row: the registered Django task, or one built over
    a carrot ``@task`` of the same name."""
    django_task = django_task_of(log.task)
    if django_task is not None:
        return django_task  # as decorated: reading a row never validates it again
    carrot_task = registry.get(log.task)
    if carrot_task is None:
        raise compat.TaskResultDoesNotExist(
            f"{log.uuid}: {log.task!r} is not a registered task, so it has no TaskResult."
        )
    fields = {
        "priority": django_priority(log.priority, log.queue),
        "func": carrot_task.func,
        "backend": alias,
        "queue_name": log.queue,
        "run_after": None,
        "takes_context": False,
    }
    try:
        return compat.Task(**fields)
    except compat.InvalidTask:
        # The row's queue is not one the backend accepts (its QUEUES, or a queue since
        # removed from CARROT): the row still has a result; describe it without validation.
        task = object.__new__(compat.Task)
        for name, value in fields.items():
            object.__setattr__(task, name, value)
        return task


def _errors(log: MessageLog, attempts: list[Any]) -> list[Any]:
    errors = [
        compat.TaskError(
            exception_class_path=a.exception_type or UNKNOWN_ERROR,
            traceback=a.traceback or a.exception,
        )
        for a in attempts
        if a.failed
    ]
    if log.status in (MessageLog.FAILED, MessageLog.CANCELLED) and log.attempts <= len(
        log.attempt_history or []
    ):
        # Failed with no attempt of its own running: rejected, not published or purged
        # (maybe after earlier attempts, each already counted above).
        errors.append(
            compat.TaskError(
                exception_class_path=log.exception_type or UNKNOWN_ERROR,
                traceback=log.traceback or log.exception,
            )
        )
    return errors


def result_of(log: MessageLog, task: Any, alias: str) -> Any:
    """Return the TaskResult of a row for the Django ``task`` it runs."""
    attempts = attempts_of(log)
    finished = log.status in MessageLog.FINISHED_STATUSES
    result: Any = compat.TaskResult(
        task=task,
        id=str(log.uuid),
        status=compat.TaskResultStatus(STATUS[log.status]),
        enqueued_at=log.publish_time,
        started_at=attempts[0].started if attempts else None,
        finished_at=log.finish_time if finished else None,
        last_attempted_at=attempts[-1].started if attempts else None,
        args=log.positionals,
        kwargs=log.keywords,
        backend=alias,
        errors=_errors(log, attempts),
        worker_ids=[a.worker for a in attempts],
    )
    if log.status == MessageLog.COMPLETED:
        object.__setattr__(result, "_return_value", log.output)
    return result


def result_for_log(log: MessageLog, alias: str) -> Any:
    """Return the TaskResult of a row, through the backend that enqueued it if it is still
    configured, else through ``alias``."""
    if log.backend and log.backend in compat.task_backends.settings:
        alias = log.backend
    return result_of(log, task_for(log, alias), alias)


def result_by_id(result_id: str, alias: str) -> Any:
    """Return the TaskResult of the task with this id; raise TaskResultDoesNotExist."""
    try:
        key = uuid.UUID(str(result_id))
    except ValueError:
        raise compat.TaskResultDoesNotExist(result_id) from None
    log = MessageLog.objects.filter(uuid=key).first()
    if log is None:
        raise compat.TaskResultDoesNotExist(result_id)
    return result_for_log(log, alias)


def result_by_row(row_id: int, alias: str) -> Any:
    """Return the TaskResult of a row by primary key (the worker's view of its call)."""
    return result_for_log(MessageLog.objects.get(pk=row_id), alias)
