"""What a worker does with the deliveries of one queue, from the gate to the ack.

Three kinds of thread per consumed queue: the I/O thread (``QueueConsumer``) moves bytes;
this intake's thread (the recorder thread) runs the steps below and writes to the
database in groups; the task threads (``TaskPool``) run the tasks.

1. The gate (``gate``): a delivery that fails it is dead-lettered and recorded.
2. Not due yet (countdown, retry wait): sent on to a delay queue; acked once RabbitMQ
   confirms the copy, so it is never held by a worker and never lost.
3. Claimed in the database, only as many as there are free task threads (or
   ``prefetch``): a finished task is skipped, a task still running on a live worker
   waits in a delay queue, an interrupted one runs again.
4. Run on a task thread.
5. The outcome is committed (completed, failed, or back in the queue with an outbox entry
   for a retry) together with the next claims, and only then the delivery is acked.
"""

from __future__ import annotations

import logging
import queue as queuelib
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any, Protocol

from django.db import DatabaseError

from carrot.broker.consuming import ConsumerChannel, Delivery, Settle
from carrot.broker.outgoing import Outgoing
from carrot.broker.relays import relays
from carrot.conf import CarrotConfig, QueueConfig
from carrot.exceptions import CarrotError
from carrot.models import MessageLog
from carrot.models.handover import hand_over, outgoing
from carrot.observability import metrics, tracing
from carrot.registry import registry
from carrot.worker import gate
from carrot.worker.attempts import Claim, OutcomeKind, Record, record_for
from carrot.worker.pool import TaskPool, Work, drain
from carrot.worker.prefetch import PrefetchControl
from carrot.worker.recorder import Recorder, Written
from carrot.worker.reporting import report
from carrot.worker.runner import Outcome


class ConsumerHooks(Protocol):
    """The seed-compatible hooks a ``consumer_class`` may override."""

    def get_task_type(self, properties: Any, body: bytes) -> str | None: ...

    def fail(self, log: MessageLog, err: BaseException | str) -> None: ...


class Intake:
    """The recorder thread of one consumed queue (also the sink of its forwarded copies)."""

    def __init__(
        self,
        *,
        hooks: ConsumerHooks,
        channel: ConsumerChannel,
        queue: QueueConfig,
        config: CarrotConfig,
        recorder: Recorder,
        pool: TaskPool,
        stop: threading.Event,
        logger: logging.Logger,
        prefetch: PrefetchControl | None = None,
    ) -> None:
        self.hooks = hooks
        self.channel = channel
        self.queue = queue
        self.config = config
        self.recorder = recorder
        self.pool = pool
        self.stop = stop
        self.logger = logger
        # Claimed at most: the free task threads, or ahead up to an explicit ``prefetch``.
        self.prefetch = queue.prefetch or pool.size
        self.prefetch_control = prefetch  # adapts the broker's prefetch (when not explicit)
        self._incoming: queuelib.SimpleQueue[Delivery] = queuelib.SimpleQueue()
        self._wake = threading.Event()
        self._inflight = 0  # delivered and not yet settled with the broker (any thread)
        self._inflight_lock = threading.Lock()
        # Owned by the recorder thread:
        self._backlog: deque[Delivery] = deque()
        self._busy = 0  # claimed, not yet recorded
        self._running: dict[str, list[Delivery]] = {}  # id -> copies to ack afterwards
        self._settlements: list[tuple[Delivery, Settle]] = []
        # What the current step took and has not handed on yet (see _return_held).
        self._held: dict[tuple[int, int], Delivery] = {}
        self._held_work: set[Work] = set()
        self._finished = False  # set once run() returned: nothing will settle deliveries

    # ------------------------------------------------------------------ any thread

    @property
    def inflight(self) -> int:
        return self._inflight

    def deliver(self, delivery: Delivery) -> None:
        """Take a delivery from the I/O thread and return at once.

        A delivery that arrives once this intake has finished (the consumer was cancelled,
        but the broker had already sent it) goes straight back to the queue.
        """
        with self._inflight_lock:
            late = self._finished
            if not late:
                self._inflight += 1
        if late:
            self.channel.settle_many([(delivery, Settle.REQUEUE)])
            return
        self._incoming.put(delivery)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def _settle_now(self, items: list[tuple[Delivery, Settle]]) -> None:
        """Settle deliveries from a thread other than the recorder thread."""
        self.channel.settle_many(items)
        with self._inflight_lock:
            self._inflight -= len(items)
        self._wake.set()

    def confirmed(self, items: list[Outgoing]) -> None:
        """The relay confirmed forwarded copies: their deliveries are done."""
        self._settle_now([(item.ref, Settle.ACK) for item in items])

    def refused(self, items: list[tuple[Outgoing, str]]) -> None:
        """The relay could not forward copies: return their deliveries to the queue."""
        for item, reason in items:
            self.logger.warning("Could not delay %s (%s); returning it", item.message_id, reason)
        self._settle_now([(item.ref, Settle.REQUEUE) for item, _ in items])

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        """Run steps until stopped with nothing left in flight."""
        while True:
            self._wake.wait(0.2)
            self._wake.clear()
            self.step()
            if self.stop.is_set() and not self._busy and self._incoming.empty():
                with self._inflight_lock:
                    if not self._inflight:
                        self._finished = True
                        return

    def step(self) -> None:
        """One round: take what arrived and what finished, record, dispatch, settle."""
        try:
            self._step()
        except Exception:  # the worker goes on; what the step held goes back
            self.logger.exception("Unexpected error in the recorder of %r", self.queue.name)
            self._return_held()
        finally:
            self._flush_settlements()
        metrics.queue_state(self.queue.name, running=self._busy, prefetched=len(self._backlog))

    def _return_held(self) -> None:
        """Settle what the failed step still held: its deliveries go back to the queue
        (to run again, or to be skipped if their outcome was committed after all)."""
        for delivery in list(self._held.values()):
            self._settle(delivery, Settle.REQUEUE)
        for work in list(self._held_work):
            self._finish(work, Settle.REQUEUE)

    def _settle(self, delivery: Delivery, action: Settle) -> None:
        """Queue an ack/requeue/reject; the step's settlements go out together."""
        self._release(delivery)
        self._settlements.append((delivery, action))

    def _release(self, delivery: Delivery) -> None:
        """The step no longer holds this delivery: it is settled, running or waiting."""
        self._held.pop((delivery.generation, delivery.tag), None)

    def _flush_settlements(self) -> None:
        if self._settlements:
            batch, self._settlements = self._settlements, []
            self.channel.settle_many(batch)
            with self._inflight_lock:
                self._inflight -= len(batch)

    def _step(self) -> None:
        finished = drain(self.pool.finished)
        for delivery in drain(self._incoming):
            if delivery.generation != self.channel.generation:
                # From a connection that broke: its tag is void and the broker redelivers.
                self._settle(delivery, Settle.ACK)
            else:
                self._backlog.append(delivery)
        if self.stop.is_set():
            # Stopping: what was prefetched but not claimed goes back to the queue.
            while self._backlog:
                self._settle(self._backlog.popleft(), Settle.REQUEUE)
        # Claim up to the prefetch (by default the concurrency): with a larger prefetch a
        # worker claims ahead, and one commit covers more tasks.
        budget = self.prefetch - self._busy + len(finished)
        batch = [self._backlog.popleft() for _ in range(max(0, min(budget, len(self._backlog))))]
        self._held = {(d.generation, d.tag): d for d in batch}
        self._held_work = {work for work, _ in finished}
        admitted = [a for a in map(self._gate, batch) if a is not None]
        fresh = [
            a.message_id
            for a in admitted
            if not a.delivery.redelivered and a.message_id not in self._running
        ]
        records = [record_for(work.task, work.claim, outcome) for work, outcome in finished]
        try:
            written = self.recorder.write_batch(records, fresh)
        except Exception:
            self.logger.exception(
                "Could not record %d outcome(s) and claim %d task(s); returning them to the queue",
                len(records),
                len(admitted),
            )
            for work, _ in finished:
                tracing.end_run(work.span, "requeued")
                self._finish(work, Settle.REQUEUE)
            for a in admitted:
                self._settle(a.delivery, Settle.REQUEUE)
            return
        self._after_record(finished, records, written)
        self._dispatch(admitted, written.claims)
        self.pool.check_time_limits()
        if self.prefetch_control is not None:
            durations = [outcome.duration for _, outcome in finished]
            oldest = self.pool.oldest_running()
            give_back = self.prefetch_control.step(
                durations, oldest, self._busy, len(self._backlog)
            )
            for _ in range(give_back):
                self._settle(self._backlog.pop(), Settle.REQUEUE)  # for other workers

    # ------------------------------------------------------------------ gate and claim

    def _reject(self, delivery: Delivery, reason: str) -> None:
        self.logger.error(
            "Rejected message %s (task %r) from %r to the dead-letter queue: %s",
            delivery.message_id,
            delivery.type,
            delivery.queue,
            reason,
        )
        task = delivery.type if delivery.type and delivery.type in registry else None
        metrics.task_finished(task or metrics.UNREGISTERED, self.queue.name, "rejected", None)
        try:
            self.recorder.reject(delivery, reason)
        except Exception:
            # The message still goes to the dead-letter queue; raising here would drop
            # the rest of the recorder's step (finished tasks, the batch being claimed).
            self.logger.exception("Could not record the rejection of %s", delivery.message_id)
        finally:
            self._settle(delivery, Settle.REJECT)

    def _gate(self, delivery: Delivery) -> gate.Admitted | None:
        """Return the admitted delivery, or None if it was settled or sent on."""
        task_name = None
        if gate.refusal(delivery, self.config.max_message_bytes) is None:
            try:
                task_name = self.hooks.get_task_type(delivery, delivery.body)
            except Exception as exc:  # a consumer_class's hook: only this message suffers
                self._reject(delivery, f"the consumer's get_task_type raised {exc!r}")
                return None
        admitted = gate.admit(delivery, task_name, self.config.max_message_bytes)
        if isinstance(admitted, str):
            self._reject(delivery, admitted)
            return None
        remaining = gate.seconds_until_due(delivery)
        if remaining > 0.5:
            self._forward(delivery, remaining, f"it is due in {remaining:.0f}s")
            return None
        if delivery.redelivered and self._hold_copy(delivery):
            return None
        return admitted

    def _hold_copy(self, delivery: Delivery) -> bool:
        """Keep a copy of a message this worker runs now; ack it when the run is recorded."""
        copies = self._running.get(str(delivery.message_id))
        if copies is None:
            return False
        copies.append(delivery)
        self._release(delivery)
        return True

    def _dispatch(self, admitted: list[gate.Admitted], claims: dict[str, Claim]) -> None:
        """Hand claimed deliveries to the task threads; settle the others."""
        for a in admitted:
            delivery, task = a.delivery, a.task
            if self._hold_copy(delivery):
                continue  # another copy of it, earlier in this batch, is running
            claim = claims.pop(a.message_id, None)
            if claim is None:
                try:
                    claim = self.recorder.claim(delivery, task.name, a.args, a.kwargs)
                except Exception:
                    self.logger.exception(
                        "Could not record the start of %s; returning it to the queue",
                        a.message_id,
                    )
                    self._settle(delivery, Settle.REQUEUE)
                    continue
            if not claim.run:
                if claim.gave_up:
                    metrics.task_finished(task.name, self.queue.name, "failed", None)
                if claim.gave_up and task.on_outcome is not None and claim.log_id is not None:
                    self._observe(task.on_outcome, claim.log_id, a.message_id, False, None)
                if claim.wait:
                    self._forward(delivery, claim.wait, claim.reason)
                else:
                    self.logger.info("Skipping %s %s: %s", task.name, a.message_id, claim.reason)
                    self._settle(delivery, Settle.ACK)
                continue
            if self.logger.isEnabledFor(logging.INFO):
                self.logger.info(
                    "Running %s %s (attempt %d)", task.name, a.message_id, claim.attempt
                )
            self._busy += 1
            self._running.setdefault(a.message_id, [])
            deadline = time.monotonic() + task.time_limit if task.time_limit else None
            self.pool.put(Work(delivery, claim, task, a.args, a.kwargs, deadline))
            self._release(delivery)

    # ------------------------------------------------------------------ outcomes

    def _after_record(
        self, finished: list[tuple[Work, Outcome]], records: list[Record], written: Written
    ) -> None:
        """Once the outcomes are committed: hand retries over, ack, log, call back."""
        for work, _ in finished:
            self._finish(work, Settle.ACK)
        if written.retried and written.entries is not None:
            self._hand_over_retries(written.retried, written.entries)
        for (work, outcome), record in zip(finished, records, strict=True):
            report(self.logger, work, outcome, record)
            if record.kind is OutcomeKind.FAILED:
                self._call_back(record.row_id, work, outcome)
            if work.task.on_outcome is not None and record.kind is not OutcomeKind.RETRYING:
                hook, ok, error = work.task.on_outcome, outcome.succeeded, outcome.error
                self._observe(hook, record.row_id, work.message_id, ok, error)

    def _call_back(self, row_id: int, work: Work, outcome: Outcome) -> None:
        """Run the failure callbacks; their errors (or the database's) stay here."""
        try:
            log = MessageLog.objects.filter(pk=row_id).first()
            if log is not None:
                self.hooks.fail(log, outcome.error or outcome.exception)
        except Exception:
            self.logger.exception("Could not run the failure callbacks of %s", work.message_id)

    def _observe(self, hook: Any, row_id: int, message_id: str, *outcome: Any) -> None:
        """Tell the task's ``on_outcome`` hook of a final outcome; its errors stay here."""
        try:
            hook(row_id, *outcome)
        except Exception:
            self.logger.exception("The outcome hook of %s raised", message_id)

    def _hand_over_retries(self, retried: list[int], entries: datetime) -> None:
        # Their outbox entries are committed: if this fails, the sweeper publishes them.
        try:
            rows = MessageLog.objects.filter(pk__in=retried)
            hand_over([outgoing(row, entries) for row in rows])
        except (CarrotError, DatabaseError) as exc:
            self.logger.warning("Retries stay in the outbox for the sweeper: %s", exc)

    def _finish(self, work: Work, action: Settle) -> None:
        self._held_work.discard(work)
        self._busy -= 1
        self._settle(work.delivery, action)
        # Ack the copies of this message that arrived while it ran here.
        for copy in self._running.pop(work.message_id, []):
            self.logger.info(
                "Skipping %s %s: another delivery of it ran in this worker meanwhile",
                work.task.name,
                copy.message_id,
            )
            self._settle(copy, Settle.ACK)

    # ------------------------------------------------------------------ delays

    def _forward(self, delivery: Delivery, seconds: float, why: str) -> None:
        """Send a copy of the delivery to a delay queue; it is acked once RabbitMQ confirms
        the copy (and returned to the queue if it refuses it), so it is never lost."""
        self.logger.debug("Delaying %s %s: %s", delivery.type, delivery.message_id, why)
        copy = gate.delayed_copy(delivery, seconds, self.queue, self)
        relays.get(self.queue.broker, self.config).submit([copy])
        self._release(delivery)  # the relay's confirm settles it
