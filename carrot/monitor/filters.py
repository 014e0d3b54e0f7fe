"""The task lists' filters (search, queue, task) and keyset pagination."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import BadRequest
from django.db.models import Q, QuerySet

from carrot.models import MessageLog

PAGE_SIZE = 50
CURSOR = re.compile(r"[0-9]{1,18}")  # ASCII digits only, and within a BIGINT


@dataclass
class Filters:
    q: str = ""
    queue: str = ""
    task: str = ""

    @classmethod
    def from_request(cls, data: Any) -> Filters:
        """Read the filters of a list's query; BadRequest (400) for a NUL character."""
        values = {
            key: str(data.get(key, "")).strip()[:limit]
            for key, limit in (("q", 200), ("queue", 255), ("task", 255))
        }
        for key, value in values.items():
            if "\x00" in value:
                raise BadRequest(f"The filter {key!r} contains a NUL character.")
        return cls(**values)

    def apply(self, qs: QuerySet[MessageLog]) -> QuerySet[MessageLog]:
        if self.queue:
            qs = qs.filter(queue=self.queue)
        if self.task:
            qs = qs.filter(task=self.task)
        if self.q:
            try:
                return qs.filter(uuid=uuid.UUID(self.q))
            except ValueError:
                pass
            # The masked copy of the arguments: a search never matches inside a secret.
            qs = qs.filter(Q(task__icontains=self.q) | Q(search_text__icontains=self.q))
        return qs

    def query(self, **extra: Any) -> str:
        params = {
            k: v
            for k, v in (("q", self.q), ("queue", self.queue), ("task", self.task), *extra.items())
            if v
        }
        return urlencode(params)

    @property
    def active(self) -> bool:
        return bool(self.q or self.queue or self.task)


def cursor(value: str, name: str) -> int | None:
    """Return a page cursor (a row id), None when absent; BadRequest (400) otherwise."""
    if not value:
        return None
    if not CURSOR.fullmatch(value):
        raise BadRequest(f"{name!r} must be a row id (up to 18 digits 0-9).")
    return int(value)


def page(qs: QuerySet[MessageLog], before: str, after: str) -> tuple[list[MessageLog], Any, Any]:
    """Keyset pagination on id (newest first): return rows, newer cursor, older cursor."""
    newer_than, older_than = cursor(after, "after"), cursor(before, "before")
    if newer_than is not None:
        rows = list(qs.filter(id__gt=newer_than).order_by("id")[: PAGE_SIZE + 1])
        has_more_newer = len(rows) > PAGE_SIZE
        rows = list(reversed(rows[:PAGE_SIZE]))
        newer = rows[0].id if rows and has_more_newer else None
        older = rows[-1].id if rows and qs.filter(id__lt=rows[-1].id).exists() else None
        return rows, newer, older
    if older_than is not None:
        qs = qs.filter(id__lt=older_than)
    rows = list(qs.order_by("-id")[: PAGE_SIZE + 1])
    older = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
    rows = rows[:PAGE_SIZE]
    newer = rows[0].id if rows and older_than is not None else None
    return rows, newer, older
