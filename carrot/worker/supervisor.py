"""``manage.py carrot --processes N``: N worker processes under one supervisor.

The supervisor holds no database or broker connection. It starts each worker as a new
``manage.py carrot`` process (only the first runs the scheduler), restarts a worker that
dies, and forwards SIGTERM/SIGINT so every worker drains gracefully; a second signal
kills them all at once.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from carrot.observability.exposition import SummedMetrics
from carrot.worker.processes import child_environment, manage_command

logger = logging.getLogger(__name__)

RESTART_BACKOFF_MAX = 30.0
HEALTHY_AFTER = 30.0  # a child that lived this long restarts without backoff


@dataclass
class _Slot:
    index: int
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = 0.0
    restart_at: float = 0.0


class Supervisor:
    def __init__(
        self,
        processes: int,
        worker_args: list[str],
        *,
        scheduler: bool,
        shutdown_timeout: float,
        metrics: SummedMetrics | None = None,
    ) -> None:
        self.slots = []
        for index in range(processes):
            args = list(worker_args)
            if index > 0 or not scheduler:
                args.append("--no-scheduler")
            self.slots.append(_Slot(index, args))
        self.shutdown_timeout = shutdown_timeout
        self.metrics = metrics  # serves the sum of the workers' metrics
        self.stopping = False
        self.signals = 0

    def _spawn(self, slot: _Slot) -> None:
        command = manage_command("carrot", *slot.args)
        extra = self.metrics.child_environment() if self.metrics is not None else {}
        slot.proc = subprocess.Popen(  # noqa: S603  (our own command line)
            command, env=child_environment(CARROT_WORKER_INDEX=str(slot.index), **extra)
        )
        slot.started = time.monotonic()
        logger.info("Started worker %d (pid %d)", slot.index + 1, slot.proc.pid)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.signals += 1
        if self.signals > 1:
            logger.warning("Second signal: killing every worker now")
            for slot in self.slots:
                if slot.proc and slot.proc.poll() is None:
                    slot.proc.kill()
            os._exit(1)
        self.stopping = True
        logger.info(
            "Received %s: stopping %d worker(s) gracefully",
            signal.Signals(signum).name,
            len(self.slots),
        )
        for slot in self.slots:
            if slot.proc and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            if self.metrics is not None:
                self.metrics.serve()
                logger.info(
                    "Serving the workers' metrics on http://%s:%d/metrics",
                    self.metrics.address,
                    self.metrics.port,
                )
            return self._supervise()
        finally:
            if self.metrics is not None:
                self.metrics.close()  # its directory of the workers' files

    def _supervise(self) -> int:
        for slot in self.slots:
            self._spawn(slot)
        while not self.stopping:
            now = time.monotonic()
            for slot in self.slots:
                if slot.proc is None:
                    if now >= slot.restart_at and not self.stopping:
                        self._spawn(slot)
                    continue
                code = slot.proc.poll()
                if code is None or self.stopping:
                    continue
                if self.metrics is not None:
                    self.metrics.child_exited(slot.proc.pid)
                lived = now - slot.started
                slot.backoff = (
                    0.0
                    if lived > HEALTHY_AFTER
                    else min(max(slot.backoff * 2, 1.0), RESTART_BACKOFF_MAX)
                )
                logger.warning(
                    "Worker %d (pid %d) exited with code %s; restarting in %.0fs",
                    slot.index + 1,
                    slot.proc.pid,
                    code,
                    slot.backoff,
                )
                slot.proc, slot.restart_at = None, now + slot.backoff
            time.sleep(0.2)
        return self._wait_for_children()

    def _wait_for_children(self) -> int:
        deadline = time.monotonic() + self.shutdown_timeout + 5
        exit_code = 0
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                code = slot.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error(
                    "Worker %d (pid %d) did not stop in time; killing it",
                    slot.index + 1,
                    slot.proc.pid,
                )
                slot.proc.kill()
                code = slot.proc.wait()
            exit_code = exit_code or (1 if code else 0)
        logger.info("Supervisor stopped")
        return exit_code
