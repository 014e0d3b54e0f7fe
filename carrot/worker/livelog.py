"""Live logs: the log lines of running tasks, written while they run.

A task's ``carrot`` log lines are captured into its buffer (``logcapture``) and written
with its outcome when it ends; that write is the authority. Meanwhile one thread per
worker process writes, every ``FLUSH_INTERVAL``, the lines each running task has logged
so far, so the monitor shows them while it runs:

- only for a task that has run for at least one interval: a task that ends sooner costs
  nothing more than its outcome's write (the hot path of short tasks);
- only for a task with new lines since the last write, so a quiet task costs nothing;
- all of them in one transaction, however many lines they logged: a burst of lines is
  one UPDATE per task per interval, never one per line;
- with the lifecycle's ``LOG_SO_FAR``, conditional on the row still running the same
  attempt, so a late write never replaces an outcome's log or a later attempt's.

A database error is logged and the lines are written at the next round; it never reaches
the worker or the task.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.db import DatabaseError, close_old_connections, connections, router, transaction

from carrot.models import MessageLog
from carrot.models.lifecycle import LOG_SO_FAR
from carrot.worker.logcapture import LogBuffer

# Seconds between two writes of the running tasks' logs; a task that ends within its
# first interval is never written before its outcome.
FLUSH_INTERVAL = 1.0

# (row id, attempt, the log so far) for each running task to write.
LogRows = Sequence[tuple[int, int, dict[str, Any]]]


def write_logs(rows: LogRows) -> set[int]:
    """Write running tasks' logs so far in one transaction; return the row ids written.

    A row another transaction holds is left for the next round instead of waited for.
    """
    using = router.db_for_write(MessageLog)
    skip_locked = connections[using].features.has_select_for_update_skip_locked
    with transaction.atomic(using=using):
        # Lock what is free, skip what is not: a row the recorder holds is being finished
        # (its outcome's log wins anyway), and a writer that never waits for a lock cannot
        # deadlock with a group commit that locks the same rows in another order.
        wanted = {(pk, attempt) for pk, attempt, _ in rows}
        free = {
            pk
            for pk, attempt in MessageLog.objects.filter(pk__in=[pk for pk, _ in wanted])
            .in_progress()
            .select_for_update(skip_locked=skip_locked)
            .values_list("pk", "attempts")
            if (pk, attempt) in wanted
        }
        MessageLog.objects.apply_each(LOG_SO_FAR, [row for row in rows if row[0] in free])
    return free


class _Running:
    """One running task's buffer, and how much of it is written; while its ``with`` block
    runs, the live log writes it (a plain class, not a generator: this is per task)."""

    __slots__ = ("attempt", "buffer", "live", "row_id", "since", "written")

    def __init__(self, live: LiveLog, row_id: int, attempt: int, buffer: LogBuffer) -> None:
        self.live = live
        self.row_id = row_id
        self.attempt = attempt
        self.buffer = buffer
        self.since = 0.0  # the live log's clock when the task started
        self.written = 0  # buffer.emitted() at the last write

    def __enter__(self) -> _Running:
        self.since = self.live.clock()
        with self.live._lock:
            self.live._running.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self.live._lock:
            self.live._running.discard(self)


class LiveLog:
    """The running tasks of one worker process, and the thread that writes their logs."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = FLUSH_INTERVAL,
        write: Callable[[LogRows], set[int]] = write_logs,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.write = write
        self.clock = clock
        self._running: set[_Running] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watching(self, row_id: int, attempt: int, buffer: LogBuffer) -> _Running:
        """Make ``buffer`` the live log of a row's attempt while a ``with`` block runs."""
        return _Running(self, row_id, attempt, buffer)

    def due(self) -> list[tuple[_Running, int, list[dict[str, Any]]]]:
        """Return each task to write now, with how many records it emitted and its log."""
        now = self.clock()
        with self._lock:
            running = list(self._running)
        due = []
        for entry in running:
            if now - entry.since < self.interval:
                continue  # young: if it ends soon, its outcome writes its log
            emitted = entry.buffer.emitted()  # before the copy: at worst, written again
            if emitted != entry.written:
                due.append((entry, emitted, entry.buffer.as_list()))
        return due

    def flush(self) -> int:
        """Write the logs of the running tasks with new lines; return how many were written."""
        due = self.due()
        if not due:
            return 0
        written = self.write([(e.row_id, e.attempt, {"log": log}) for e, _, log in due])
        for entry, emitted, _ in due:
            if entry.row_id in written:
                entry.written = emitted
        if written:
            self.logger.debug(
                "Live log: wrote the log so far of %d running task(s) (rows %s)",
                len(written),
                ", ".join(map(str, sorted(written))),
            )
        return len(written)

    # ------------------------------------------------------------------ the thread

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="live-log", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; what it did not write, the outcomes write."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._round()
        close_old_connections()

    def _round(self) -> None:
        try:
            close_old_connections()
            self.flush()
        except DatabaseError as exc:
            self.logger.warning(
                "Could not write the logs of running tasks (%s); trying again in %gs",
                exc,
                self.interval,
            )
            # Drop the broken connection so the next round opens a fresh one.
            connections[router.db_for_write(MessageLog)].close()
        except Exception:
            # Best effort: the outcomes write every log anyway, so this thread must outlive
            # any surprise rather than silently stop showing live lines.
            self.logger.exception("Writing the logs of running tasks failed; trying again")
