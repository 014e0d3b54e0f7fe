"""The task lists' filters (search, queue, task) and keyset pagination."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

from carrot.models import MessageLog

PAGE_SIZE = 50


@dataclass
class Filters:
    q: str = ""
    queue: str = ""
    task: str = ""

    @classmethod
    def from_request(cls, data: Any) -> Filters:
        return cls(
            q=str(data.get("q", "")).strip()[:200],
            queue=str(data.get("queue", "")).strip()[:255],
            task=str(data.get("task", "")).strip()[:255],
        )

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
            qs = qs.annotate(
                args_text=Cast("task_args", TextField()),
                kwargs_text=Cast("task_kwargs", TextField()),
            ).filter(
                Q(task__icontains=self.q)
                | Q(args_text__icontains=self.q)
                | Q(kwargs_text__icontains=self.q)
            )
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


def page(qs: QuerySet[MessageLog], before: str, after: str) -> tuple[list[MessageLog], Any, Any]:
    """Keyset pagination on id (newest first): return rows, newer cursor, older cursor."""
    if after.isdigit():
        rows = list(qs.filter(id__gt=int(after)).order_by("id")[: PAGE_SIZE + 1])
        has_more_newer = len(rows) > PAGE_SIZE
        rows = list(reversed(rows[:PAGE_SIZE]))
        newer = rows[0].id if rows and has_more_newer else None
        older = rows[-1].id if rows and qs.filter(id__lt=rows[-1].id).exists() else None
        return rows, newer, older
    if before.isdigit():
        qs = qs.filter(id__lt=int(before))
    rows = list(qs.order_by("-id")[: PAGE_SIZE + 1])
    older = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
    rows = rows[:PAGE_SIZE]
    newer = rows[0].id if rows and before.isdigit() else None
    return rows, newer, older
