"""The scheduler loop: publish the due ticks of active schedules, exactly once each.

Each tick is claimed with a conditional UPDATE of the schedule's ``next_run_at``; only the
scheduler whose update matched publishes it, and the tick's MessageLog is written with an
outbox entry in that same transaction, so a scheduler that dies after the claim delays
the tick (the outbox sweeper publishes it) instead of losing it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from django.db import DatabaseError, close_old_connections, router, transaction
from django.db.models import Min

from carrot.conf import get_config
from carrot.exceptions import CarrotError
from carrot.models import MessageLog, ScheduledTask
from carrot.models.handover import hand_over, outgoing
from carrot.models.outbox import insert_with_entries
from carrot.observability import metrics, tracing
from carrot.publishing import unique
from carrot.publishing.calls import prepare
from carrot.registry import registry
from carrot.scheduling.cadence import Cadence, due_ticks, next_run
from carrot.scheduling.edits import call_options
from carrot.scheduling.sync import sync_declared

logger = logging.getLogger(__name__)


class Scheduler:
    """Publish due ticks of active schedules; run by ``manage.py carrot`` in a thread."""

    def __init__(
        self, *, clock: Callable[[], datetime] | None = None, max_sleep: float | None = None
    ) -> None:
        config = get_config()
        self.clock = clock or (lambda: datetime.now(tz=UTC))
        self.max_sleep = config.scheduler.max_sleep if max_sleep is None else max_sleep
        self.stop_event = threading.Event()
        self._warned: set[tuple[int, str]] = set()

    def claim(self, row_id: int, expected: datetime, new_next: datetime) -> bool:
        """Advance a schedule's next tick if nobody did first; True if this call did it."""
        return bool(
            ScheduledTask.objects.filter(pk=row_id, active=True, next_run_at=expected).update(
                next_run_at=new_next
            )
        )

    def _warn_once(self, row_id: int, message: str, *args: object) -> None:
        if (row_id, message) not in self._warned:
            self._warned.add((row_id, message))
            logger.warning(message, *args)

    def _cadence(self, row: ScheduledTask) -> Cadence | None:
        try:
            return Cadence.of(row)
        except ValueError as exc:
            self._warn_once(
                row.pk, "Schedule %r is invalid (%s); it is skipped", row.task_name, exc
            )
            return None

    def publish_due(self, now: datetime) -> list[MessageLog]:
        """Publish every due tick at ``now``; return the MessageLogs created."""
        published = []
        for row in ScheduledTask.objects.filter(active=True, next_run_at__isnull=True):
            cadence = self._cadence(row)
            if cadence is not None:
                ScheduledTask.objects.filter(pk=row.pk, next_run_at__isnull=True).update(
                    next_run_at=next_run(cadence, now)
                )
        for row in ScheduledTask.objects.filter(active=True, next_run_at__lte=now):
            cadence = self._cadence(row)
            if cadence is None:
                continue
            assert row.next_run_at is not None
            due = due_ticks(cadence, row.next_run_at, now)
            if due.skipped:
                logger.warning(
                    "Schedule %r missed %s tick(s) (the scheduler was not running); "
                    "running it once now",
                    row.task_name,
                    "many" if due.skipped < 0 else due.skipped,
                )
            expected = row.next_run_at
            for index, tick in enumerate(due.ticks):
                following = due.ticks[index + 1] if index + 1 < len(due.ticks) else due.next_run_at
                assert following is not None
                claimed, log = self.publish_tick(row, expected, following, tick)
                if not claimed:
                    break  # another scheduler claimed it; it will be re-read next round
                if index == 0 and due.skipped:
                    # Counted by the scheduler whose claim moved past them (once); more
                    # than a week of missed ticks is not counted, and counts as one.
                    metrics.ticks(skipped=max(due.skipped, 1))
                if log is not None:
                    published.append(log)
                expected = following
        return published

    def publish_tick(
        self, row: ScheduledTask, expected: datetime, following: datetime, tick: datetime
    ) -> tuple[bool, MessageLog | None]:
        """Claim ``tick`` of ``row`` and publish it; return (claimed, its MessageLog).

        Not claimed: another scheduler claimed it first. Claimed without a MessageLog: the
        tick is skipped (the task is not registered, or its call is invalid).
        """
        problem: tuple[str, ...] | None = None
        if row.task not in registry:
            problem = (
                "Schedule %r names %r, which is not a registered task; its ticks are skipped",
                row.task_name,
                row.task,
            )
        else:
            try:
                prepared = prepare(**call_options(row), scheduled_for=tick)
            except (CarrotError, ValueError, TypeError) as exc:  # e.g. a queue no longer configured
                problem = ("Schedule %r cannot be published (%s); skipped", row.task_name, str(exc))
        if problem is not None:
            if not self.claim(row.pk, expected, following):
                return False, None
            self._warn_once(row.pk, *problem)
            metrics.ticks(skipped=1)
            return True, None
        using = router.db_for_write(MessageLog)
        with tracing.publishing([prepared.log], trigger="schedule"):
            with transaction.atomic(using=using):
                if not self.claim(row.pk, expected, following):
                    return False, None
                written: datetime | None
                if prepared.log.unique_key is None:
                    holder, written = prepared.log, insert_with_entries([prepared.log], using)
                else:
                    holder, written = unique.insert(prepared.log, using)
                if written is None:  # a unique task whose last run is still queued or running
                    logger.info(
                        "Schedule %r: tick %s skipped, %s is still queued or running (unique)",
                        row.task_name,
                        tick.isoformat(),
                        holder.uuid,
                    )
                    metrics.ticks(skipped=1)
                    return True, None
                ScheduledTask.objects.filter(pk=row.pk).update(
                    last_run_at=tick, last_message=prepared.log
                )
            # Not fail-fast: with the broker down the tick waits in the outbox and the relay.
            hand_over([outgoing(prepared.log, written, body=prepared.body, queue=prepared.queue)])
        metrics.ticks(published=1)
        logger.info(
            "Published %s for schedule %r (tick %s)", row.task, row.task_name, tick.isoformat()
        )
        return True, prepared.log

    def seconds_until_next(self, now: datetime) -> float:
        """Return how long to sleep: until the next tick, at most ``max_sleep``."""
        soonest = ScheduledTask.objects.filter(active=True).aggregate(soonest=Min("next_run_at"))[
            "soonest"
        ]
        if soonest is None:
            return self.max_sleep
        return min(max((soonest - now).total_seconds(), 0.01), self.max_sleep)

    def run_once(self) -> float:
        """Publish what is due; return the seconds to sleep."""
        self.publish_due(self.clock())
        return self.seconds_until_next(self.clock())

    def run(self, *, sync: bool = True) -> None:
        """Sync the declared schedules, then loop until ``stop()``."""
        if sync:
            sync_declared(self.clock())
        logger.info("Scheduler started")
        backoff = 1.0
        while not self.stop_event.is_set():
            close_old_connections()
            try:
                wait = self.run_once()
                backoff = 1.0
            except DatabaseError as exc:
                logger.warning("Scheduler database error (%s); retrying in %.0fs", exc, backoff)
                wait, backoff = backoff, min(backoff * 2, 30.0)
            except Exception:
                # Keep scheduling the other schedules; the error is in the log.
                logger.exception("Scheduler error; retrying in %.0fs", backoff)
                wait, backoff = backoff, min(backoff * 2, 30.0)
            self.stop_event.wait(wait)
        close_old_connections()
        logger.info("Scheduler stopped")

    def stop(self) -> None:
        self.stop_event.set()
