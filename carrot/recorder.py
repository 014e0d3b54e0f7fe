"""Recording task state from the worker, behind a small interface.

The worker asks three things: may I run this delivery (``claim``), record this outcome
(``complete``/``fail``), and record that a message was refused (``reject``). Each write is a
conditional UPDATE on MessageLog and is retried while the database is unreachable, so
the worker acks a message only once its final state is committed.
"""

from __future__ import annotations

import logging
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connections,
    models,
    router,
    transaction,
)
from django.utils import timezone

from carrot.broker import Delivery
from carrot.heartbeats import worker_alive
from carrot.messages import APP_ID
from carrot.models import MessageLog
from carrot.publisher import REJECTED_PREFIX

logger = logging.getLogger(__name__)
T = TypeVar("T")

# How long a redelivery waits when its task still runs on another live worker.
WAIT_FOR_OWNER = 16.0
# A carrot message younger than this whose row is missing waits for the row to appear.
ROW_GRACE = 60.0


@dataclass(frozen=True)
class Claim:
    """The answer to "may this worker run this delivery?"."""

    run: bool
    log_id: int | None = None
    attempt: int = 0
    reason: str = ""
    # Not now: ask again after this many seconds (the task runs on another live worker,
    # or its row is not visible yet).
    wait: float = 0.0


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

    # ------------------------------------------------------------------ claim

    def claim(
        self, delivery: Delivery, task: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Claim:
        """Move the delivery's row to IN_PROGRESS if this worker may run it."""
        return self._retrying("claiming a task", lambda: self._claim(delivery, task, args, kwargs))

    def claim_many(self, message_ids: list[str]) -> dict[str, Claim]:
        """Claim the PUBLISHED rows of many messages in one statement (group commit).

        Returns the claims by message id; a message missing from the result (a
        redelivery, a duplicate, a foreign message) goes through ``claim()``.
        """
        return self.write_batch([], message_ids)

    def write_batch(
        self, outcomes: list[tuple[str, Claim, dict[str, Any]]], message_ids: list[str]
    ) -> dict[str, Claim]:
        """Record outcomes and claim new messages in one transaction (one commit)."""
        if not outcomes and not message_ids:
            return {}

        def write() -> dict[str, Claim]:
            with transaction.atomic(using=router.db_for_write(MessageLog)):
                if outcomes:
                    self._record_many(outcomes)
                return self._claim_many(message_ids) if message_ids else {}

        return self._retrying("recording outcomes", write)

    def _claim_many(self, message_ids: list[str]) -> dict[str, Claim]:
        using = router.db_for_write(MessageLog)
        conn = connections[using]
        opts = MessageLog._meta
        ids = [opts.get_field("uuid").get_db_prep_value(uuidlib.UUID(m), conn) for m in message_ids]
        now = timezone.now()
        if conn.vendor in ("sqlite", "postgresql"):
            q = conn.ops.quote_name
            # Only names (quoted by Django) are formatted in; every value is a parameter.
            sql = (
                f"UPDATE {q(opts.db_table)} SET {q('status')} = %s, "  # noqa: S608
                f"{q('attempts')} = {q('attempts')} + 1, {q('start_time')} = %s, "
                f"{q('worker')} = %s WHERE {q('uuid')} IN ({', '.join(['%s'] * len(ids))}) "
                f"AND {q('status')} = %s RETURNING {q('id')}, {q('uuid')}, {q('attempts')}"
            )
            start = opts.get_field("start_time").get_db_prep_value(now, conn)
            with conn.cursor() as cursor:
                cursor.execute(
                    sql,
                    [MessageLog.IN_PROGRESS, start, self.worker[:255], *ids, MessageLog.PUBLISHED],
                )
                rows = cursor.fetchall()
        else:  # no UPDATE ... RETURNING: lock, then update, in one transaction
            with transaction.atomic(using=using):
                found = list(
                    MessageLog.objects.select_for_update()
                    .filter(uuid__in=message_ids, status=MessageLog.PUBLISHED)
                    .values_list("id", "uuid", "attempts")
                )
                MessageLog.objects.filter(id__in=[r[0] for r in found]).mark_started(
                    worker=self.worker
                )
            rows = [(pk, u, attempts + 1) for pk, u, attempts in found]
        # Keyed by the ids as the caller gave them (a message id may be a UUID in another
        # spelling: upper case, no dashes), so the caller's lookups find its claims.
        given = {uuidlib.UUID(m): m for m in message_ids}
        return {given[uuidlib.UUID(str(u))]: Claim(True, pk, attempts) for pk, u, attempts in rows}

    def _record_many(self, outcomes: list[tuple[str, Claim, dict[str, Any]]]) -> None:
        """Write outcomes: ``(kind, claim, values)`` with kind ``completed`` (output, log),
        ``failed`` (exception, traceback, log) or ``retrying`` (eta, exception, traceback,
        log). Every UPDATE is conditional on the claim's attempt."""
        using = router.db_for_write(MessageLog)
        conn = connections[using]
        opts = MessageLog._meta
        q = conn.ops.quote_name

        def prep(name: str, value: Any) -> Any:
            field = opts.get_field(name)
            assert isinstance(field, models.Field)
            return field.get_db_prep_save(value, conn)

        now = timezone.now()
        statements: dict[str, tuple[str, list[list[Any]]]] = {
            "completed": (
                f"{q('status')} = %s, {q('output')} = %s, {q('log')} = %s, "
                f"{q('exception')} = '', {q('traceback')} = '', {q('completion_time')} = %s",
                [],
            ),
            "failed": (
                f"{q('status')} = %s, {q('exception')} = %s, {q('traceback')} = %s, "
                f"{q('log')} = %s, {q('failure_time')} = %s",
                [],
            ),
            "retrying": (
                f"{q('status')} = %s, {q('eta')} = %s, {q('exception')} = %s, "
                f"{q('traceback')} = %s, {q('log')} = %s, {q('failure_time')} = %s",
                [],
            ),
        }
        for kind, claim, v in outcomes:
            log = prep("log", v["log"])
            if kind == "completed":
                values = [
                    MessageLog.COMPLETED,
                    prep("output", v["output"]),
                    log,
                    prep("completion_time", now),
                ]
            elif kind == "failed":
                values = [
                    MessageLog.FAILED,
                    v["exception"],
                    v["traceback"],
                    log,
                    prep("failure_time", now),
                ]
            else:
                values = [
                    MessageLog.PUBLISHED,
                    prep("eta", v["eta"]),
                    v["exception"],
                    v["traceback"],
                    log,
                    prep("failure_time", now),
                ]
            statements[kind][1].append(
                [*values, claim.log_id, claim.attempt, MessageLog.IN_PROGRESS]
            )
        with conn.cursor() as cursor:
            for assignments, rows in statements.values():
                if rows:
                    cursor.executemany(
                        f"UPDATE {q(opts.db_table)} SET {assignments} WHERE {q('id')} = %s "  # noqa: S608
                        f"AND {q('attempts')} = %s AND {q('status')} = %s",
                        rows,
                    )

    def _claim(
        self, delivery: Delivery, task: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Claim:
        message_id = str(delivery.message_id)  # validated as a UUID by the worker
        rows = MessageLog.objects.filter(uuid=message_id)
        for _ in range(3):
            if rows.mark_started(worker=self.worker):
                row = rows.values("id", "attempts").get()
                return Claim(True, row["id"], row["attempts"])
            current = rows.values("id", "status", "attempts", "interruptions", "worker").first()
            if current is None:
                if delivery.app_id == APP_ID:
                    # carrot writes the row before publishing, so a missing row was deleted
                    # in the monitor, or is not visible yet (a replica lagging, a commit in
                    # flight): wait for a young message, drop an old one.
                    age = time.time() - (delivery.timestamp or 0)
                    if age < ROW_GRACE:
                        return Claim(False, reason="its MessageLog is not visible yet", wait=2.0)
                    return Claim(False, reason="its MessageLog was deleted, so it is dropped")
                created = self._create_for_foreign(delivery, task, args, kwargs)
                if created is not None:
                    return created
                continue
            status = current["status"]
            if status in MessageLog.FINISHED_STATUSES:
                return Claim(False, current["id"], reason=f"it is already {status}")
            if status == MessageLog.IN_PROGRESS:
                if not delivery.redelivered:
                    return Claim(
                        False,
                        current["id"],
                        reason="another delivery with the same message id is running",
                    )
                owner = current["worker"]
                if owner and owner != self.worker and worker_alive(owner):
                    return Claim(
                        False,
                        current["id"],
                        reason=f"it is still running on {owner}",
                        wait=WAIT_FOR_OWNER,
                    )
                same_attempt = rows.filter(attempts=current["attempts"])
                if current["interruptions"] >= self.max_interruptions:
                    same_attempt.mark_failed(
                        exception=(
                            f"Gave up after {current['interruptions'] + 1} interrupted attempts: "
                            "the worker died or lost its broker connection every time it ran "
                            "this task. Fix the cause, then requeue it."
                        ),
                    )
                    return Claim(False, current["id"], reason="it keeps interrupting its worker")
                if same_attempt.mark_started(worker=self.worker, interrupted=True):
                    logger.warning(
                        "Task %s (%s) was interrupted during attempt %d; running it again",
                        task,
                        delivery.message_id,
                        current["attempts"],
                    )
                    return Claim(True, current["id"], current["attempts"] + 1)
        return Claim(False, reason="its MessageLog kept changing while it was claimed")

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

    # ------------------------------------------------------------------ outcomes

    def complete(self, claim: Claim, *, output: Any, log: list[dict[str, Any]]) -> None:
        """Record a successful attempt."""
        self._retrying(
            "recording a completed task",
            lambda: _attempt(claim).mark_completed(output=output, log=log),
        )

    def fail(
        self, claim: Claim, *, exception: str, traceback: str, log: list[dict[str, Any]]
    ) -> None:
        """Record a failed attempt."""
        self._retrying(
            "recording a failed task",
            lambda: _attempt(claim).mark_failed(exception=exception, traceback=traceback, log=log),
        )

    def retry(
        self,
        claim: Claim,
        *,
        eta: Any,
        exception: str,
        traceback: str,
        log: list[dict[str, Any]],
    ) -> bool:
        """Record a failed attempt that will run again at ``eta``; False if it cannot."""
        return bool(
            self._retrying(
                "recording a retry",
                lambda: _attempt(claim).mark_retrying(
                    eta=eta, exception=exception, traceback=traceback, log=log
                ),
            )
        )

    def reject(
        self,
        delivery: Delivery,
        reason: str,
        *,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Record a message that is dead-lettered without running."""
        self._retrying(
            "recording a rejected message", lambda: self._reject(delivery, reason, args, kwargs)
        )

    def _reject(
        self,
        delivery: Delivery,
        reason: str,
        args: list[Any] | None,
        kwargs: dict[str, Any] | None,
    ) -> None:
        exception = f"{REJECTED_PREFIX}{reason}"
        message_id = _as_uuid(delivery.message_id)
        if message_id is not None:
            rows = MessageLog.objects.filter(uuid=message_id)
            if rows.mark_failed(
                exception=exception,
                from_statuses=(MessageLog.PUBLISHED, MessageLog.IN_PROGRESS),
            ):
                return
            if rows.exists():
                return  # a finished row keeps its outcome; the stray copy is dead-lettered
        now = timezone.now()
        MessageLog.objects.create(
            uuid=message_id or uuidlib.uuid4(),
            status=MessageLog.FAILED,
            task=(delivery.type or "(no task name)")[:255],
            queue=delivery.queue,
            routing_key=delivery.queue,
            priority=min(max(delivery.priority or 0, 0), 255),
            task_args=args if args is not None else [],
            task_kwargs=kwargs if kwargs is not None else {},
            exception=exception,
            publish_time=now,
            failure_time=now,
            worker=self.worker,
        )


def _attempt(claim: Claim) -> Any:
    """Return the row of this claim, as long as no later attempt has started."""
    assert claim.log_id is not None
    return MessageLog.objects.filter(pk=claim.log_id, attempts=claim.attempt)


def _as_uuid(value: str | None) -> uuidlib.UUID | None:
    if not value:
        return None
    try:
        return uuidlib.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None
