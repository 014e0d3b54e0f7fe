"""The one publishing path: hand committed outbox rows to this process's relay, and apply
what RabbitMQ answers to the database.

Every tracked publish comes here once its row and outbox entry are committed: ``delay()``,
``delay_many()``, ``apply_async()``, a custom exchange, a requeue, a scheduled tick,
"run now", a worker's retry, the outbox sweeper. ``outgoing()`` turns a row into the
message (the one place a row's routing, delay and headers are decided); the relay
publishes it with a confirm; a confirm deletes the outbox entry and a refusal marks the
row FAILED ("Not published: ..."), in batches, from a thread of its own.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue as queuelib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django.db import DatabaseError, close_old_connections, connections, router, transaction
from django.utils import timezone

from carrot.broker.outgoing import Outgoing, Receipt
from carrot.broker.relays import relays
from carrot.conf import QueueConfig, get_config
from carrot.exceptions import BrokerError, PublishError
from carrot.messages import ETA_HEADER, encode_body
from carrot.models.lifecycle import NOT_PUBLISHED, not_published
from carrot.models.outbox import OutboxEntry, settle_entries

logger = logging.getLogger(__name__)


def _log_model() -> Any:
    """MessageLog, found through the outbox entry's foreign key (it imports this module)."""
    return OutboxEntry._meta.get_field("message").related_model


@dataclass(frozen=True)
class Entry:
    """A row being published, and the version of its outbox entry (see ``outbox``)."""

    log: Any
    written: datetime


def publishable(log: Any) -> tuple[QueueConfig, bytes]:
    """Return a row's queue and message body; raise CarrotError if it cannot be published
    (its queue is not configured, its arguments are over the size limit)."""
    config = get_config()
    queue = config.queue(log.queue)
    return queue, encode_body(log.positionals, log.keywords, max_bytes=config.max_message_bytes)


def outgoing(
    log: Any,
    written: datetime,
    *,
    body: bytes | None = None,
    queue: QueueConfig | None = None,
) -> Outgoing:
    """Return the message for a saved row whose outbox entry was ``written`` then: its
    body, route, priority and delay.

    ``body`` and ``queue`` save re-encoding the arguments and looking the queue up when
    the caller has them. Raises CarrotError subclasses when the row cannot be published.
    """
    if queue is None or body is None:
        queue, body = publishable(log)
    delay = None
    # The trace context of its publish (carrot.observability.tracing), on every copy.
    headers: dict[str, Any] | None = dict(log.trace_context) if log.trace_context else None
    if log.eta is not None:
        delay = (log.eta - timezone.now()).total_seconds()
        headers = {**(headers or {}), ETA_HEADER: int(log.eta.timestamp() * 1000)}
    return Outgoing(
        message_id=str(log.uuid),
        task=log.task,
        body=body,
        priority=log.priority,
        queue=queue,
        exchange=log.exchange,
        routing_key=log.routing_key,
        headers=headers,
        delay=delay,
        ref=Entry(log, written),
        sink=outbox_sink,
    )


def hand_over(
    items: Sequence[Outgoing], *, fail_fast: bool = False, wait: float | None = None
) -> None:
    """Give committed outbox rows to the relay.

    ``fail_fast`` (delay, requeue): if the relay knows RabbitMQ cannot take them now, mark
    the rows FAILED and raise BrokerError, so the caller learns at once; otherwise they
    wait in the relay and the outbox. ``wait`` (seconds): wait for the confirm and raise
    PublishError if RabbitMQ refuses them (an unroutable message on a custom exchange);
    when no answer comes in time the rows stay in the outbox.
    """
    by_broker: dict[Any, list[Outgoing]] = {}
    for item in items:
        by_broker.setdefault(item.queue.broker.key, []).append(item)
    config = get_config()
    for group in by_broker.values():
        relay = relays.get(group[0].queue.broker, config)
        if fail_fast:
            try:
                relay.ensure_ready(config.connect_timeout, tuple(item.route for item in group))
            except BrokerError as exc:
                _not_published([(item, str(exc)) for item in group])
                raise
        if wait is not None:
            for item in group:
                item.receipt = Receipt()
        relay.submit(group)
    if wait is not None:
        _wait_for(items, wait)


def _wait_for(items: Sequence[Outgoing], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    refused = []
    for item in items:
        assert item.receipt is not None
        if not item.receipt.wait(max(0.0, deadline - time.monotonic())):
            logger.warning(
                "No confirm for %s %s within %gs; it stays in the outbox and is published "
                "again if no worker ran it",
                item.task,
                item.message_id,
                timeout,
            )
        elif item.receipt.refused is not None:
            refused.append((item, item.receipt.refused))
    if refused:
        _not_published(refused)  # now, so the caller sees the row as it is
        raise PublishError(f"{refused[0][1][:1].upper()}{refused[0][1][1:]}.")


def hand_over_after_commit(items: Sequence[Outgoing], using: str, **options: Any) -> None:
    """Hand rows over once the current transaction commits (at once outside one)."""
    if transaction.get_connection(using).in_atomic_block:
        # A worker must not see the message before the row (and whatever the caller
        # wrote with it) is committed; a rollback takes the rows and entries with it.
        transaction.on_commit(partial(hand_over, items, **options), using=using)
    else:
        hand_over(items, **options)


def _refuse(entries: Sequence[tuple[Entry, str]], using: str | None = None) -> None:
    """Mark rows RabbitMQ refused FAILED with the reason, unless they were published again
    since (their entry is newer); drop their entries."""
    model = _log_model()
    using = using or router.db_for_write(model)
    for entry, reason in entries:
        pk = entry.log.pk
        if settle_entries([(pk, entry.written)], using):
            exception = not_published(reason)
            model.objects.using(using).filter(pk=pk).apply(NOT_PUBLISHED, exception=exception)


def _not_published(refused: Sequence[tuple[Outgoing, str]]) -> None:
    """Refuse rows now, in the caller's thread, and update the caller's objects."""
    _refuse([(item.ref, reason) for item, reason in refused])
    for item, reason in refused:
        item.ref.log.status = NOT_PUBLISHED.target
        item.ref.log.exception = not_published(reason)


class _OutboxSink:
    """Apply relay confirms and refusals to the database in batches, from its own thread.

    The relay calls it on its I/O thread, which must not wait for the database.
    """

    BATCH = 1000
    GATHER = 0.1  # seconds: fewer, larger transactions contend less with delay()'s inserts

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # Also in a forked child: the parent's thread and queue are not the child's.
        self._queue: queuelib.SimpleQueue[tuple[list[Entry], list[tuple[Entry, str]]]]
        self._queue = queuelib.SimpleQueue()
        self._idle = threading.Condition()
        self._outstanding = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def confirmed(self, items: list[Outgoing]) -> None:
        self._put(([item.ref for item in items], []))

    def refused(self, items: list[tuple[Outgoing, str]]) -> None:
        for item, reason in items:
            logger.error("Task %s %s was not published: %s", item.task, item.message_id, reason)
        self._put(([], [(item.ref, reason) for item, reason in items]))

    def _put(self, work: tuple[list[Entry], list[tuple[Entry, str]]]) -> None:
        with self._idle:
            self._outstanding += 1
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="carrot-outbox", daemon=True)
                self._thread.start()
        self._queue.put(work)

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout)

    def _gather(self) -> list[tuple[list[Entry], list[tuple[Entry, str]]]]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + self.GATHER
        while len(batch) < self.BATCH:
            try:
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queuelib.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._gather()
            confirmed = [e for entries, _ in batch for e in entries]
            refused = [r for _, items in batch for r in items]
            try:
                close_old_connections()
                using = router.db_for_write(OutboxEntry)
                settle_entries([(e.log.pk, e.written) for e in confirmed], using)
                _refuse(refused, using)
            except DatabaseError as exc:
                # The entries stay; the sweeper publishes them again and workers skip a
                # copy whose task already ran.
                logger.warning("Could not clear %d outbox entries: %s", len(confirmed), exc)
            if self._queue.empty():
                # Idle: let go of this thread's connection (a database can then be dropped
                # or restarted without a session held open by a background thread).
                connections.close_all()
            with self._idle:
                self._outstanding -= len(batch)
                self._idle.notify_all()


outbox_sink = _OutboxSink()


def flush(timeout: float = 10.0) -> bool:
    """Wait until this process's relays have published everything and the outbox is tidy."""
    ok = relays.flush(timeout)
    return outbox_sink.wait_idle(timeout) and ok


@atexit.register
def _flush_at_exit() -> None:
    # Registered after the relays' own hook, so it runs first: publish, then tidy up.
    if relays.all():
        flush(5.0)
