"""What a worker does with its deliveries, from the gate to the ack, with group commit.

Three kinds of thread per consumed queue:

- the I/O thread (``QueueConsumer``) moves bytes: deliveries in, acks out, heartbeats;
- the recorder thread runs the steps below for every delivery, and writes to the
  database in batches: many claims in one statement, many outcomes in one transaction;
- ``concurrency`` task threads run the tasks.

1. The gate: size, properties, content type, a registered task name, a decodable body.
   A message that fails it is dead-lettered and recorded; nothing is imported or run.
2. Not due yet (countdown, retry): sent on to a delay queue, then acked.
3. Claimed in the database, only as many as there are free task threads: a finished
   task is skipped, a task still running on a live worker waits in a delay queue, an
   interrupted one runs again.
4. Run on a task thread with its ``carrot`` log captured and its time limit watched.
5. The outcome is committed (completed, failed, or put back for a retry) and only then
   the delivery is acked.
"""

from __future__ import annotations

import logging
import queue as queuelib
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from carrot.broker import Delivery, publisher
from carrot.exceptions import BrokerError, MessageDecodeError
from carrot.messages import CONTENT_TYPE, ETA_HEADER, decode_body
from carrot.models import MessageLog
from carrot.recorder import Claim
from carrot.registry import registry
from carrot.retries import retry_delay
from carrot.runner import Outcome, run_task

# After its time limit, how long a task blocked outside Python code may keep its thread.
ABANDON_GRACE = 2.0
_BROKER_HEADERS = ("x-death", "x-first-death", "x-last-death")
BATCH = 500


@dataclass
class Work:
    """A claimed delivery on its way to a task thread and back."""

    delivery: Delivery
    claim: Claim
    task: Any
    args: list[Any]
    kwargs: dict[str, Any]
    deadline: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    settled: bool = False  # its outcome was handed over (by its thread or by the watch)

    def settle(self) -> bool:
        """Return True for the first caller only."""
        with self.lock:
            if self.settled:
                return False
            self.settled = True
            return True


class DeliveryHandling:
    """The recorder thread's and the task threads' part of ``QueueConsumer``."""

    # Provided by QueueConsumer.
    channel: Any
    config: Any
    queue: Any
    recorder: Any
    logger: logging.Logger
    concurrency: int
    _stop: threading.Event

    def _init_handling(self) -> None:
        self._incoming: queuelib.SimpleQueue[Delivery] = queuelib.SimpleQueue()
        self._ready: queuelib.SimpleQueue[Work | None] = queuelib.SimpleQueue()
        self._finished: queuelib.SimpleQueue[tuple[Work, Outcome]] = queuelib.SimpleQueue()
        self._wake = threading.Event()
        self._backlog: deque[Delivery] = deque()
        self._busy = 0  # claimed, not yet recorded (recorder thread only)
        # Message ids this process is running -> redelivered copies to ack afterwards.
        self._running: dict[str, list[Delivery]] = {}
        self._attempts: dict[str, Work] = {}
        self._attempts_lock = threading.Lock()
        self._inflight = 0  # delivered and not yet settled with the broker
        self._inflight_lock = threading.Lock()
        self._settlements: list[tuple[Delivery, str]] = []  # recorder thread only

    def get_task_type(self, properties: Any, body: bytes) -> str | None:
        raise NotImplementedError

    def fail(self, log: MessageLog, err: BaseException | str) -> None:
        raise NotImplementedError

    def replace_task_thread(self) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ settling

    def _settle_delivery(self, delivery: Delivery, action: str) -> None:
        """Queue an ack/requeue/reject; the step's settlements go out together."""
        self._settlements.append((delivery, action))

    def _flush_settlements(self) -> None:
        if self._settlements:
            batch, self._settlements = self._settlements, []
            self.channel.settle_many(batch)
            with self._inflight_lock:
                self._inflight -= len(batch)

    # ------------------------------------------------------------------ recorder thread

    def _recorder_loop(self) -> None:
        while True:
            self._wake.wait(0.2)
            self._wake.clear()
            try:
                self._recorder_step()
            except Exception:  # keep the worker alive; the deliveries are accounted for
                self.logger.exception("Unexpected error in the recorder of %r", self.queue.name)
            finally:
                self._flush_settlements()
            if self._stop.is_set() and not self._busy and self._incoming.empty():
                with self._inflight_lock:
                    if not self._inflight:
                        return

    def _recorder_step(self) -> None:
        finished = _drain(self._finished)
        for delivery in _drain(self._incoming):
            if delivery.generation != self.channel.generation:
                # From a connection that broke: its tag is void and the broker redelivers.
                self._settle_delivery(delivery, "ack")
            else:
                self._backlog.append(delivery)
        if self._stop.is_set():
            # Stopping: what was prefetched but not claimed goes back to the queue.
            while self._backlog:
                self._settle_delivery(self._backlog.popleft(), "requeue")
        # Claim up to the prefetch (by default the concurrency): with a larger prefetch a
        # worker claims ahead, and one commit covers more tasks.
        budget = (self.queue.prefetch or self.concurrency) - self._busy + len(finished)
        batch = [self._backlog.popleft() for _ in range(max(0, min(budget, len(self._backlog))))]
        candidates = self._gate_all(batch)
        fresh = [
            str(d.message_id)
            for d, *_ in candidates
            if not d.redelivered and str(d.message_id) not in self._running
        ]
        rows, waits = self._outcome_rows(finished)
        try:
            claims = self.recorder.write_batch(rows, fresh)
        except Exception:
            self.logger.exception(
                "Could not record %d outcome(s) and claim %d task(s); returning them to the queue",
                len(rows),
                len(candidates),
            )
            for work, _ in finished:
                self._finish(work, "requeue")
            for delivery, *_ in candidates:
                self._settle_delivery(delivery, "requeue")
            return
        self._after_record(finished, waits)
        self._dispatch(candidates, claims)
        self.check_time_limits()

    def _reject(self, delivery: Delivery, reason: str) -> None:
        self.logger.error(
            "Rejected message %s (task %r) from %r to the dead-letter queue: %s",
            delivery.message_id,
            delivery.type,
            delivery.queue,
            reason,
        )
        try:
            self.recorder.reject(delivery, reason)
        except Exception:
            # The message still goes to the dead-letter queue; raising here would drop
            # the rest of the recorder's step (finished tasks, the batch being claimed).
            self.logger.exception("Could not record the rejection of %s", delivery.message_id)
        finally:
            self._settle_delivery(delivery, "reject")

    def _refusal(self, delivery: Delivery) -> str | None:
        max_bytes = self.config.max_message_bytes
        if len(delivery.body) > max_bytes:
            return (
                f"message body is {len(delivery.body)} bytes, over the limit of {max_bytes} "
                "(CARROT['max_message_bytes'])"
            )
        missing = [
            prop
            for prop, value in (("message_id", delivery.message_id), ("type", delivery.type))
            if not value
        ]
        if missing:
            return f"the message has no {' or '.join(missing)} property"
        try:
            uuid.UUID(str(delivery.message_id))
        except ValueError:
            return f"message_id {delivery.message_id!r} is not a UUID"
        if delivery.content_type != CONTENT_TYPE:
            return f"content_type is {delivery.content_type!r}; carrot accepts only {CONTENT_TYPE}"
        return None

    def _gate(self, delivery: Delivery) -> tuple[str, Any, list[Any], dict[str, Any]] | None:
        """Return (task name, task, args, kwargs), or None if the delivery was settled."""
        refusal = self._refusal(delivery)
        if refusal:
            self._reject(delivery, refusal)
            return None
        task_name = self.get_task_type(delivery, delivery.body) or ""
        task = registry.get(task_name)
        if task is None:
            self._reject(delivery, f"{task_name!r} is not a registered task")
            return None
        try:
            args, kwargs = decode_body(delivery.body, max_bytes=self.config.max_message_bytes)
        except MessageDecodeError as exc:
            self._reject(delivery, str(exc))
            return None
        remaining = self._seconds_until_due(delivery)
        if remaining > 0.5:
            self._delay(delivery, remaining, f"it is due in {remaining:.0f}s")
            return None
        message_id = str(delivery.message_id)
        if delivery.redelivered and message_id in self._running:
            # The broker handed back a message this worker is still running (after a
            # reconnect): ack this copy when the running attempt finishes.
            self._running[message_id].append(delivery)
            return None
        return task_name, task, args, kwargs

    def _gate_all(self, deliveries: list[Delivery]) -> list[tuple[Any, ...]]:
        candidates = []
        for delivery in deliveries:
            gated = self._gate(delivery)
            if gated is not None:
                candidates.append((delivery, *gated))
        return candidates

    def _admit(self, deliveries: list[Delivery]) -> None:
        """Gate and claim deliveries, and hand the claimed ones to the task threads."""
        candidates = self._gate_all(deliveries)
        fresh = [
            str(d.message_id)
            for d, *_ in candidates
            if not d.redelivered and str(d.message_id) not in self._running
        ]
        try:
            claims = self.recorder.claim_many(fresh)
        except Exception:
            self.logger.exception(
                "Could not claim %d task(s); returning them to the queue", len(candidates)
            )
            for delivery, *_ in candidates:
                self._settle_delivery(delivery, "requeue")
            claims = None
        if claims is not None:
            self._dispatch(candidates, claims)
        self._flush_settlements()

    def _dispatch(self, candidates: list[tuple[Any, ...]], claims: dict[str, Claim]) -> None:
        """Hand claimed deliveries to the task threads; settle the others."""
        for delivery, task_name, task, args, kwargs in candidates:
            message_id = str(delivery.message_id)
            # One claim per id: a second copy in the same batch takes the slow path.
            claim = claims.pop(message_id, None)
            if claim is None:
                try:
                    claim = self.recorder.claim(delivery, task_name, args, kwargs)
                except Exception:
                    self.logger.exception(
                        "Could not record the start of %s; returning it to the queue",
                        message_id,
                    )
                    self._settle_delivery(delivery, "requeue")
                    continue
            if not claim.run:
                if claim.wait:
                    self._delay(delivery, claim.wait, claim.reason)
                else:
                    self.logger.info("Skipping %s %s: %s", task_name, message_id, claim.reason)
                    self._settle_delivery(delivery, "ack")
                continue
            if self.logger.isEnabledFor(logging.INFO):
                self.logger.info("Running %s %s (attempt %d)", task_name, message_id, claim.attempt)
            self._busy += 1
            self._running.setdefault(message_id, [])
            deadline = time.monotonic() + task.time_limit if task.time_limit else None
            self._ready.put(Work(delivery, claim, task, args, kwargs, deadline))

    # ------------------------------------------------------------------ delays

    @staticmethod
    def _seconds_until_due(delivery: Delivery) -> float:
        eta = delivery.headers.get(ETA_HEADER)
        if not isinstance(eta, int | float) or isinstance(eta, bool):
            return 0.0
        return eta / 1000 - time.time()

    def _delay(self, delivery: Delivery, seconds: float, why: str) -> None:
        """Send the delivery on to a delay queue, then ack it (never hold it unacked)."""
        headers = {k: v for k, v in delivery.headers.items() if not k.startswith(_BROKER_HEADERS)}
        if ETA_HEADER not in headers or self._seconds_until_due(delivery) <= 0.5:
            headers[ETA_HEADER] = int((time.time() + seconds) * 1000)
        try:
            publisher.publish(
                self.queue,
                self.config,
                body=delivery.body,
                message_id=str(delivery.message_id),
                task=str(delivery.type),
                priority=delivery.priority or 0,
                headers=headers,
                delay=seconds,
            )
        except BrokerError as exc:
            self.logger.warning(
                "Could not delay %s (%s); returning it to the queue", delivery.message_id, exc
            )
            self._settle_delivery(delivery, "requeue")
            return
        self.logger.debug("Delaying %s %s: %s", delivery.type, delivery.message_id, why)
        self._settle_delivery(delivery, "ack")

    # ------------------------------------------------------------------ task threads

    def _task_loop(self) -> None:
        me = threading.current_thread()
        while True:
            work = self._ready.get()
            if work is None:
                return
            key = str(work.delivery.message_id)
            with self._attempts_lock:
                self._attempts[key] = work
            try:
                outcome = run_task(
                    work.task,
                    work.args,
                    work.kwargs,
                    log_level=self.config.task_log_level,
                    max_log_records=self.config.task_log_max_records,
                )
            finally:
                with self._attempts_lock:
                    self._attempts.pop(key, None)
            if work.settle():
                self._finished.put((work, outcome))
                self._wake.set()
            else:
                # The time-limit watch already failed it and gave this slot a new thread:
                # this one retires instead of taking more work.
                self.logger.info("%s ended after its abandoned task returned", me.name)
                return

    # ------------------------------------------------------------------ outcomes

    def _outcome_rows(
        self, finished: list[tuple[Work, Outcome]]
    ) -> tuple[list[tuple[str, Claim, dict[str, Any]]], list[float | None]]:
        """Turn finished attempts into rows for the recorder, and their retry waits."""
        rows: list[tuple[str, Claim, dict[str, Any]]] = []
        waits: list[float | None] = []
        for work, outcome in finished:
            task, claim = work.task, work.claim
            wait = None if outcome.succeeded else retry_delay(task, outcome.error, claim.attempt)
            waits.append(wait)
            if outcome.succeeded:
                rows.append(("completed", claim, {"output": outcome.output, "log": outcome.log}))
            elif wait is not None:
                eta = datetime.now(tz=UTC) + timedelta(seconds=wait)
                rows.append(
                    (
                        "retrying",
                        claim,
                        {
                            "eta": eta,
                            "exception": outcome.exception,
                            "traceback": outcome.traceback,
                            "log": outcome.log,
                        },
                    )
                )
            else:
                exception = outcome.exception
                if task.retries and claim.attempt > 1:
                    exception = f"{exception} (gave up after {claim.attempt} attempts)"
                rows.append(
                    (
                        "failed",
                        claim,
                        {
                            "exception": exception,
                            "traceback": outcome.traceback,
                            "log": outcome.log,
                        },
                    )
                )
        return rows, waits

    def _after_record(
        self, finished: list[tuple[Work, Outcome]], waits: list[float | None]
    ) -> None:
        """Once the outcomes are committed: ack (or delay for a retry), log, call back."""
        for (work, outcome), wait in zip(finished, waits, strict=True):
            delivery, task, claim = work.delivery, work.task, work.claim
            if wait is not None:
                self._busy -= 1
                self._release(work)
                self._delay(delivery, wait, f"retry {claim.attempt} of {task.retries}")
            else:
                self._finish(work, "ack")
            self._log_outcome(delivery, task, claim, outcome, wait)
            if not outcome.succeeded and wait is None and claim.log_id is not None:
                log = MessageLog.objects.filter(pk=claim.log_id).first()
                if log is not None:
                    self.fail(log, outcome.error or outcome.exception)

    def _release(self, work: Work) -> None:
        """Ack the copies of this message that arrived while it ran here."""
        for copy in self._running.pop(str(work.delivery.message_id), []):
            self.logger.info(
                "Skipping %s %s: another delivery of it ran in this worker meanwhile",
                work.task.name,
                copy.message_id,
            )
            self._settle_delivery(copy, "ack")

    def _finish(self, work: Work, action: str) -> None:
        self._busy -= 1
        self._settle_delivery(work.delivery, action)
        self._release(work)

    def _log_outcome(
        self, delivery: Delivery, task: Any, claim: Claim, outcome: Outcome, wait: float | None
    ) -> None:
        level = logging.INFO if outcome.succeeded else logging.WARNING
        if not self.logger.isEnabledFor(level):
            return
        result = "completed" if outcome.succeeded else "retrying" if wait is not None else "failed"
        fields = {
            "task_id": str(delivery.message_id),
            "task": task.name,
            "queue": delivery.queue,
            "attempt": claim.attempt,
            "duration": round(outcome.duration, 6),
            "outcome": result,
        }
        if not outcome.succeeded:
            fields["error"] = outcome.exception
        if wait is not None:
            fields["retry_in"] = round(wait, 3)
            text = (
                f"Retrying {task.name} {delivery.message_id} in {wait:.1f}s: attempt "
                f"{claim.attempt} failed after {outcome.duration:.3f}s: {outcome.exception}"
            )
        else:
            text = (
                f"{result.capitalize()} {task.name} {delivery.message_id} in "
                f"{outcome.duration:.3f}s" + ("" if outcome.succeeded else f": {outcome.exception}")
            )
        self.logger.log(level, "%s", text, extra={"carrot": fields})

    # ------------------------------------------------------------------ time limits

    def check_time_limits(self) -> None:
        """Fail tasks stuck past their time limit and give their slot a new thread.

        The task thread gets TimeLimitExceeded raised in it at the limit (run_task); code
        blocked outside Python (a socket, a C call) cannot be interrupted, so after a
        grace period its attempt is recorded FAILED and acked from here, and the thread
        is abandoned: it ends when the blocking call returns.
        """
        now = time.monotonic()
        with self._attempts_lock:
            overdue = [
                w
                for w in self._attempts.values()
                if w.deadline is not None and now > w.deadline + ABANDON_GRACE
            ]
        for work in overdue:
            if work.settle():
                task = work.task
                message = (
                    f"TimeLimitExceeded: {task.name} ran longer than its time limit of "
                    f"{task.time_limit:g}s and did not stop (it is blocked outside Python "
                    "code); its thread was abandoned"
                )
                self.logger.error("%s (%s)", message, work.delivery.message_id)
                outcome = Outcome(succeeded=False, exception=message)
                self._finished.put((work, outcome))
                self._wake.set()
                self.replace_task_thread()


def _drain(source: queuelib.SimpleQueue[Any], limit: int = BATCH) -> list[Any]:
    out: list[Any] = []
    while len(out) < limit:
        try:
            out.append(source.get_nowait())
        except queuelib.Empty:
            break
    return out
