"""Tracked publishing: write the MessageLog row first, then publish after commit."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import router, transaction
from django.utils import timezone

from carrot.broker import publisher
from carrot.conf import CarrotConfig, QueueConfig, get_config
from carrot.exceptions import BrokerError, CarrotError, NotRequeueable, TaskNotRegistered
from carrot.messages import encode_body, normalise_arguments
from carrot.models import MessageLog
from carrot.registry import registry

logger = logging.getLogger(__name__)

# MessageLog.exception of a row the worker refused before running anything.
REJECTED_PREFIX = "Message rejected: "
NOT_PUBLISHED_PREFIX = "Not published: "


def _check_priority(priority: Any, queue: QueueConfig) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ValueError(f"priority must be an integer, got {priority!r}.")
    if not 0 <= priority <= queue.max_priority:
        raise ValueError(
            f"priority {priority} is out of range: queue {queue.name!r} accepts priorities "
            f"from 0 to {queue.max_priority} (higher runs first)."
        )
    return priority


def _publish(log: MessageLog, body: bytes, queue: QueueConfig, config: CarrotConfig) -> None:
    try:
        publisher.publish(
            queue,
            config,
            body=body,
            message_id=str(log.uuid),
            task=log.task,
            priority=log.priority,
            exchange=log.exchange,
            routing_key=log.routing_key,
        )
    except BrokerError as exc:
        # The row says what happened, so nothing is silently lost.
        reason = f"{NOT_PUBLISHED_PREFIX}{exc}"
        MessageLog.objects.filter(pk=log.pk).mark_failed(
            exception=reason, from_statuses=(MessageLog.PUBLISHED,)
        )
        log.status, log.exception = MessageLog.FAILED, reason
        raise


def _publish_after_commit(
    log: MessageLog, body: bytes, queue: QueueConfig, config: CarrotConfig, using: str
) -> None:
    # Inside an atomic block a worker could otherwise consume the message before the row
    # (and whatever the caller wrote with it) is committed.
    if transaction.get_connection(using).in_atomic_block:
        transaction.on_commit(partial(_publish, log, body, queue, config), using=using)
    else:
        _publish(log, body, queue, config)


def enqueue(
    task_name: str,
    args: Any = None,
    kwargs: Any = None,
    *,
    queue: str,
    priority: int = 0,
    exchange: str = "",
    routing_key: str | None = None,
    who: str = "enqueue()",
    queue_config: QueueConfig | None = None,
) -> MessageLog:
    """Record a call of ``task_name`` and publish it; return the MessageLog.

    Raises TypeError for arguments that are not JSON, MessageTooLarge, UnknownQueue,
    ValueError for a bad priority, TaskNotRegistered, and BrokerError when the broker does
    not take the message (the row is then FAILED with the reason).
    """
    if task_name not in registry:
        raise TaskNotRegistered(task_name)
    config = get_config()
    queue_config = queue_config or config.queue(queue)
    priority = _check_priority(priority, queue_config)
    norm_args, norm_kwargs = normalise_arguments(args, kwargs, who=who)
    body = encode_body(norm_args, norm_kwargs, max_bytes=config.max_message_bytes)
    using = router.db_for_write(MessageLog)
    log = MessageLog.objects.using(using).create(
        task=task_name,
        queue=queue_config.name,
        exchange=exchange or "",
        routing_key=queue_config.name if routing_key is None else routing_key,
        priority=priority,
        task_args=norm_args,
        task_kwargs=norm_kwargs,
        publish_time=timezone.now(),
    )
    _publish_after_commit(log, body, queue_config, config, using)
    return log


def requeue(log: MessageLog) -> MessageLog:
    """Publish a FAILED task again under the same id and return the refreshed row."""
    if log.exception.startswith(REJECTED_PREFIX):
        reason = log.exception[len(REJECTED_PREFIX) :]
        raise NotRequeueable(
            f"Task {log.uuid} was rejected before it ran ({reason}); "
            "there is nothing valid to requeue. The original message is in the dead-letter queue."
        )
    if log.task not in registry:
        raise NotRequeueable(f"Cannot requeue {log.uuid}: {log.task!r} is not a registered task.")
    config = get_config()
    try:
        queue_config = config.queue(log.queue)
    except CarrotError as exc:
        raise NotRequeueable(f"Cannot requeue {log.uuid}: {exc}") from None
    body = encode_body(log.positionals, log.keywords, max_bytes=config.max_message_bytes)
    using = router.db_for_write(MessageLog)
    changed = (
        MessageLog.objects.using(using)
        .filter(pk=log.pk, status=MessageLog.FAILED)
        .update(
            status=MessageLog.PUBLISHED,
            exception="",
            traceback="",
            output=None,
            log=[],
            start_time=None,
            completion_time=None,
            failure_time=None,
            interruptions=0,
            worker="",
            publish_time=timezone.now(),
        )
    )
    if not changed:
        current = MessageLog.objects.using(using).filter(pk=log.pk).values_list("status", flat=True)
        state = current[0] if current else "deleted"
        raise NotRequeueable(f"Only failed tasks can be requeued; {log.uuid} is {state}.")
    log.refresh_from_db(using=using)
    _publish_after_commit(log, body, queue_config, config, using)
    return log
