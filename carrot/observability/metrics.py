"""The worker's Prometheus instruments (the optional ``prometheus-client``).

Nothing is recorded, and ``prometheus_client`` is not imported, until a worker calls
``enable()`` (``manage.py carrot --metrics-port`` or ``CARROT['metrics']['port']``); until
then every function below returns at its first line. Labels are bounded: task names come
from the registry (an unregistered name is ``unregistered``), queues from the settings,
outcomes from a fixed list; never a task id.

Under ``--processes N`` each child records into files of its own (prometheus_client's
multiprocess mode, set up by ``exposition``) and the supervisor serves the sum.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from carrot.exceptions import CarrotConfigError

INSTALL_HINT = "Install it with: pip install 'django-carrot[metrics]'"

# From a millisecond to an hour.
DURATION_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
CONFIRM_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
OUTCOMES = ("completed", "failed", "retried", "rejected", "cancelled")
UNREGISTERED = "unregistered"


@dataclass(frozen=True)
class _Instruments:
    started: Any
    finished: Any
    duration: Any
    in_progress: Any
    prefetched: Any
    relay_backlog: Any
    confirm: Any
    reconnects: Any
    ticks: Any


_instruments: _Instruments | None = None
_lock = threading.Lock()


def installed(package: str) -> bool:
    """Return True if ``package`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken or half-removed installation
        return False


def available() -> bool:
    """Return True if prometheus-client is installed."""
    return installed("prometheus_client")


def enabled() -> bool:
    return _instruments is not None


def enable() -> None:
    """Create the instruments in prometheus_client's default registry (once per process).

    Raises CarrotConfigError when prometheus-client is not installed.
    """
    global _instruments
    with _lock:
        if _instruments is not None:
            return
        if not available():
            raise CarrotConfigError(f"Metrics need the prometheus-client package. {INSTALL_HINT}")
        import prometheus_client as prom

        _instruments = _Instruments(
            started=prom.Counter(
                "carrot_tasks_started",
                "Task runs started, by task and queue.",
                ["task", "queue"],
            ),
            finished=prom.Counter(
                "carrot_tasks",
                "Task attempts finished, by task, queue and outcome (completed, failed, "
                "retried, rejected to the dead-letter queue, cancelled while running).",
                ["task", "queue", "outcome"],
            ),
            duration=prom.Histogram(
                "carrot_task_duration_seconds",
                "How long task runs took, by task and queue.",
                ["task", "queue"],
                buckets=DURATION_BUCKETS,
            ),
            in_progress=prom.Gauge(
                "carrot_tasks_in_progress",
                "Tasks claimed and running in this worker, by queue.",
                ["queue"],
                multiprocess_mode="livesum",
            ),
            prefetched=prom.Gauge(
                "carrot_messages_prefetched",
                "Messages delivered to this worker and waiting for a task thread, by queue.",
                ["queue"],
                multiprocess_mode="livesum",
            ),
            relay_backlog=prom.Gauge(
                "carrot_relay_backlog_messages",
                "Messages handed to the publisher and not yet confirmed by RabbitMQ.",
                ["broker"],
                multiprocess_mode="livesum",
            ),
            confirm=prom.Histogram(
                "carrot_publish_confirm_seconds",
                "Time from publishing a message to RabbitMQ's confirm of it.",
                buckets=CONFIRM_BUCKETS,
            ),
            reconnects=prom.Counter(
                "carrot_broker_reconnects",
                "Connections to RabbitMQ opened again after one was lost, by kind "
                "(publisher, consumer).",
                ["connection"],
            ),
            ticks=prom.Counter(
                "carrot_scheduler_ticks",
                "Scheduled ticks published, and ticks skipped (missed while no scheduler "
                "ran, or the schedule names no valid task).",
                ["result"],
            ),
        )


def task_started(task: str, queue: str) -> None:
    m = _instruments
    if m is None:
        return
    m.started.labels(task, queue).inc()


def task_finished(task: str, queue: str, outcome: str, seconds: float | None) -> None:
    """Count an attempt's outcome (one of ``OUTCOMES``) and, when it ran, its duration."""
    m = _instruments
    if m is None:
        return
    m.finished.labels(task, queue, outcome).inc()
    if seconds is not None:
        m.duration.labels(task, queue).observe(seconds)


def queue_state(queue: str, *, running: int, prefetched: int) -> None:
    m = _instruments
    if m is None:
        return
    m.in_progress.labels(queue).set(running)
    m.prefetched.labels(queue).set(prefetched)


def relay_state(broker: str, backlog: int) -> None:
    m = _instruments
    if m is None:
        return
    m.relay_backlog.labels(broker).set(backlog)


def confirmed(latencies: Iterable[float]) -> None:
    m = _instruments
    if m is None:
        return
    for seconds in latencies:
        m.confirm.observe(seconds)


def reconnected(connection: str) -> None:
    m = _instruments
    if m is None:
        return
    m.reconnects.labels(connection).inc()


def ticks(*, published: int = 0, skipped: int = 0) -> None:
    m = _instruments
    if m is None:
        return
    if published:
        m.ticks.labels("published").inc(published)
    if skipped:
        m.ticks.labels("skipped").inc(skipped)
