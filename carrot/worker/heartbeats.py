"""Worker liveness: each worker process refreshes its row every few seconds.

A redelivered message whose task is IN_PROGRESS on another worker is only run again when
that worker is gone: its process no longer exists (same host) or its heartbeat is older
than ``LEASE`` (any host). Until then the message waits in a delay queue.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta

from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from carrot.models import WorkerHeartbeat
from carrot.worker.processes import process_alive

logger = logging.getLogger(__name__)

BEAT_EVERY = 5.0
LEASE = timedelta(seconds=30)


def worker_name() -> str:
    """Return this process's name as stored in MessageLog.worker (``host:pid``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_alive(name: str) -> bool:
    """Return True if the worker called ``name`` (``host:pid``) looks alive."""
    host, _, pid = name.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return process_alive(int(pid))
    return WorkerHeartbeat.objects.filter(name=name, last_seen__gte=timezone.now() - LEASE).exists()


class Heartbeat:
    """Keep this process's WorkerHeartbeat row fresh from a background thread."""

    def __init__(self, name: str, queues: list[str], scheduler: bool) -> None:
        self.name = name
        self.queues = queues
        self.scheduler = scheduler
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def beat(self) -> None:
        host, _, pid = self.name.rpartition(":")
        WorkerHeartbeat.objects.update_or_create(
            name=self.name,
            defaults={
                "hostname": host,
                "pid": int(pid),
                "queues": self.queues,
                "scheduler": self.scheduler,
                "last_seen": timezone.now(),
            },
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            close_old_connections()
            try:
                self.beat()
            except DatabaseError as exc:
                logger.warning("Could not record this worker's heartbeat: %s", exc)
            self._stop.wait(BEAT_EVERY)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and remove the row (a clean exit is not a dead worker)."""
        self._stop.set()
        self._thread.join(BEAT_EVERY + 1)
        try:
            WorkerHeartbeat.objects.filter(name=self.name).delete()
        except DatabaseError:
            pass
        close_old_connections()
