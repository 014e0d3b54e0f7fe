"""Tracked publishing: the MessageLog row is committed before its message is published.

- ``enqueue()`` (``delay()``) and ``enqueue_many()`` write each row with an outbox entry
  in one transaction and, once it commits, hand the message to this process's relay,
  which publishes with pipelined confirms (see ``carrot.outbox``). If the relay knows the
  broker is unreachable or blocked, the call raises and the row is FAILED instead.
- ``requeue()`` and messages for a custom exchange publish synchronously and wait for the
  confirm, so the caller learns at once if RabbitMQ refuses them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.db import router, transaction
from django.utils import timezone

from carrot.broker import publisher
from carrot.conf import CarrotConfig, QueueConfig, get_config
from carrot.exceptions import (
    BrokerError,
    CarrotError,
    NotRequeueable,
    PublishUncertain,
    TaskNotRegistered,
)
from carrot.messages import ETA_HEADER, encode_body, normalise_arguments
from carrot.models import MessageLog, OutboxEntry
from carrot.outbox import NOT_PUBLISHED_PREFIX, insert_with_outbox, outgoing, relays
from carrot.registry import registry

logger = logging.getLogger(__name__)

# MessageLog.exception of a row the worker refused before running anything.
REJECTED_PREFIX = "Message rejected: "


def _check_priority(priority: Any, queue: QueueConfig) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ValueError(f"priority must be an integer, got {priority!r}.")
    if not 0 <= priority <= queue.max_priority:
        raise ValueError(
            f"priority {priority} is out of range: queue {queue.name!r} accepts priorities "
            f"from 0 to {queue.max_priority} (higher runs first)."
        )
    return priority


@dataclass
class Prepared:
    """A validated, encoded task call and its (unsaved) MessageLog."""

    log: MessageLog
    body: bytes
    queue: QueueConfig
    config: CarrotConfig

    def publish(self) -> None:
        """Publish with confirms; raise BrokerError if the broker does not take it."""
        log = self.log
        # Through the default exchange an empty routing key reaches no queue; rows written
        # without one (by hand, by older versions) go to their queue.
        routing_key = log.routing_key if (log.routing_key or log.exchange) else None
        delay, headers = None, None
        if log.eta is not None:
            delay = (log.eta - timezone.now()).total_seconds()
            headers = {ETA_HEADER: int(log.eta.timestamp() * 1000)}
        publisher.publish(
            self.queue,
            self.config,
            body=self.body,
            message_id=str(log.uuid),
            task=log.task,
            priority=log.priority,
            exchange=log.exchange,
            routing_key=routing_key,
            headers=headers,
            delay=delay,
        )


def prepare(
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
    **fields: Any,
) -> Prepared:
    """Validate and encode a call of ``task_name``; return it with an unsaved MessageLog.

    Raises TaskNotRegistered, UnknownQueue, ValueError (priority), TypeError (arguments
    that are not JSON) and MessageTooLarge.
    """
    if task_name not in registry:
        raise TaskNotRegistered(task_name)
    config = get_config()
    queue_config = queue_config or config.queue(queue)
    priority = _check_priority(priority, queue_config)
    norm_args, norm_kwargs = normalise_arguments(args, kwargs, who=who)
    body = encode_body(norm_args, norm_kwargs, max_bytes=config.max_message_bytes)
    log = MessageLog(
        task=task_name,
        queue=queue_config.name,
        exchange=exchange or "",
        routing_key=queue_config.name if routing_key is None else routing_key,
        priority=priority,
        task_args=norm_args,
        task_kwargs=norm_kwargs,
        publish_time=timezone.now(),
        **fields,
    )
    return Prepared(log, body, queue_config, config)


def _keep_in_outbox(prepared: Prepared, exc: BrokerError) -> None:
    """An uncertain publish: the sweeper publishes it again unless a worker ran it."""
    logger.warning("%s It stays in the outbox and is published again if no worker ran it.", exc)
    OutboxEntry.objects.get_or_create(
        message_id=prepared.log.pk, defaults={"last_error": str(exc)[:2000]}
    )


def _publish_or_fail(prepared: Prepared) -> None:
    try:
        prepared.publish()
    except PublishUncertain as exc:
        _keep_in_outbox(prepared, exc)
    except BrokerError as exc:
        # The row says what happened, so nothing is silently lost.
        log = prepared.log
        reason = f"{NOT_PUBLISHED_PREFIX}{exc}"
        MessageLog.objects.filter(pk=log.pk).mark_failed(
            exception=reason, from_statuses=(MessageLog.PUBLISHED,)
        )
        log.status, log.exception = MessageLog.FAILED, reason
        raise


def _publish_after_commit(prepared: Prepared, using: str) -> None:
    # Inside an atomic block a worker could otherwise consume the message before the row
    # (and whatever the caller wrote with it) is committed.
    if transaction.get_connection(using).in_atomic_block:
        transaction.on_commit(partial(_publish_or_fail, prepared), using=using)
    else:
        _publish_or_fail(prepared)


def _hand_over(items: list[Prepared]) -> None:
    """Give committed outbox rows to the relay; if it cannot publish, fail them and raise."""
    first = items[0]
    relay = relays.get(first.queue, first.config)
    try:
        relay.ensure_ready(first.config.connect_timeout)
    except BrokerError as exc:
        reason = f"{NOT_PUBLISHED_PREFIX}{exc}"
        ids = [p.log.pk for p in items]
        MessageLog.objects.filter(pk__in=ids).mark_failed(
            exception=reason, from_statuses=(MessageLog.PUBLISHED,)
        )
        OutboxEntry.objects.filter(pk__in=ids).delete()
        for p in items:
            p.log.status, p.log.exception = MessageLog.FAILED, reason
        raise
    relay.submit([outgoing(p) for p in items])


def _save_and_hand_over(items: list[Prepared]) -> None:
    using = router.db_for_write(MessageLog)
    in_atomic = transaction.get_connection(using).in_atomic_block
    with transaction.atomic(using=using):
        insert_with_outbox([p.log for p in items], using)
    if in_atomic:
        # Handed over when the caller's transaction commits; a rollback takes the rows
        # and their outbox entries with it, so nothing is published.
        transaction.on_commit(partial(_hand_over, items), using=using)
    else:
        _hand_over(items)


def enqueue(task_name: str, args: Any = None, kwargs: Any = None, **options: Any) -> MessageLog:
    """Record a call of ``task_name`` and publish it; return the MessageLog.

    Takes ``prepare()``'s options. Raises what ``prepare()`` raises, and BrokerError when
    the broker cannot take the message now (the row is then FAILED with the reason).
    """
    prepared = prepare(task_name, args, kwargs, **options)
    if prepared.log.exchange:
        # A custom exchange may not route the message: publish now and wait for the
        # confirm, so an unroutable message raises in the caller.
        using = router.db_for_write(MessageLog)
        prepared.log.save(using=using, force_insert=True)
        _publish_after_commit(prepared, using)
    else:
        _save_and_hand_over([prepared])
    return prepared.log


def enqueue_many(task_name: str, calls: Any, **options: Any) -> list[MessageLog]:
    """Record many calls of one task in bulk and publish them; return their MessageLogs.

    ``calls`` yields ``(args, kwargs)`` pairs. Every call is validated before anything is
    written; rows and outbox entries are inserted in one transaction.
    """
    prepared = []
    for index, call in enumerate(calls):
        try:
            args, kwargs = call
        except (TypeError, ValueError):
            raise TypeError(
                f"delay_many(): item {index} must be an (args, kwargs) pair, got {call!r}."
            ) from None
        prepared.append(prepare(task_name, args, kwargs, **options))
    if prepared:
        _save_and_hand_over(prepared)
    return [p.log for p in prepared]


# ------------------------------------------------------------------ requeue


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
            eta=None,
            publish_time=timezone.now(),
        )
    )
    if not changed:
        current = MessageLog.objects.using(using).filter(pk=log.pk).values_list("status", flat=True)
        state = current[0] if current else "deleted"
        raise NotRequeueable(f"Only failed tasks can be requeued; {log.uuid} is {state}.")
    log.refresh_from_db(using=using)
    _publish_after_commit(Prepared(log, body, queue_config, config), using)
    return log
