"""The outbox: a MessageLog row is committed with an ``OutboxEntry``, and the entry is
deleted when RabbitMQ confirms the message (``carrot.models.handover``).

Every tracked publish writes its row change and its entry in one transaction, so a
committed task's message is never lost between the commit and the publish: an entry left
behind (the process died, the broker was down, the confirm never came) is published
again by any worker's outbox sweeper (``carrot.publishing.sweeper``).

A row may be published again before the confirm of its previous publish was applied (a
task that fails and retries within milliseconds). The entry's ``created_at`` is its
version: writing an entry for a row replaces any older one, and a confirm deletes the
entry only if it is still the version that was published.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connections, models
from django.utils import timezone


class OutboxEntry(models.Model):
    """A MessageLog that is committed but whose publish is not confirmed yet."""

    message = models.OneToOneField(
        "carrot.MessageLog", on_delete=models.CASCADE, primary_key=True, related_name="outbox"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"outbox {self.message_id}"


def _prep_written(written: datetime, conn: Any) -> Any:
    return OutboxEntry._meta.get_field("created_at").get_db_prep_save(written, conn)


def add_entries(log_ids: Sequence[int], using: str, *, replace: bool = True) -> datetime:
    """Write outbox entries for rows that exist, replacing older ones; call inside the
    transaction that changes the rows. Return the entries' version (``created_at``)."""
    written = timezone.now()
    conn = connections[using]
    upsert = replace and conn.vendor in _RETURNING_VENDORS
    if replace and not upsert:
        OutboxEntry.objects.using(using).filter(pk__in=log_ids).delete()
    sql = _entry_sql(conn, upsert)
    prepped = _prep_written(written, conn)
    with conn.cursor() as cursor:
        if len(log_ids) == 1:
            cursor.execute(sql, [log_ids[0], prepped])
        else:
            cursor.executemany(sql, [(pk, prepped) for pk in log_ids])
    return written


def _entry_sql(conn: Any, upsert: bool) -> str:
    key = (conn.vendor, "upsert" if upsert else "insert")
    sql = _ENTRY_SQL.get(key)
    if sql is None:
        q = conn.ops.quote_name
        sql = (
            f"INSERT INTO {q(OutboxEntry._meta.db_table)} ({q('message_id')}, "  # noqa: S608
            f"{q('created_at')}, {q('attempts')}, {q('last_error')}) VALUES (%s, %s, 0, '')"
        )
        if upsert:
            sql += (
                f" ON CONFLICT ({q('message_id')}) DO UPDATE SET {q('created_at')} = "
                f"EXCLUDED.{q('created_at')}, {q('attempts')} = 0, {q('last_error')} = '', "
                f"{q('lease_until')} = NULL"
            )
        _ENTRY_SQL[key] = sql
    return sql


def settle_entries(versions: Sequence[tuple[int, datetime]], using: str) -> int:
    """Delete the entries still at the given versions (their publish is settled); return
    how many were deleted. A newer entry of the same row is kept."""
    conn = connections[using]
    deleted = 0
    if conn.vendor in _RETURNING_VENDORS:  # row values: (message_id, created_at) IN (...)
        q = conn.ops.quote_name
        for start in range(0, len(versions), 2000):  # under SQLite's variable limit
            chunk = versions[start : start + 2000]
            sql = (
                f"DELETE FROM {q(OutboxEntry._meta.db_table)} WHERE "  # noqa: S608
                f"({q('message_id')}, {q('created_at')}) IN "
                f"(VALUES {', '.join(['(%s, %s)'] * len(chunk))})"
            )
            params = [v for pk, written in chunk for v in (pk, _prep_written(written, conn))]
            with conn.cursor() as cursor:
                cursor.execute(sql, params)
                deleted += cursor.rowcount
        return deleted
    entries = OutboxEntry.objects.using(using)
    for pk, written in versions:
        deleted += entries.filter(pk=pk, created_at=written).delete()[0]
    return deleted


def insert_with_entries(logs: Sequence[Any], using: str) -> datetime:
    """Insert new MessageLog rows and their outbox entries; call inside a transaction.

    The hot path of ``delay()`` and ``delay_many()``: prepared multi-row INSERTs with
    ``RETURNING``, then the entries on the same connection. The ORM's ``bulk_create``
    costs several times more in query compilation than the inserts themselves; databases
    without a multi-row ``RETURNING`` still use it.
    """
    conn = connections[using]
    model = type(logs[0])
    if conn.vendor not in _RETURNING_VENDORS:
        # bulk_create sets the ids only where the database returns them (not MySQL).
        if conn.features.can_return_rows_from_bulk_insert:
            model.objects.using(using).bulk_create(logs, batch_size=500)
        else:
            for log in logs:
                log.save(using=using, force_insert=True)
        return add_entries([log.pk for log in logs], using, replace=False)
    columns = _insert_columns(model)
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
            cursor.execute(_insert_sql(model, conn, len(batch)), params)
            # Both databases return the rows of a multi-row VALUES in the order given
            # (Django's bulk_create relies on the same).
            ids = [r[0] for r in cursor.fetchall()]
            if len(ids) != len(batch):
                raise DatabaseError(f"INSERT returned {len(ids)} ids for {len(batch)} rows")
            for log, pk in zip(batch, ids, strict=True):
                log.pk = pk
                log._state.adding, log._state.db = False, using
    return add_entries([log.pk for log in logs], using, replace=False)


# Databases whose INSERT ... RETURNING gives ids for many rows, with their limit on the
# number of parameters in one statement (SQLite >= 3.32: 32766; PostgreSQL: 65535).
_RETURNING_VENDORS = {"sqlite": 32766, "postgresql": 65535}
_MAX_ROWS = 500
_PLAIN_FIELDS = (models.CharField, models.IntegerField, models.BooleanField, models.ForeignKey)
_COLUMNS: dict[Any, list[tuple[str, Any]]] = {}
_INSERT_SQL: dict[tuple[str, int], str] = {}
_ENTRY_SQL: dict[tuple[str, str], str] = {}


def _insert_columns(model: Any) -> list[tuple[str, Any]]:
    """Return, per column, its attname and the field that converts its value (None for
    values the driver takes as they are)."""
    columns = _COLUMNS.get(model)
    if columns is None:
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        columns = _COLUMNS[model] = [
            (f.attname, None if isinstance(f, _PLAIN_FIELDS) else f) for f in fields
        ]
    return columns


def _insert_sql(model: Any, conn: Any, rows: int) -> str:
    """Return the INSERT of ``rows`` rows, returning their ids."""
    key = (conn.vendor, rows)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        opts = model._meta
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
