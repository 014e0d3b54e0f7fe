"""The worker process: run a consumer per queue, the scheduler, the outbox sweeper, the
live log and a heartbeat until SIGTERM/SIGINT, then drain gracefully."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

from django.db import DatabaseError, close_old_connections
from django.utils.module_loading import import_string

from carrot.broker.connection import check_connection
from carrot.conf import QueueConfig, get_config
from carrot.exceptions import BrokerError
from carrot.models.handover import flush as flush_outbox
from carrot.observability import tracing
from carrot.observability.exposition import CHILD_ENV, start_worker
from carrot.publishing.sweeper import sweep_outbox
from carrot.scheduling.scheduler import Scheduler
from carrot.worker.cancels import CancelWatch
from carrot.worker.consumer import QueueConsumer
from carrot.worker.heartbeats import Heartbeat, worker_name
from carrot.worker.livelog import LiveLog


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
        while not self.stop_event.wait(self.EVERY):
            close_old_connections()
            try:
                sweep_outbox()
            except (DatabaseError, BrokerError) as exc:
                self.logger.warning("Outbox sweep failed (%s); trying again", exc)
        close_old_connections()


class Worker:
    """Run consumers for the consumable queues until SIGTERM/SIGINT."""

    def __init__(
        self,
        *,
        queues: Sequence[str] | None = None,
        scheduler: bool = True,
        consume: bool = True,
        logger: logging.Logger | None = None,
        metrics_port: int | None = None,
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
        self.scheduler: Scheduler | None = None
        self._scheduler_thread: threading.Thread | None = None
        self.consumers: list[QueueConsumer] = []
        self.heartbeat: Heartbeat | None = None
        self.sweeper: OutboxSweeper | None = None
        self.live_log: LiveLog | None = None
        self.cancels: CancelWatch | None = None
        self._stop = threading.Event()
        self._signals = 0
        self.metrics_port = metrics_port if metrics_port is not None else self.config.metrics.port

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
        self.heartbeat = Heartbeat(
            worker_name(), [q.name for q in self.queues], self.scheduler_enabled
        )
        self.heartbeat.beat()
        self.heartbeat.start()
        self.sweeper = OutboxSweeper(self.logger)
        self.sweeper.start()
        if self.queues:
            self.live_log = LiveLog(self.logger)
            self.live_log.start()
        for queue in self.queues:
            consumer = self._consumer(queue)
            consumer.live_log = self.live_log
            consumer.start_consuming()
            self.consumers.append(consumer)
        if self.queues:
            self.cancels = CancelWatch(
                lambda: [c.intake.pool for c in self.consumers if c.intake is not None],
                self.config.cancel_grace,
                self.logger,
            )
            self.cancels.start()
        if self.scheduler_enabled:
            self.scheduler = Scheduler()
            self._scheduler_thread = threading.Thread(
                target=self.scheduler.run, name="scheduler", daemon=True
            )
            self._scheduler_thread.start()

    def observe(self) -> None:
        """Record metrics (and serve them, unless a supervisor does), and put trace ids on
        log records, as configured."""
        address = self.config.metrics.address
        if start_worker(self.metrics_port, address) and not os.environ.get(CHILD_ENV):
            self.logger.info("Serving metrics on http://%s:%d/metrics", address, self.metrics_port)
        tracing.install_log_correlation()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        """Start, wait for a stop signal, stop gracefully; return the exit code."""
        self.check_broker()
        self.observe()
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
        if self.cancels is not None:
            self.cancels.stop()
        if self.live_log is not None:
            self.live_log.stop()  # the tasks have ended: their outcomes wrote their logs
        if self._scheduler_thread is not None:
            self._scheduler_thread.join(max(1.0, deadline - time.monotonic()))
        if self.sweeper is not None:
            self.sweeper.stop_event.set()
        if self.heartbeat is not None:
            self.heartbeat.stop()
        flush_outbox(5.0)  # publish what the relay holds; the outbox keeps anything left
        self.logger.info("Worker stopped")
        return exit_code
