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
from carrot.publishing import unique
from carrot.publishing.calls import Prepared, prepare


def publish(items: Sequence[Prepared]) -> list[MessageLog]:
    """Insert prepared calls with their outbox entries and hand them over after commit
    (inside one PRODUCER span when tracing is on); return their rows in order.

    A unique task's call whose key a queued or running row holds is not inserted: its
    place in the result is that row (``unique``).
    """
    with tracing.publishing([p.log for p in items]):
        using = router.db_for_write(MessageLog)
        rows = [p.log for p in items]
        fresh: list[tuple[Prepared, Any]] = []
        with transaction.atomic(using=using):
            plain = [p for p in items if p.log.unique_key is None]
            if plain:
                written = insert_with_entries([p.log for p in plain], using)
                fresh.extend((p, written) for p in plain)
            for index, p in enumerate(items):
                if p.log.unique_key is not None:
                    rows[index], entry = unique.insert(p.log, using)
                    if entry is not None:
                        fresh.append((p, entry))
        custom_exchange = any(p.log.exchange for p, _ in fresh)
        hand_over_after_commit(
            [outgoing(p.log, w, body=p.body, queue=p.queue) for p, w in fresh],
            using,
            fail_fast=True,
            wait=get_config().publish_timeout if custom_exchange else None,
        )
    return rows


def enqueue(task_name: str, args: Any = None, kwargs: Any = None, **options: Any) -> MessageLog:
    """Record a call of ``task_name`` and publish it; return the MessageLog.

    Takes ``prepare()``'s options; raises what ``prepare()`` raises, and BrokerError when
    RabbitMQ cannot take the message now (the row is then FAILED with the reason).
    """
    return publish([prepare(task_name, args, kwargs, **options)])[0]


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
    return publish(prepared) if prepared else []
