"""The outbox: MessageLog rows that are committed but whose publish is not confirmed yet.

A row is written together with its ``OutboxEntry`` in one transaction (``delay()`` and
the scheduler do this). The relay publishes it and the entry is deleted when RabbitMQ
confirms; the row is marked FAILED if RabbitMQ refuses it. An entry left behind (the
process died, the broker was down, the connection broke before the confirm) is
published by ``sweep_outbox()``, which every worker runs, so a committed task's fate
never depends on the process that wrote it.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue as queuelib
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, close_old_connections, connections, models
from django.utils import timezone

from carrot.broker.relay import Outgoing, Relay
from carrot.conf import CarrotConfig, QueueConfig, get_config
from carrot.exceptions import BrokerError, CarrotError
from carrot.messages import ETA_HEADER, encode_body
from carrot.models import MessageLog, OutboxEntry

if TYPE_CHECKING:
    from carrot.publisher import Prepared

logger = logging.getLogger(__name__)

NOT_PUBLISHED_PREFIX = "Not published: "
# An entry younger than this may still be published by the process that wrote it.
OUTBOX_GRACE = timedelta(seconds=30)
OUTBOX_LEASE = timedelta(seconds=60)


class _Cleaner:
    """Apply relay confirms to the database in batches, from a thread of its own."""

    BATCH = 1000
    GATHER = 0.1  # seconds

    def __init__(self) -> None:
        self._queue: queuelib.SimpleQueue[tuple[str, Any]] = queuelib.SimpleQueue()
        self._idle = threading.Condition()
        self._outstanding = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="carrot-outbox", daemon=True)
                self._thread.start()

    def confirmed(self, ids: list[int]) -> None:
        self._put(("confirmed", ids))

    def refused(self, items: list[tuple[int, str]]) -> None:
        self._put(("refused", items))

    def _put(self, item: tuple[str, Any]) -> None:
        with self._idle:
            self._outstanding += 1
        self._ensure()
        self._queue.put(item)

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            # Gather for a moment: fewer, larger transactions contend less with the
            # inserts of delay() (on SQLite there is one writer at a time).
            deadline = time.monotonic() + self.GATHER
            while len(batch) < self.BATCH:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queuelib.Empty:
                    break
            confirmed = [i for kind, ids in batch if kind == "confirmed" for i in ids]
            refused = [r for kind, items in batch if kind == "refused" for r in items]
            try:
                close_old_connections()
                for start in range(0, len(confirmed), 5000):  # under SQLite's variable limit
                    OutboxEntry.objects.filter(pk__in=confirmed[start : start + 5000]).delete()
                for log_id, reason in refused:
                    logger.error("Task %s was not published: %s", log_id, reason)
                    MessageLog.objects.filter(pk=log_id).mark_failed(
                        exception=f"{NOT_PUBLISHED_PREFIX}{reason}",
                        from_statuses=(MessageLog.PUBLISHED,),
                    )
                    OutboxEntry.objects.filter(pk=log_id).delete()
            except DatabaseError as exc:
                # The entries stay; the sweeper republishes them and workers skip a copy
                # whose task already ran.
                logger.warning("Could not clear %d outbox entries: %s", len(confirmed), exc)
            if self._queue.empty():
                # Idle: let go of this thread's connection (a database can then be dropped
                # or restarted without a session held open by a background thread).
                connections.close_all()
            with self._idle:
                self._outstanding -= len(batch)
                self._idle.notify_all()


class _Relays:
    """One relay per broker for this process (reset in a forked child)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._relays: dict[Any, Relay] = {}
        self.cleaner = _Cleaner()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._relays = {}
        self.cleaner = _Cleaner()

    def get(self, queue: QueueConfig, config: CarrotConfig) -> Relay:
        broker = queue.broker
        with self._lock:
            relay = self._relays.get(broker.key)
            if relay is None or relay.config is not config:
                if relay is not None:
                    relay.stop(0.1)
                relay = self._relays[broker.key] = Relay(
                    broker,
                    config,
                    on_confirmed=self.cleaner.confirmed,
                    on_refused=self.cleaner.refused,
                )
            return relay

    def all(self) -> list[Relay]:
        with self._lock:
            return list(self._relays.values())

    def stop_all(self, timeout: float = 5.0) -> None:
        """Stop every relay after publishing what it holds (tests, shutdown)."""
        for relay in self.all():
            relay.flush(timeout)
            relay.stop(timeout)
        with self._lock:
            self._relays = {}


relays = _Relays()


def outgoing(prepared: Prepared) -> Outgoing:
    """Return the relay message for a saved row."""
    log = prepared.log
    delay, headers = None, None
    if log.eta is not None:
        delay = (log.eta - timezone.now()).total_seconds()
        headers = {ETA_HEADER: int(log.eta.timestamp() * 1000)}
    assert log.pk is not None
    return Outgoing(
        log_id=log.pk,
        message_id=str(log.uuid),
        task=log.task,
        body=prepared.body,
        priority=log.priority,
        queue=prepared.queue,
        headers=headers,
        delay=delay,
    )


def flush(timeout: float = 10.0) -> bool:
    """Wait until this process's relays have published everything and the outbox is tidy."""
    ok = all(relay.flush(timeout) for relay in relays.all())
    return relays.cleaner.wait_idle(timeout) and ok


@atexit.register
def _flush_at_exit() -> None:
    # A script that calls delay() and exits would otherwise leave its last messages to
    # the sweeper (published 30 s later by a worker).
    if relays.all():
        flush(5.0)


# ------------------------------------------------------------------ writing rows


def insert_with_outbox(logs: list[MessageLog], using: str) -> None:
    """Insert MessageLog rows and their outbox entries; call inside a transaction.

    The hot path of ``delay()`` and ``delay_many()``: prepared multi-row INSERTs with
    ``RETURNING`` and the outbox entries on one cursor. The ORM's ``bulk_create`` costs
    several times more in query compilation than the inserts themselves; other
    databases still use it.
    """
    conn = connections[using]
    q = conn.ops.quote_name
    created = OutboxEntry._meta.get_field("created_at").get_db_prep_save(timezone.now(), conn)
    outbox_sql = (
        f"INSERT INTO {q(OutboxEntry._meta.db_table)} ({q('message_id')}, "  # noqa: S608
        f"{q('created_at')}, {q('attempts')}, {q('last_error')}) VALUES (%s, %s, 0, '')"
    )
    if conn.vendor not in _RETURNING_VENDORS:
        # bulk_create sets the ids only where the database returns them (not MySQL).
        if conn.features.can_return_rows_from_bulk_insert:
            MessageLog.objects.using(using).bulk_create(logs, batch_size=500)
        else:
            for log in logs:
                log.save(using=using, force_insert=True)
        with conn.cursor() as cursor:
            cursor.executemany(outbox_sql, [(log.pk, created) for log in logs])
        return
    columns = _insert_columns()
    per_batch = max(1, min(_MAX_ROWS, _RETURNING_VENDORS[conn.vendor] // len(columns)))
    with conn.cursor() as cursor:
        for start in range(0, len(logs), per_batch):
            batch = logs[start : start + per_batch]
            params: list[Any] = []
            for log in batch:
                row = log.__dict__
                params.extend(
                    row[attname] if field is None else field.get_db_prep_save(row[attname], conn)
                    for attname, field in columns
                )
            cursor.execute(_insert_sql(conn, len(batch)), params)
            # Both databases return the rows of a multi-row VALUES in the order given
            # (Django's bulk_create relies on the same).
            ids = [r[0] for r in cursor.fetchall()]
            if len(ids) != len(batch):
                raise DatabaseError(f"INSERT returned {len(ids)} ids for {len(batch)} rows")
            for log, pk in zip(batch, ids, strict=True):
                log.pk = pk
                log._state.adding, log._state.db = False, using
        if len(logs) == 1:
            cursor.execute(outbox_sql, [logs[0].pk, created])
        else:
            cursor.executemany(outbox_sql, [(log.pk, created) for log in logs])


# Databases whose INSERT ... RETURNING gives ids for many rows, with their limit on the
# number of parameters in one statement (SQLite >= 3.32: 32766; PostgreSQL: 65535).
_RETURNING_VENDORS = {"sqlite": 32766, "postgresql": 65535}
_MAX_ROWS = 500


_PLAIN_FIELDS = (models.CharField, models.IntegerField, models.BooleanField, models.ForeignKey)
_COLUMNS: list[tuple[str, Any]] = []
_INSERT_SQL: dict[tuple[str, int], str] = {}


def _insert_columns() -> list[tuple[str, Any]]:
    """Return, per MessageLog column, its attname and the field that converts its value
    (None for values the driver takes as they are)."""
    if not _COLUMNS:
        fields = [f for f in MessageLog._meta.concrete_fields if not f.primary_key]
        _COLUMNS[:] = [(f.attname, None if isinstance(f, _PLAIN_FIELDS) else f) for f in fields]
    return _COLUMNS


def _insert_sql(conn: Any, rows: int) -> str:
    """Return the INSERT of ``rows`` MessageLog rows, returning their ids."""
    key = (conn.vendor, rows)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        opts = MessageLog._meta
        fields = [f for f in opts.concrete_fields if not f.primary_key]
        q = conn.ops.quote_name
        one = f"({', '.join(['%s'] * len(fields))})"
        sql = (
            f"INSERT INTO {q(opts.db_table)} ({', '.join(q(str(f.column)) for f in fields)}) "  # noqa: S608
            f"VALUES {', '.join([one] * rows)} RETURNING {q(str(opts.pk.column))}"
        )
        if len(_INSERT_SQL) > 64:
            _INSERT_SQL.clear()
        _INSERT_SQL[key] = sql
    return sql


# ------------------------------------------------------------------ synchronous paths


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
    from carrot.publisher import Prepared

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
