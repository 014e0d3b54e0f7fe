"""One consumed queue: its connection's I/O thread, its intake and its task threads.

``QueueConsumer`` is the seed's ``carrot.consumer.Consumer``: a ``consumer_class`` may
override ``get_task_type``, ``get_message_log`` and ``fail``, or add failure callbacks.
The I/O thread only moves bytes (deliveries in, acks out, heartbeats), so a long task
never starves heartbeats.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from carrot.broker.consuming import ConsumerChannel, Delivery
from carrot.conf import BrokerConfig, CarrotConfig, QueueConfig, get_config
from carrot.exceptions import BrokerUnavailable, QueueMismatch
from carrot.models import MessageLog
from carrot.observability import metrics
from carrot.worker.heartbeats import worker_name
from carrot.worker.intake import Intake
from carrot.worker.livelog import LiveLog
from carrot.worker.pool import TaskPool
from carrot.worker.prefetch import AdaptivePrefetch, PrefetchControl
from carrot.worker.recorder import Recorder

FailureCallback = Callable[[MessageLog, BaseException | str], Any]
_global_failure_callbacks: list[FailureCallback] = []


def add_failure_callback(callback: FailureCallback) -> None:
    """Call ``callback(log, exception)`` whenever any task fails (after FAILED is saved)."""
    _global_failure_callbacks.append(callback)


def _as_broker(host: Any) -> BrokerConfig | None:
    if host is None or isinstance(host, BrokerConfig):
        return host
    broker = getattr(host, "broker", None)  # carrot.objects.VirtualHost
    return broker if isinstance(broker, BrokerConfig) else None


class QueueConsumer:
    """Consume one queue with ``concurrency`` task threads and one connection."""

    task_type = "type"
    # The process's writer of running tasks' logs, set by the Worker before it starts
    # consuming; a consumer without one writes each log only with its task's outcome.
    live_log: LiveLog | None = None

    def __init__(
        self,
        host: Any,
        queue: str,
        logger: logging.Logger | None = None,
        name: str = "consumer",
        durable: bool = True,
        queue_arguments: dict[str, Any] | None = None,
        exchange_arguments: dict[str, Any] | None = None,
    ) -> None:
        config = get_config()
        queue_config = config.queue(queue)
        broker = _as_broker(host)
        if broker is not None and broker != queue_config.broker:
            queue_config = replace(queue_config, broker=broker)
        self.config: CarrotConfig = config
        self.queue: QueueConfig = queue_config
        self.logger = logger or logging.getLogger(__name__)
        self.name = name
        self.concurrency = queue_config.concurrency
        self.failure_callbacks: list[FailureCallback] = []
        self.recorder = Recorder(worker_name(), max_interruptions=config.max_interruptions)
        self.fatal_error: BaseException | None = None
        self.channel: ConsumerChannel | None = None
        self.intake: Intake | None = None
        self._stop = threading.Event()
        self._io_thread: threading.Thread | None = None
        self._intake_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ seed hooks

    def add_failure_callback(self, callback: FailureCallback) -> None:
        """Call ``callback(log, exception)`` when a task consumed here fails."""
        self.failure_callbacks.append(callback)

    def get_task_type(self, properties: Any, body: bytes) -> str | None:
        """Return the task name a message asks for (its ``type`` property)."""
        return getattr(properties, self.task_type, None)

    def get_message_log(self, properties: Any, body: bytes) -> MessageLog | None:
        """Return the MessageLog of a message, or None."""
        message_id = getattr(properties, "message_id", None)
        try:
            return MessageLog.objects.filter(uuid=uuid.UUID(str(message_id))).first()
        except ValueError:
            return None

    def fail(self, log: MessageLog, err: BaseException | str) -> None:
        """Run the failure callbacks for a task that failed."""
        for callback in [*_global_failure_callbacks, *self.failure_callbacks]:
            try:
                callback(log, err)
            except Exception:
                self.logger.exception("Failure callback %r raised", callback)

    # ------------------------------------------------------------------ lifecycle

    @property
    def inflight(self) -> int:
        return self.intake.inflight if self.intake is not None else 0

    def start_consuming(self) -> None:
        """Start the I/O thread, the intake's thread and the task threads."""
        pool = TaskPool(
            self.name,
            self.concurrency,
            log_level=self.config.task_log_level,
            max_log_records=self.config.task_log_max_records,
            logger=self.logger,
            on_finished=lambda: self.intake.wake() if self.intake else None,
            live_log=self.live_log,
        )
        self.channel = ConsumerChannel(
            self.queue,
            self.config,
            self._on_delivery,
            prefetch=self.queue.prefetch or self.concurrency,
            name=f"carrot-{self.name}",
        )
        adaptive = None
        if self.queue.prefetch is None:  # left to carrot: adapt it to the tasks' durations
            policy = AdaptivePrefetch(self.concurrency)
            adaptive = PrefetchControl(policy, self.channel.set_prefetch)
        self.intake = Intake(
            hooks=self,
            channel=self.channel,
            queue=self.queue,
            config=self.config,
            recorder=self.recorder,
            pool=pool,
            stop=self._stop,
            logger=self.logger,
            prefetch=adaptive,
        )
        pool.start()
        self._intake_thread = threading.Thread(
            target=self.intake.run, name=f"{self.name}-recorder", daemon=True
        )
        self._intake_thread.start()
        self._io_thread = threading.Thread(
            target=self._io_loop, name=f"{self.name}-io", daemon=True
        )
        self._io_thread.start()

    def stop_consuming(self) -> None:
        """Stop taking messages; tasks in flight finish and are acked."""
        self._stop.set()
        if self.intake is not None:
            self.intake.wake()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the consumer to finish; return False if it is still running."""
        if self._io_thread is not None:
            self._io_thread.join(timeout)
            return not self._io_thread.is_alive()
        return True

    def is_alive(self) -> bool:
        return self._io_thread is not None and self._io_thread.is_alive()

    def _on_delivery(self, delivery: Delivery) -> None:
        assert self.intake is not None  # I/O thread: hand over and return at once
        self.intake.deliver(delivery)

    def _io_loop(self) -> None:
        assert self.channel is not None
        backoff = 0.5
        opened = False
        while not self._stop.is_set():
            try:
                self.channel.open()
                self.logger.info(
                    "Consuming %r on %s with %d thread(s)",
                    self.queue.name,
                    self.queue.broker.display_url,
                    self.concurrency,
                )
                if opened:
                    metrics.reconnected("consumer")
                opened = True
                backoff = 0.5
                while not self._stop.is_set():
                    self.channel.process(0.5)
            except QueueMismatch as exc:
                self.fatal_error = exc
                self.logger.error("%s", exc)
                self._stop.set()
            except BrokerUnavailable as exc:
                self.channel.close()
                if self._stop.is_set():
                    break
                self.logger.warning("%s; reconnecting in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        self._drain()

    def _drain(self) -> None:
        # Graceful stop: cancel the consumer (prefetched messages go back to the queue),
        # keep the connection's I/O running while the intake settles the tasks in flight,
        # then close.
        assert self.channel is not None and self.intake is not None
        assert self._intake_thread is not None
        self.intake.wake()
        if self.channel.is_open:
            self.channel.cancel()
        while self.intake.inflight and self.channel.is_open:
            try:
                self.channel.process(0.1)
            except BrokerUnavailable:
                break
        while self._intake_thread.is_alive():  # disconnected: let tasks record their state
            self._intake_thread.join(0.1)
        if self.channel.is_open:
            try:
                self.channel.process(0)  # flush the last acks
            except BrokerUnavailable:
                pass
        self.channel.close()
        self.intake.pool.stop()
