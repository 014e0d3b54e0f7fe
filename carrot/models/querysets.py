"""MessageLog queries: the monitor's filters, and the lifecycle transitions as UPDATEs.

``apply()`` runs a transition through the ORM on any queryset; ``apply_each()`` and
``claim_many()`` are the worker's batched SQL for the same transitions (one statement
for many rows, on the hot path of every task). Both are built from ``lifecycle``.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import connections, models, router, transaction
from django.db.models import F
from django.utils import timezone

from carrot.models.history import ArchiveAttempt, archive_sql
from carrot.models.lifecycle import (
    CLAIM,
    COMPLETE,
    COMPLETED,
    FAIL,
    FAILED,
    FINISHED,
    IN_PROGRESS,
    NOW,
    PLUS_ONE,
    PUBLISHED,
    RESUME,
    RETRY,
    Archive,
    Transition,
)

if TYPE_CHECKING:
    from carrot.models.messagelog import MessageLog  # noqa: F401  (the QuerySet's type)

# One row of ``apply_each``: (primary key, the attempt it must still be at, parameters).
RowValues = tuple[int, int, dict[str, Any]]
_PLAIN_SQL = ("sqlite", "postgresql")  # UPDATE ... RETURNING, and the placeholders used


class MessageLogQuerySet(models.QuerySet["MessageLog"]):
    """Filters for the monitor and the lifecycle's conditional transitions."""

    def queued(self) -> MessageLogQuerySet:
        return self.filter(status=PUBLISHED)

    def in_progress(self) -> MessageLogQuerySet:
        return self.filter(status=IN_PROGRESS)

    def failed(self) -> MessageLogQuerySet:
        return self.filter(status=FAILED)

    def completed(self) -> MessageLogQuerySet:
        return self.filter(status=COMPLETED)

    def finished(self) -> MessageLogQuerySet:
        return self.filter(status__in=FINISHED)

    # ------------------------------------------------------------------ transitions

    def apply(self, transition: Transition, **values: Any) -> int:
        """Move the rows of this queryset that are in the transition's sources; return how
        many moved."""
        now = timezone.now()
        given = transition.changes(values)
        changes: dict[str, Any] = {}
        for name, value in given.items():
            if value is NOW:
                value = now
            elif value is PLUS_ONE:
                value = F(name) + 1
            elif isinstance(value, Archive):
                value = ArchiveAttempt(value, given)
            changes[name] = value
        return self.filter(status__in=transition.sources).update(**changes)

    def mark_started(self, *, worker: str, interrupted: bool = False) -> int:
        """Claim PUBLISHED rows (or, after an interrupted attempt, IN_PROGRESS rows)."""
        return self.apply(RESUME if interrupted else CLAIM, worker=worker[:255])

    def mark_completed(self, *, output: Any = None, log: list[dict[str, Any]] | None = None) -> int:
        return self.apply(COMPLETE, output=output, log=log or [])

    def mark_failed(
        self,
        *,
        exception: str,
        traceback: str = "",
        log: list[dict[str, Any]] | None = None,
        exception_type: str = "",
    ) -> int:
        return self.apply(
            FAIL,
            exception=exception,
            exception_type=exception_type,
            traceback=traceback,
            log=log or [],
        )

    def mark_retrying(
        self,
        *,
        eta: datetime,
        exception: str,
        traceback: str,
        log: list[dict[str, Any]],
        exception_type: str = "",
    ) -> int:
        return self.apply(
            RETRY,
            eta=eta,
            exception=exception,
            exception_type=exception_type,
            traceback=traceback,
            log=log,
        )

    # ------------------------------------------------------------------ batched SQL

    def _sql_target(self) -> tuple[Any, Any, Any]:
        using = router.db_for_write(self.model)
        conn = connections[using]
        return using, conn, self.model._meta

    def _sql_set(self, transition: Transition, conn: Any) -> tuple[str, list[str]]:
        """Return the SET clause of a transition and the columns it takes parameters for."""
        opts, q = self.model._meta, conn.ops.quote_name
        parts, columns = [], []
        for name, value in transition.changes(dict.fromkeys(transition.params)).items():
            field = opts.get_field(name)
            assert isinstance(field, models.Field)
            column = q(field.column)
            if value is PLUS_ONE:
                parts.append(f"{column} = {column} + 1")
            elif isinstance(value, Archive):
                sql, names = archive_sql(value, conn.vendor, q)
                parts.append(f"{column} = {sql}")
                columns.extend(names)
            else:
                parts.append(f"{column} = %s")
                columns.append(name)
        return ", ".join(parts), columns

    def _sql_params(
        self, transition: Transition, columns: list[str], values: dict[str, Any], conn: Any
    ) -> list[Any]:
        opts, now = self.model._meta, timezone.now()
        changes = transition.changes(values)
        out = []
        for name in columns:
            value = now if changes[name] is NOW else changes[name]
            field = opts.get_field(name)
            assert isinstance(field, models.Field)
            out.append(field.get_db_prep_save(value, conn))
        return out

    def apply_each(self, transition: Transition, rows: Sequence[RowValues]) -> None:
        """Apply a transition to many rows in one statement, each only while its row is
        still at the given attempt (a later attempt's outcome is never overwritten)."""
        if not rows:
            return
        _, conn, opts = self._sql_target()
        q = conn.ops.quote_name
        assignments, columns = self._sql_set(transition, conn)
        sources = ", ".join(["%s"] * len(transition.sources))
        sql = (
            f"UPDATE {q(opts.db_table)} SET {assignments} WHERE {q('id')} = %s "  # noqa: S608
            f"AND {q('attempts')} = %s AND {q('status')} IN ({sources})"
        )
        params = [
            [*self._sql_params(transition, columns, values, conn), pk, attempt, *transition.sources]
            for pk, attempt, values in rows
        ]
        with conn.cursor() as cursor:
            cursor.executemany(sql, params)

    def claim_many(self, message_ids: Sequence[str], worker: str) -> list[tuple[int, str, int]]:
        """Claim the PUBLISHED rows of many messages in one statement.

        Returns (primary key, message id as given, attempt) for each row claimed; a message
        id missing from the result (a redelivery, a foreign message) needs a closer look.
        """
        if not message_ids:
            return []
        using, conn, opts = self._sql_target()
        given = {uuidlib.UUID(m): m for m in message_ids}
        if conn.vendor not in _PLAIN_SQL:  # no UPDATE ... RETURNING: lock, then update
            with transaction.atomic(using=using):
                found = list(
                    self.select_for_update()
                    .filter(uuid__in=list(given), status__in=CLAIM.sources)
                    .values_list("id", "uuid", "attempts")
                )
                self.filter(id__in=[r[0] for r in found]).apply(CLAIM, worker=worker[:255])
            return [(pk, given[u], attempts + 1) for pk, u, attempts in found]
        q = conn.ops.quote_name
        uuid_field = opts.get_field("uuid")
        ids = [uuid_field.get_db_prep_value(u, conn) for u in given]
        assignments, columns = self._sql_set(CLAIM, conn)
        sql = (
            f"UPDATE {q(opts.db_table)} SET {assignments} "  # noqa: S608
            f"WHERE {q('uuid')} IN ({', '.join(['%s'] * len(ids))}) AND {q('status')} = %s "
            f"RETURNING {q('id')}, {q('uuid')}, {q('attempts')}"
        )
        values = self._sql_params(CLAIM, columns, {"worker": worker[:255]}, conn)
        with conn.cursor() as cursor:
            cursor.execute(sql, [*values, *ids, *CLAIM.sources])
            rows = cursor.fetchall()
        # Keyed by the ids as the caller gave them (a message id may be a UUID in another
        # spelling: upper case, no dashes), so the caller's lookups find its claims.
        return [(pk, given[uuidlib.UUID(str(u))], attempts) for pk, u, attempts in rows]
