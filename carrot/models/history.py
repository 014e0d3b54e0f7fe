"""The attempts of a task: ``MessageLog.attempt_history`` plus the attempt in its columns.

A row's columns (``worker``, ``start_time``, ``exception_type``, ``exception``,
``traceback``) describe its latest attempt. When an attempt is closed and another may
follow (a retry, an interrupted attempt run again, a requeue), the lifecycle's
``Archive`` assignment appends it to ``attempt_history`` in the same UPDATE, computed by
the database from the row, so nothing is read first and a concurrent writer cannot lose
an entry. The worker's hot path (claim, complete, fail) never touches the history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import NotSupportedError
from django.db.models import Expression
from django.utils.dateparse import parse_datetime

from carrot.models.lifecycle import CANCELLED, FAILED, Archive

# The error fields of an attempt, as parameters of a transition and as columns.
ERROR_FIELDS = ("exception_type", "exception", "traceback")
_KEYS = ("worker", "started", *ERROR_FIELDS)


def archive_sql(
    archive: Archive, vendor: str, quote: Callable[[str], str]
) -> tuple[str, list[str]]:
    """Return the SQL of ``history + [current attempt]`` and the parameters it takes (by
    name, from the transition's values)."""
    history, attempts = quote("attempt_history"), quote("attempts")
    values: list[str] = [quote("worker"), quote("start_time")]
    params: list[str] = []
    for name in ERROR_FIELDS:
        if archive.error == "params":
            values.append("CAST(%s AS TEXT)" if vendor == "postgresql" else "%s")
            params.append(name)
        elif archive.error == "columns":
            values.append(quote(name))
        else:
            values.append("''")
    pairs = ", ".join(f"'{key}', {value}" for key, value in zip(_KEYS, values, strict=True))
    if vendor == "postgresql":
        current = f"COALESCE({history}, '[]'::jsonb)"
        appended = f"{current} || jsonb_build_array(jsonb_build_object({pairs}))"
        length = f"jsonb_array_length({current})"
    elif vendor == "sqlite":
        current = f"COALESCE({history}, '[]')"
        appended = f"json_insert({current}, '$[#]', json_object({pairs}))"
        length = f"json_array_length({current})"
    elif vendor == "mysql":
        current = f"COALESCE({history}, JSON_ARRAY())"
        appended = f"JSON_ARRAY_APPEND({current}, '$', JSON_OBJECT({pairs}))"
        length = f"JSON_LENGTH({current})"
    else:
        raise NotSupportedError(
            f"carrot records attempt history with SQL JSON functions that {vendor!r} does not "
            "have; use PostgreSQL, SQLite, MySQL or MariaDB."
        )
    if archive.only_unarchived:
        return f"CASE WHEN {attempts} > {length} THEN {appended} ELSE {history} END", params
    return appended, params


class ArchiveAttempt(Expression):
    """``Archive`` as an ORM expression for ``QuerySet.update()``."""

    def __init__(self, archive: Archive, values: dict[str, Any]) -> None:
        super().__init__()
        self.archive = archive
        self.values = values

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        sql, names = archive_sql(self.archive, connection.vendor, connection.ops.quote_name)
        return sql, tuple(self.values[name] for name in names)


@dataclass(frozen=True)
class Attempt:
    """One attempt at a task: who ran it, when it started, how it failed (if it did)."""

    number: int
    worker: str
    started: datetime | None
    exception_type: str = ""
    exception: str = ""
    traceback: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.exception_type or self.exception)

    @property
    def recorded(self) -> bool:
        """False for an attempt made before carrot kept a history of attempts."""
        return bool(self.worker or self.started)


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        parsed: datetime | None = value
    elif isinstance(value, str) and value:
        parsed = parse_datetime(value)
    else:
        return None
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # stored in UTC (SQLite keeps no offset)
    return parsed


def attempts_of(log: Any) -> list[Attempt]:
    """Return every attempt of a MessageLog, oldest first: the archived ones and the
    latest, still in its columns (its error counts once the row is FAILED).

    A row written before carrot kept a history (or whose history was edited) has fewer
    entries than attempts: the missing ones are listed without worker or time, so there
    are always as many attempts as ``log.attempts``.
    """
    entries = [e if isinstance(e, dict) else {} for e in log.attempt_history or []]
    current = log.attempts > len(entries)
    known = log.attempts - 1 if current else len(entries)
    missing = max(0, known - len(entries))
    out = [Attempt(number=n, worker="", started=None) for n in range(1, missing + 1)]
    for entry in entries:
        out.append(
            Attempt(
                number=len(out) + 1,
                worker=str(entry.get("worker") or ""),
                started=_time(entry.get("started")),
                **{name: str(entry.get(name) or "") for name in ERROR_FIELDS},
            )
        )
    if current:
        failed = log.status in (FAILED, CANCELLED)  # a cancelled run ended with TaskCancelled
        out.append(
            Attempt(
                number=len(out) + 1,
                worker=log.worker,
                started=log.start_time,
                **{name: getattr(log, name) if failed else "" for name in ERROR_FIELDS},
            )
        )
    return out
