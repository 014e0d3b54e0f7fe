"""Cancelling tasks: a queued one never runs, a running one is asked to stop.

A queued row (PUBLISHED, also one waiting in a delay queue for its countdown or retry) moves
to CANCELLED in one conditional UPDATE, and its outbox entry goes in the same transaction:
whichever copy of its message a worker takes later (from the queue, a delay queue, or a
publish already in flight) finds a finished row and is acked without running. A running
row (IN_PROGRESS) gets ``cancelled_at``: its worker sees that within a second, sets the
call's ``cancel_requested`` and, after ``CARROT['cancel_grace']``, raises TaskCancelled in
the task's thread (``carrot.worker.cancels``); the attempt then ends CANCELLED, not failed
and not retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import router, transaction

from carrot.models.lifecycle import ASK_TO_CANCEL, CANCEL_QUEUED, PUBLISHED
from carrot.models.outbox import OutboxEntry


@dataclass(frozen=True)
class Cancelled:
    queued: int  # cancelled before they ran
    asked: int  # running, asked to stop


def cancel_rows(rows: Any, by: str = "") -> Cancelled:
    """Cancel the queued rows of a MessageLog queryset and ask its running ones to stop;
    finished rows are left alone."""
    using = rows.db or router.db_for_write(rows.model)
    who = f" by {by}" if by else ""
    with transaction.atomic(using=using):
        # First the entries of the queued rows (a subquery: any number of rows). A row a
        # worker claims meanwhile was delivered, so its message needs no entry either.
        OutboxEntry.objects.using(using).filter(
            message__in=rows.filter(status=PUBLISHED).values("pk")
        ).delete()
        count = rows.apply(
            CANCEL_QUEUED, exception=f"TaskCancelled: cancelled before it ran{who}", cancelled_by=by
        )
        asked = rows.filter(cancelled_at__isnull=True).apply(ASK_TO_CANCEL, cancelled_by=by)
    return Cancelled(count, asked)
