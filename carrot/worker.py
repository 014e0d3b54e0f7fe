"""The worker: consume queues, run registered tasks in threads, ack after recording.

Per consumable queue, a ``QueueConsumer`` owns one connection on its own I/O thread and
``concurrency`` task threads. The I/O thread only moves bytes (deliveries in, acks out,
heartbeats); tasks run on the task threads, so a long task never starves heartbeats.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from django.db import close_old_connections
from django.utils.module_loading import import_string

from carrot.broker import ConsumerChannel, Delivery, check_connection
from carrot.conf import BrokerConfig, CarrotConfig, QueueConfig, get_config
from carrot.exceptions import BrokerUnavailable, QueueMismatch
from carrot.handling import DeliveryHandling
from carrot.models import MessageLog
from carrot.recorder import Recorder

logger = logging.getLogger(__name__)

FailureCallback = Callable[[MessageLog, BaseException | str], Any]
_global_failure_callbacks: list[FailureCallback] = []


def add_failure_callback(callback: FailureCallback) -> None:
    """Call ``callback(log, exception)`` whenever any task fails (after FAILED is saved)."""
    _global_failure_callbacks.append(callback)


def worker_name() -> str:
    """Return this process's name as stored in MessageLog.worker (``host:pid``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class QueueConsumer(DeliveryHandling):
    """Consume one queue (the seed's ``Consumer``; see ``carrot.consumer``).

    Seed-compatible hooks a ``consumer_class`` may override: ``get_task_type``,
    ``get_message_log``, ``fail`` and ``add_failure_callback``.
    """

    task_type = "type"

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
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._init_handling()
        self._threads: list[threading.Thread] = []
        self._recorder_thread: threading.Thread = threading.Thread()
        self._io_thread: threading.Thread | None = None
        self.channel: ConsumerChannel | None = None

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
        return self._inflight

    def start_consuming(self) -> None:
        """Start the I/O thread, the recorder thread and the task threads."""
        self.channel = ConsumerChannel(
            self.queue,
            self.config,
            self._on_delivery,
            prefetch=self.queue.prefetch or self.concurrency,
            name=f"carrot-{self.name}",
        )
        for _ in range(self.concurrency):
            self._start_task_thread()
        self._recorder_thread = threading.Thread(
            target=self._recorder_loop, name=f"{self.name}-recorder", daemon=True
        )
        self._recorder_thread.start()
        self._io_thread = threading.Thread(
            target=self._io_loop, name=f"{self.name}-io", daemon=True
        )
        self._io_thread.start()

    def _start_task_thread(self) -> None:
        with self._lock:
            number = len(self._threads) + 1
            thread = threading.Thread(
                target=self._task_loop, name=f"{self.name}-task-{number}", daemon=True
            )
            self._threads.append(thread)
        thread.start()

    def replace_task_thread(self) -> None:
        """Start one more task thread (an abandoned one is retiring)."""
        self._start_task_thread()

    def stop_consuming(self) -> None:
        """Stop taking messages; tasks in flight finish and are acked."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the consumer to finish; return False if it is still running."""
        if self._io_thread is not None:
            self._io_thread.join(timeout)
            return not self._io_thread.is_alive()
        return True

    def is_alive(self) -> bool:
        return self._io_thread is not None and self._io_thread.is_alive()

    def _io_loop(self) -> None:
        assert self.channel is not None
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self.channel.open()
                self.logger.info(
                    "Consuming %r on %s with %d thread(s)",
                    self.queue.name,
                    self.queue.broker.display_url,
                    self.concurrency,
                )
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
        # Graceful stop: cancel the consumer (prefetched messages go back to the queue), keep
        # the connection's I/O running while the recorder settles the tasks in flight, then
        # close.
        assert self.channel is not None
        self._wake.set()
        if self.channel.is_open:
            self.channel.cancel()
        while self._inflight and self.channel.is_open:
            try:
                self.channel.process(0.1)
            except BrokerUnavailable:
                break
        while self._recorder_thread.is_alive():  # disconnected: let tasks record their state
            self._recorder_thread.join(0.1)
        if self.channel.is_open:
            try:
                self.channel.process(0)  # flush the last acks
            except BrokerUnavailable:
                pass
        self.channel.close()
        with self._lock:
            count = len(self._threads)
        for _ in range(count):
            self._ready.put(None)

    def _on_delivery(self, delivery: Delivery) -> None:
        # I/O thread: hand over to the recorder and return at once.
        with self._inflight_lock:
            self._inflight += 1
        self._incoming.put(delivery)
        self._wake.set()


class OutboxSweeper(threading.Thread):
    """Publish outbox rows whose first publish was uncertain or never happened.

    Every worker process runs one; entries are leased, so several never collide.
    """

    EVERY = 5.0

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(name="outbox-sweeper", daemon=True)
        self.logger = logger
        self.stop_event = threading.Event()

    def run(self) -> None:
        from django.db import DatabaseError

        from carrot.exceptions import BrokerError
        from carrot.outbox import sweep_outbox

        while not self.stop_event.wait(self.EVERY):
            close_old_connections()
            try:
                sweep_outbox()
            except (DatabaseError, BrokerError) as exc:
                self.logger.warning("Outbox sweep failed (%s); trying again", exc)
        close_old_connections()


def _as_broker(host: Any) -> BrokerConfig | None:
    if host is None or isinstance(host, BrokerConfig):
        return host
    broker = getattr(host, "broker", None)  # carrot.objects.VirtualHost
    return broker if isinstance(broker, BrokerConfig) else None


class Worker:
    """Run consumers for the consumable queues until SIGTERM/SIGINT."""

    def __init__(
        self,
        *,
        queues: Sequence[str] | None = None,
        scheduler: bool = True,
        consume: bool = True,
        logger: logging.Logger | None = None,
    ) -> None:
        self.config = get_config()
        self.logger = logger or logging.getLogger(__name__)
        if not consume:
            selected = []
        elif queues:
            selected = [self.config.queue(name) for name in queues]
        else:
            selected = [q for q in self.config.queues if q.consumable]
        self.queues = selected
        self.scheduler_enabled = scheduler and self.config.scheduler.enabled
        self.scheduler: Any = None
        self._scheduler_thread: threading.Thread | None = None
        self.consumers: list[QueueConsumer] = []
        self.heartbeat: Any = None
        self.sweeper: OutboxSweeper | None = None
        self._stop = threading.Event()
        self._signals = 0

    def _consumer(self, queue: QueueConfig) -> QueueConsumer:
        # consumer_class comes from settings (trusted), never from a message.
        cls = import_string(queue.consumer_class)
        return cls(queue.broker, queue.name, self.logger, f"{queue.name}")

    def check_broker(self) -> None:
        """Raise BrokerUnavailable if any queue's broker cannot be reached."""
        seen: set[Any] = set()
        for queue in self.queues or [self.config.queue("default")]:
            if queue.broker.key not in seen:
                seen.add(queue.broker.key)
                check_connection(queue.broker, self.config)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._signals += 1
        if self._signals > 1:
            self.logger.warning("Second signal: exiting now; unfinished tasks will be redelivered")
            os._exit(1)
        self.logger.info(
            "Received %s: finishing the tasks in flight, then exiting (send it again to exit now)",
            signal.Signals(signum).name,
        )
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        if os.environ.get("CARROT_WORKER_INDEX") is not None:
            # A child of --processes: Ctrl-C reaches the whole process group and the
            # supervisor forwards it as SIGTERM; counting both would be a "second signal".
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        else:
            signal.signal(signal.SIGINT, self._on_signal)

    def start(self) -> None:
        """Start every consumer (and the scheduler)."""
        from carrot.heartbeats import Heartbeat

        self.heartbeat = Heartbeat(
            worker_name(), [q.name for q in self.queues], self.scheduler_enabled
        )
        self.heartbeat.beat()
        self.heartbeat.start()
        self.sweeper = OutboxSweeper(self.logger)
        self.sweeper.start()
        for queue in self.queues:
            consumer = self._consumer(queue)
            consumer.start_consuming()
            self.consumers.append(consumer)
        if self.scheduler_enabled:
            from carrot.scheduler import Scheduler

            self.scheduler = Scheduler()
            self._scheduler_thread = threading.Thread(
                target=self.scheduler.run, name="scheduler", daemon=True
            )
            self._scheduler_thread.start()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Start, wait for a stop signal, stop gracefully; return the exit code."""
        self.check_broker()
        self.start()
        exit_code = 0
        while not self._stop.wait(0.5):
            failed = [c for c in self.consumers if c.fatal_error is not None]
            if failed:
                exit_code = 1
                break
        return self.shutdown(exit_code)

    def shutdown(self, exit_code: int = 0) -> int:
        """Stop consuming, wait up to ``shutdown_timeout`` for tasks in flight."""
        if self.scheduler is not None:
            self.scheduler.stop()  # first, so nothing new is published while draining
        for consumer in self.consumers:
            consumer.stop_consuming()
        deadline = time.monotonic() + self.config.shutdown_timeout
        for consumer in self.consumers:
            if not consumer.join(max(0.0, deadline - time.monotonic())):
                self.logger.error(
                    "Shutdown timed out after %gs with %d task(s) still running on %r; their "
                    "messages will be redelivered",
                    self.config.shutdown_timeout,
                    consumer.inflight,
                    consumer.queue.name,
                )
                exit_code = 1
        if self._scheduler_thread is not None:
            self._scheduler_thread.join(max(1.0, deadline - time.monotonic()))
        if self.sweeper is not None:
            self.sweeper.stop_event.set()
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self.logger.info("Worker stopped")
        return exit_code
