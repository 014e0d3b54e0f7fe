"""Publish task calls: ``delay()``, ``apply_async()``, ``delay_many()``, ``carrot_send``,
the seed's ``publish_message`` and the scheduler all come here.

The rows and their outbox entries are inserted in one transaction (the caller's, when
there is one) and handed to the relay once it commits. If the relay knows RabbitMQ cannot
take messages now, the call raises BrokerUnavailable and the rows are FAILED ("Not
published: ..."). A call to a custom exchange waits for RabbitMQ's confirm, so an
unroutable message raises PublishError in the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import router, transaction

from carrot.conf import get_config
from carrot.models import MessageLog
from carrot.models.handover import hand_over_after_commit, outgoing
from carrot.models.outbox import insert_with_entries
from carrot.observability import tracing
from carrot.publishing.calls import Prepared, prepare


def publish(items: Sequence[Prepared]) -> None:
    """Insert prepared calls with their outbox entries and hand them over after commit
    (inside one PRODUCER span when tracing is on)."""
    with tracing.publishing([p.log for p in items]):
        using = router.db_for_write(MessageLog)
        with transaction.atomic(using=using):
            written = insert_with_entries([p.log for p in items], using)
        custom_exchange = any(p.log.exchange for p in items)
        hand_over_after_commit(
            [outgoing(p.log, written, body=p.body, queue=p.queue) for p in items],
            using,
            fail_fast=True,
            wait=get_config().publish_timeout if custom_exchange else None,
        )


def enqueue(task_name: str, args: Any = None, kwargs: Any = None, **options: Any) -> MessageLog:
    """Record a call of ``task_name`` and publish it; return the MessageLog.

    Takes ``prepare()``'s options; raises what ``prepare()`` raises, and BrokerError when
    RabbitMQ cannot take the message now (the row is then FAILED with the reason).
    """
    prepared = prepare(task_name, args, kwargs, **options)
    publish([prepared])
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
        publish(prepared)
    return [p.log for p in prepared]
