"""What a worker does with one delivery, from the gate to the ack.

1. The gate: size, properties, content type, a registered task name, a decodable body.
   A message that fails it is dead-lettered and recorded; nothing is imported or run.
2. Not due yet (countdown, retry): sent on to a delay queue, then acked.
3. Claimed in the database (``Recorder.claim``): a finished task is skipped, a task still
   running on a live worker waits in a delay queue, an interrupted one runs again.
4. Run on this task thread with its ``carrot`` log captured and its time limit watched.
5. The outcome is committed (completed, failed, or put back for a retry) and only then
   the delivery is acked.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
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


@dataclass
class Running:
    """A task attempt in progress, shared by its task thread and the time-limit watch."""

    delivery: Delivery
    claim: Claim
    task: Any
    deadline: float | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    settled: bool = False  # its outcome was recorded (by the thread or by the watch)

    def settle(self) -> bool:
        """Return True for the first caller only."""
        with self.lock:
            if self.settled:
                return False
            self.settled = True
            return True


class DeliveryHandling:
    """The per-delivery logic of ``QueueConsumer`` (see the module docstring)."""

    # Provided by QueueConsumer.
    channel: Any
    config: Any
    queue: Any
    recorder: Any
    logger: logging.Logger
    _lock: threading.Lock
    _running: dict[str, list[Delivery]]
    _attempts: dict[str, Running]

    def get_task_type(self, properties: Any, body: bytes) -> str | None:
        raise NotImplementedError

    def fail(self, log: MessageLog, err: BaseException | str) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ the gate

    def _reject(self, delivery: Delivery, reason: str, **kwargs: Any) -> None:
        self.logger.error(
            "Rejected message %s (task %r) from %r to the dead-letter queue: %s",
            delivery.message_id,
            delivery.type,
            delivery.queue,
            reason,
        )
        try:
            self.recorder.reject(delivery, reason, **kwargs)
        finally:
            self.channel.dead_letter(delivery)

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

    def handle(self, delivery: Delivery) -> None:
        """Validate, claim, run, record and ack one delivery (task thread)."""
        refusal = self._refusal(delivery)
        if refusal:
            self._reject(delivery, refusal)
            return
        task_name = self.get_task_type(delivery, delivery.body) or ""
        task = registry.get(task_name)
        if task is None:
            self._reject(delivery, f"{task_name!r} is not a registered task")
            return
        try:
            args, kwargs = decode_body(delivery.body, max_bytes=self.config.max_message_bytes)
        except MessageDecodeError as exc:
            self._reject(delivery, str(exc))
            return
        remaining = self._seconds_until_due(delivery)
        if remaining > 0.5:
            self._delay(delivery, remaining, f"it is due in {remaining:.0f}s")
            return

        message_id = str(delivery.message_id)
        with self._lock:
            waiting = self._running.get(message_id)
            if waiting is not None and delivery.redelivered:
                # The broker handed back a message this worker is still running (after a
                # reconnect): ack this copy when the running attempt finishes. A fresh
                # copy (a retry we just published) goes through the claim instead.
                waiting.append(delivery)
                return
            if waiting is None:
                self._running[message_id] = []
        owner = waiting is None
        try:
            self._claim_and_run(delivery, task_name, task, args, kwargs)
        finally:
            parked = []
            if owner:
                with self._lock:
                    parked = self._running.pop(message_id, [])
            for copy in parked:
                self.logger.info(
                    "Skipping %s %s: another delivery of it ran in this worker meanwhile",
                    task_name,
                    message_id,
                )
                self.channel.ack(copy)

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
            self.channel.requeue(delivery)
            return
        self.logger.debug("Delaying %s %s: %s", delivery.type, delivery.message_id, why)
        self.channel.ack(delivery)

    # ------------------------------------------------------------------ running

    def _claim_and_run(
        self, delivery: Delivery, task_name: str, task: Any, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        try:
            claim = self.recorder.claim(delivery, task_name, args, kwargs)
        except Exception:
            self.logger.exception(
                "Could not record the start of %s; returning it to the queue", delivery.message_id
            )
            self.channel.requeue(delivery)
            return
        if not claim.run:
            if claim.wait:
                self._delay(delivery, claim.wait, claim.reason)
                return
            self.logger.info("Skipping %s %s: %s", task_name, delivery.message_id, claim.reason)
            self.channel.ack(delivery)
            return
        self.logger.info(
            "Running %s %s (attempt %d)", task_name, delivery.message_id, claim.attempt
        )
        deadline = time.monotonic() + task.time_limit if task.time_limit else None
        attempt = Running(delivery, claim, task, deadline)
        with self._lock:
            self._attempts[str(delivery.message_id)] = attempt
        try:
            outcome = run_task(
                task,
                args,
                kwargs,
                log_level=self.config.task_log_level,
                max_log_records=self.config.task_log_max_records,
            )
        finally:
            with self._lock:
                self._attempts.pop(str(delivery.message_id), None)
        if not attempt.settle():
            # The time-limit watch already failed and acked it, and gave this slot a new
            # thread: this one retires instead of taking more work.
            threading.current_thread().carrot_retired = True  # type: ignore[attr-defined]
            return
        self._settle(delivery, claim, task, outcome)

    def _settle(self, delivery: Delivery, claim: Claim, task: Any, outcome: Outcome) -> None:
        """Commit the outcome (or schedule the retry), then ack."""
        wait = None if outcome.succeeded else retry_delay(task, outcome.error, claim.attempt)
        try:
            if outcome.succeeded:
                self.recorder.complete(claim, output=outcome.output, log=outcome.log)
            elif wait is not None:
                eta = datetime.now(tz=UTC) + timedelta(seconds=wait)
                self.recorder.retry(
                    claim,
                    eta=eta,
                    exception=outcome.exception,
                    traceback=outcome.traceback,
                    log=outcome.log,
                )
            else:
                exception = outcome.exception
                if task.retries and claim.attempt > 1:
                    exception = f"{exception} (gave up after {claim.attempt} attempts)"
                self.recorder.fail(
                    claim, exception=exception, traceback=outcome.traceback, log=outcome.log
                )
        except Exception:
            self.logger.exception(
                "Could not record the outcome of %s; returning it to the queue",
                delivery.message_id,
            )
            self.channel.requeue(delivery)
            return
        if wait is not None:
            self._delay(delivery, wait, f"retry {claim.attempt} of {task.retries}")
        else:
            self.channel.ack(delivery)
        self._log_outcome(delivery, task, claim, outcome, wait)
        if not outcome.succeeded and wait is None and claim.log_id is not None:
            log = MessageLog.objects.filter(pk=claim.log_id).first()
            if log is not None:
                self.fail(log, outcome.error or outcome.exception)

    def _log_outcome(
        self, delivery: Delivery, task: Any, claim: Claim, outcome: Outcome, wait: float | None
    ) -> None:
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
        if wait is not None:
            text = (
                f"Retrying {task.name} {delivery.message_id} in {wait:.1f}s: attempt "
                f"{claim.attempt} failed after {outcome.duration:.3f}s: {outcome.exception}"
            )
        else:
            text = (
                f"{result.capitalize()} {task.name} {delivery.message_id} in "
                f"{outcome.duration:.3f}s" + ("" if outcome.succeeded else f": {outcome.exception}")
            )
        level = logging.INFO if outcome.succeeded else logging.WARNING
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
        with self._lock:
            overdue = [
                a
                for a in self._attempts.values()
                if a.deadline is not None and now > a.deadline + ABANDON_GRACE
            ]
        for attempt in overdue:
            if attempt.settle():
                threading.Thread(target=self._abandon, args=(attempt,), daemon=True).start()

    def _abandon(self, attempt: Running) -> None:
        task = attempt.task
        message = (
            f"TimeLimitExceeded: {task.name} ran longer than its time limit of "
            f"{task.time_limit:g}s and did not stop (it is blocked outside Python code); "
            "its thread was abandoned"
        )
        try:
            self.recorder.fail(attempt.claim, exception=message, traceback="", log=[])
        except Exception:
            self.logger.exception(
                "Could not record the time limit of %s", attempt.delivery.message_id
            )
            self.channel.requeue(attempt.delivery)
        else:
            self.channel.ack(attempt.delivery)
        self.logger.error("%s (%s)", message, attempt.delivery.message_id)
        self.replace_task_thread()

    def replace_task_thread(self) -> None:
        raise NotImplementedError
