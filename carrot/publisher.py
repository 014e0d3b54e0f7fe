"""Tracked publishing: write the MessageLog row first, then publish after commit.

Two ways a row reaches the broker:

- ``enqueue()`` (``delay()``): publish after commit and wait for the confirm; a failure
  raises in the caller and marks the row FAILED.
- The outbox: the row is written with an ``OutboxEntry`` in one transaction (the
  scheduler does this when it claims a tick); after commit it is published and the
  entry deleted. An entry left behind (process died, broker down) is published by
  ``sweep_outbox()``, so the row's fate never depends on one process surviving.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
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
from carrot.registry import registry

logger = logging.getLogger(__name__)

# MessageLog.exception of a row the worker refused before running anything.
REJECTED_PREFIX = "Message rejected: "
NOT_PUBLISHED_PREFIX = "Not published: "
# An outbox entry younger than this may still be published by the process that wrote it.
OUTBOX_GRACE = timedelta(seconds=30)
OUTBOX_LEASE = timedelta(seconds=60)


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


def enqueue(task_name: str, args: Any = None, kwargs: Any = None, **options: Any) -> MessageLog:
    """Record a call of ``task_name`` and publish it; return the MessageLog.

    Takes ``prepare()``'s options. Raises what ``prepare()`` raises, and BrokerError when
    the broker does not take the message (the row is then FAILED with the reason).
    """
    prepared = prepare(task_name, args, kwargs, **options)
    using = router.db_for_write(MessageLog)
    prepared.log.save(using=using, force_insert=True)
    _publish_after_commit(prepared, using)
    return prepared.log


def enqueue_many(task_name: str, calls: Any, **options: Any) -> list[MessageLog]:
    """Record many calls of one task in bulk and publish them; return their MessageLogs.

    ``calls`` yields ``(args, kwargs)`` pairs. Every call is validated before anything is
    written. Inside a transaction the messages are published after the commit.
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
    using = router.db_for_write(MessageLog)
    MessageLog.objects.using(using).bulk_create([p.log for p in prepared], batch_size=500)
    if transaction.get_connection(using).in_atomic_block:
        transaction.on_commit(partial(_publish_all, prepared), using=using)
    else:
        _publish_all(prepared)
    return [p.log for p in prepared]


def _publish_all(prepared: list[Prepared]) -> None:
    for index, item in enumerate(prepared):
        try:
            item.publish()
        except BrokerError as exc:
            start = index
            if isinstance(exc, PublishUncertain):
                _keep_in_outbox(item, exc)
                start = index + 1
            reason = f"{NOT_PUBLISHED_PREFIX}{exc}"
            pks = [p.log.pk for p in prepared[start:]]
            MessageLog.objects.filter(pk__in=pks).mark_failed(
                exception=reason, from_statuses=(MessageLog.PUBLISHED,)
            )
            raise


# ------------------------------------------------------------------ the outbox


def save_with_outbox(prepared: Prepared) -> None:
    """Save the row with an outbox entry; call inside the transaction that decides it."""
    prepared.log.save(force_insert=True)
    OutboxEntry.objects.create(message=prepared.log)


def publish_outboxed(prepared: Prepared) -> bool:
    """Publish a committed outbox row and drop its entry; on failure leave it for the sweeper."""
    try:
        prepared.publish()
    except BrokerError as exc:
        logger.warning(
            "Could not publish %s %s yet (%s); the outbox sweeper will retry",
            prepared.log.task,
            prepared.log.uuid,
            exc,
        )
        OutboxEntry.objects.filter(pk=prepared.log.pk).update(last_error=str(exc)[:2000])
        return False
    OutboxEntry.objects.filter(pk=prepared.log.pk).delete()
    return True


def sweep_outbox(now: datetime | None = None, *, limit: int = 100) -> int:
    """Publish outbox entries older than the grace period; return how many were sent.

    Each entry is leased with a conditional UPDATE first, so several sweepers (one per
    worker host) never publish the same entry at the same time.
    """
    now = now or timezone.now()
    config = get_config()
    sent = 0
    candidates = (
        OutboxEntry.objects.filter(created_at__lte=now - OUTBOX_GRACE)
        .exclude(lease_until__gt=now)
        .select_related("message")
        .order_by("created_at")[:limit]
    )
    for entry in candidates:
        leased = OutboxEntry.objects.filter(pk=entry.pk, lease_until=entry.lease_until).update(
            lease_until=now + OUTBOX_LEASE, attempts=entry.attempts + 1
        )
        if not leased:
            continue
        log = entry.message
        if log.status != MessageLog.PUBLISHED:
            entry.delete()  # already consumed (the first publish did go through)
            continue
        try:
            queue = config.queue(log.queue)
            body = encode_body(log.positionals, log.keywords, max_bytes=config.max_message_bytes)
        except CarrotError as exc:
            MessageLog.objects.filter(pk=log.pk).mark_failed(
                exception=f"{NOT_PUBLISHED_PREFIX}{exc}", from_statuses=(MessageLog.PUBLISHED,)
            )
            entry.delete()
            continue
        if publish_outboxed(Prepared(log, body, queue, config)):
            sent += 1
            logger.info("Outbox: published %s %s", log.task, log.uuid)
    return sent


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
