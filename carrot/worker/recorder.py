"""Recording task state from the worker: claims, outcomes and rejections.

Every write is a lifecycle transition (``carrot.models.lifecycle``), conditional on the
row's state, and is retried while the database is unreachable: the worker acks a message
only once its final state is committed. On the hot path the worker writes in groups
(``write_batch``): the outcomes of the tasks that finished together and the claims of
the messages that arrived together go in one transaction.
"""

from __future__ import annotations

import logging
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
    router,
    transaction,
)
from django.utils import timezone

from carrot.broker.consuming import Delivery
from carrot.messages import APP_ID
from carrot.models import MessageLog
from carrot.models.lifecycle import GIVE_UP, REJECT, REJECTED_TYPE, RETRY, rejected
from carrot.models.outbox import add_entries
from carrot.worker.attempts import Claim, OutcomeKind, Record
from carrot.worker.heartbeats import worker_alive

logger = logging.getLogger(__name__)
T = TypeVar("T")

# How long a redelivery waits when its task still runs on another live worker.
WAIT_FOR_OWNER = 16.0
# A carrot message younger than this whose row is missing waits for the row to appear.
ROW_GRACE = 60.0


@dataclass(frozen=True)
class Written:
    """What one group commit wrote: the claims by message id, and the rows put back for a
    retry with their outbox entries' version."""

    claims: dict[str, Claim]
    retried: list[int]
    entries: datetime | None


class Recorder:
    """Write MessageLog transitions for one worker process."""

    # How long a status write keeps retrying through a database outage before the
    # delivery is returned to the queue instead of acked.
    retry_seconds = 60.0

    def __init__(self, worker: str, *, max_interruptions: int) -> None:
        self.worker = worker
        self.max_interruptions = max_interruptions

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.1
        while True:
            try:
                return fn()
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning("Database error while %s (%s); retrying in %.1fs", what, exc, delay)
                # Drop the broken connection so the retry opens a fresh one.
                connections[router.db_for_write(MessageLog)].close()
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                close_old_connections()

    # ------------------------------------------------------------------ group commit

    def write_batch(self, records: list[Record], message_ids: list[str]) -> Written:
        """Record outcomes and claim new messages in one transaction (one commit).

        Returns the claims by message id (a message missing from them needs ``claim()``)
        and the rows put back in the queue for a retry, each with an outbox entry written
        in the same transaction: the caller hands them over once this returns.
        """
        if not records and not message_ids:
            return Written({}, [], None)

        def write() -> Written:
            using = router.db_for_write(MessageLog)
            with transaction.atomic(using=using):
                retried, written = self._record(records, using)
                claimed = MessageLog.objects.claim_many(message_ids, self.worker)
            claims = {m: Claim(True, pk, attempt) for pk, m, attempt in claimed}
            return Written(claims, retried, written)

        return self._retrying("recording outcomes", write)

    def _record(self, records: list[Record], using: str) -> tuple[list[int], datetime | None]:
        for kind in (OutcomeKind.COMPLETED, OutcomeKind.FAILED, OutcomeKind.CANCELLED):
            MessageLog.objects.apply_each(
                kind.transition,
                [(r.row_id, r.claim.attempt, r.values) for r in records if r.kind is kind],
            )
        retried = []
        for r in records:  # rare: one statement each, to know which rows moved
            if r.kind is OutcomeKind.RETRYING and (
                MessageLog.objects.filter(pk=r.row_id, attempts=r.claim.attempt).apply(
                    RETRY, **r.values
                )
            ):
                retried.append(r.row_id)
        return retried, add_entries(retried, using) if retried else None

    # ------------------------------------------------------------------ one at a time

    def claim(
        self, delivery: Delivery, task: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Claim:
        """Move the delivery's row to IN_PROGRESS if this worker may run it."""
        return self._retrying("claiming a task", lambda: self._claim(delivery, task, args, kwargs))

    def _claim(
        self, delivery: Delivery, task: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Claim:
        rows = MessageLog.objects.filter(uuid=str(delivery.message_id))  # a UUID: gated
        for _ in range(3):
            if rows.mark_started(worker=self.worker):
                row = rows.values("id", "attempts").get()
                return Claim(True, row["id"], row["attempts"])
            current = rows.values("id", "status", "attempts", "interruptions", "worker").first()
            if current is None:
                claim = self._claim_missing_row(delivery, task, args, kwargs)
                if claim is not None:
                    return claim
                continue
            status = current["status"]
            if status in MessageLog.FINISHED_STATUSES:
                return Claim(False, current["id"], reason=f"it is already {status}")
            if status == MessageLog.IN_PROGRESS:
                claim = self._claim_in_progress(delivery, task, rows, dict(current))
                if claim is not None:
                    return claim
        return Claim(False, reason="its MessageLog kept changing while it was claimed")

    def _claim_missing_row(
        self, delivery: Delivery, task: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Claim | None:
        if delivery.app_id == APP_ID:
            # carrot writes the row before publishing, so a missing row was deleted in the
            # monitor, or is not visible yet (a replica lagging, a commit in flight): wait
            # for a young message, drop an old one.
            age = time.time() - (delivery.timestamp or 0)
            if age < ROW_GRACE:
                return Claim(False, reason="its MessageLog is not visible yet", wait=2.0)
            return Claim(False, reason="its MessageLog was deleted, so it is dropped")
        return self._create_for_foreign(delivery, task, args, kwargs)

    def _claim_in_progress(
        self, delivery: Delivery, task: str, rows: Any, current: dict[str, Any]
    ) -> Claim | None:
        if not delivery.redelivered:
            return Claim(
                False, current["id"], reason="another delivery with the same message id is running"
            )
        owner = current["worker"]
        if owner and owner != self.worker and worker_alive(owner):
            return Claim(
                False, current["id"], reason=f"it is still running on {owner}", wait=WAIT_FOR_OWNER
            )
        same_attempt = rows.filter(attempts=current["attempts"])
        if current["interruptions"] >= self.max_interruptions:
            same_attempt.apply(
                GIVE_UP,
                exception=(
                    f"Gave up after {current['interruptions'] + 1} interrupted attempts: the "
                    "worker died or lost its broker connection every time it ran this task. "
                    "Fix the cause, then requeue it."
                ),
            )
            return Claim(
                False, current["id"], reason="it keeps interrupting its worker", gave_up=True
            )
        if same_attempt.mark_started(worker=self.worker, interrupted=True):
            logger.warning(
                "Task %s (%s) was interrupted during attempt %d; running it again",
                task,
                delivery.message_id,
                current["attempts"],
            )
            return Claim(True, current["id"], current["attempts"] + 1)
        return None  # another worker took it over meanwhile: look again

    def _create_for_foreign(
        self, delivery: Delivery, task: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Claim | None:
        # A message published outside carrot: track it from now on.
        now = timezone.now()
        try:
            with transaction.atomic(using=router.db_for_write(MessageLog)):
                row = MessageLog.objects.create(
                    uuid=str(delivery.message_id),
                    status=MessageLog.IN_PROGRESS,
                    task=task,
                    queue=delivery.queue,
                    routing_key=delivery.queue,
                    priority=delivery.priority or 0,
                    task_args=args,
                    task_kwargs=kwargs,
                    publish_time=now,
                    start_time=now,
                    attempts=1,
                    worker=self.worker,
                )
        except IntegrityError:
            return None  # another worker created it first; claim again
        return Claim(True, row.id, 1)

    # ------------------------------------------------------------------ rejections

    def reject(self, delivery: Delivery, reason: str) -> None:
        """Record a message that is dead-lettered without running."""
        self._retrying("recording a rejected message", lambda: self._reject(delivery, reason))

    def _reject(self, delivery: Delivery, reason: str) -> None:
        exception = rejected(reason)
        message_id = _as_uuid(delivery.message_id)
        if message_id is not None:
            rows = MessageLog.objects.filter(uuid=message_id)
            if rows.apply(REJECT, exception=exception) or rows.exists():
                return  # a finished row keeps its outcome; the stray copy is dead-lettered
        now = timezone.now()
        MessageLog.objects.create(
            uuid=message_id or uuidlib.uuid4(),
            status=MessageLog.FAILED,
            task=(delivery.type or "(no task name)")[:255],
            queue=delivery.queue,
            routing_key=delivery.queue,
            priority=min(max(delivery.priority or 0, 0), 255),
            exception=exception,
            exception_type=REJECTED_TYPE,
            publish_time=now,
            failure_time=now,
            worker=self.worker,
        )


def _as_uuid(value: str | None) -> uuidlib.UUID | None:
    if not value:
        return None
    try:
        return uuidlib.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None
