"""Worker identity and liveness: each worker process refreshes its row every few seconds.

A worker's name is ``host:pid:instance``: the instance (a tag of the machine boot and PID
namespace, and random bits) tells apart two processes with the same host name and PID,
such as two containers whose worker is PID 1. A redelivered message whose task is
IN_PROGRESS on another worker is only run again when that worker is gone: its process no
longer exists (known at once for a process in this process table) or its heartbeat is
older than ``LEASE``. Until then the message waits in a delay queue.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import threading
from pathlib import Path

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from carrot.conf import get_config
from carrot.models import WorkerHeartbeat
from carrot.models.statistics import roll_up
from carrot.worker.processes import process_alive

logger = logging.getLogger(__name__)

BEAT_EVERY = 5.0
LEASE = WorkerHeartbeat.LEASE
ROLL_UP_EVERY = 60.0  # sum finished tasks into the statistics (any worker may; once each)
ROLL_UP_BUDGET = 20.0  # seconds per round: a long catch-up goes on at the next round


def process_table() -> str:
    """Return a tag of the process table this process lives in (its boot and PID
    namespace): PIDs compare only within one."""
    parts = []
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        return "-"  # no /proc: PIDs are never compared across processes
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:6]


def new_identity() -> str:
    """Return a name for a new worker process: ``host:pid:table.random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{process_table()}.{secrets.token_hex(4)}"


_identity: list[str] = []  # this process's name, made once (and again in a forked child)
os.register_at_fork(after_in_child=_identity.clear)


def worker_name() -> str:
    """Return this process's name as stored in MessageLog.worker and WorkerHeartbeat."""
    if not _identity:
        _identity.append(new_identity())
    return _identity[0]


def worker_alive(name: str) -> bool:
    """Return True if the worker called ``name`` looks alive."""
    if name == worker_name():
        return True
    parts = name.split(":")
    if (
        len(parts) == 3
        and parts[0] == socket.gethostname()
        and parts[2].split(".")[0] == process_table() != "-"
        and parts[1].isdigit()
        and not process_alive(int(parts[1]))
    ):
        return False  # its process is gone: known at once, without waiting for the lease
    return WorkerHeartbeat.objects.filter(name=name, last_seen__gte=timezone.now() - LEASE).exists()


class Heartbeat:
    """Keep this process's WorkerHeartbeat row fresh from a background thread, and keep
    the task statistics summed (``carrot.models.statistics.roll_up``)."""

    def __init__(self, name: str, queues: list[str], scheduler: bool) -> None:
        self.name = name
        self.queues = queues
        self.scheduler = scheduler
        configured = {q.name: q.concurrency for q in get_config().queues}
        self.concurrency = {q: configured[q] for q in queues if q in configured}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._statistics = threading.Thread(
            target=self._sum_statistics, name="statistics", daemon=True
        )

    def beat(self) -> None:
        WorkerHeartbeat.objects.update_or_create(
            name=self.name,
            defaults={
                "hostname": socket.gethostname(),
                "pid": os.getpid(),
                "queues": self.queues,
                "concurrency": self.concurrency,
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

    def _sum_statistics(self) -> None:
        # Its own thread: catching up on a long history must not delay the heartbeat.
        while not self._stop.wait(ROLL_UP_EVERY):
            close_old_connections()
            try:
                roll_up(budget=ROLL_UP_BUDGET)
            except DatabaseError as exc:  # the next round sums what this one could not
                logger.warning("Could not sum the task statistics: %s", exc)
            except Exception:  # statistics must never stop for good, nor stop the worker
                logger.exception("Summing the task statistics failed; trying again later")
        connection.close()

    def start(self) -> None:
        self._thread.start()
        self._statistics.start()

    def stop(self) -> None:
        """Stop beating and remove the row (a clean exit is not a dead worker)."""
        self._stop.set()
        self._thread.join(BEAT_EVERY + 1)
        # A round in progress may be left: its span commits whole or not at all.
        self._statistics.join(1.0)
        try:
            WorkerHeartbeat.objects.filter(name=self.name).delete()
        except DatabaseError:
            pass
        close_old_connections()
