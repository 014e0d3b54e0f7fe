"""The task threads of one consumed queue, and the watch on their time limits.

Claimed work goes in (``put``); each thread runs one task at a time with its ``carrot``
log captured (and written while it runs by the process's ``LiveLog``), and hands
``(work, outcome)`` back through ``finished``. A task blocked outside Python past its
time limit is failed from here and its thread abandoned; a new thread takes its slot, so
the queue keeps its full concurrency.
"""

from __future__ import annotations

import logging
import queue as queuelib
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from carrot.broker.consuming import Delivery
from carrot.current import CurrentCall, running
from carrot.exceptions import TimeLimitExceeded
from carrot.models.lifecycle import error_type
from carrot.observability import metrics, tracing
from carrot.tasks import Task
from carrot.worker.attempts import Claim
from carrot.worker.livelog import LiveLog
from carrot.worker.logcapture import LogBuffer
from carrot.worker.runner import Guard, Outcome, Watch, run_task

# After its time limit, how long a task blocked outside Python code may keep its thread.
ABANDON_GRACE = 2.0


@dataclass(eq=False)
class Work:
    """A claimed delivery on its way to a task thread and back."""

    delivery: Delivery
    claim: Claim
    task: Task
    args: list[Any]
    kwargs: dict[str, Any]
    deadline: float | None = None
    started: float | None = None  # time.monotonic() when its thread took it
    lock: threading.Lock = field(default_factory=threading.Lock)
    settled: bool = False  # its outcome was handed back (by its thread or by the watch)
    buffer: LogBuffer | None = None  # its log so far, once its thread runs it
    span: Any = None  # its OpenTelemetry span while it runs; the intake ends it
    guard: Guard = field(default_factory=Guard)  # raises in its thread (time limit, cancel)
    cancel: threading.Event = field(default_factory=threading.Event)  # cancel_requested
    cancel_by: float | None = None  # time.monotonic() when TaskCancelled is raised in it

    @property
    def message_id(self) -> str:
        return str(self.delivery.message_id)

    def settle(self) -> bool:
        """Return True for the first caller only."""
        with self.lock:
            if self.settled:
                return False
            self.settled = True
            return True


class TaskPool:
    """``size`` threads running claimed tasks for one queue."""

    def __init__(
        self,
        name: str,
        size: int,
        *,
        log_level: int,
        max_log_records: int,
        logger: logging.Logger,
        on_finished: Callable[[], None],
        live_log: LiveLog | None = None,
    ) -> None:
        self.name = name
        self.size = size
        self.log_level = log_level
        self.max_log_records = max_log_records
        self.logger = logger
        self.on_finished = on_finished
        self.live_log = live_log
        self.finished: queuelib.SimpleQueue[tuple[Work, Outcome]] = queuelib.SimpleQueue()
        self._ready: queuelib.SimpleQueue[Work | None] = queuelib.SimpleQueue()
        self._running: dict[str, Work] = {}  # message id -> work a thread is running
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for _ in range(self.size):
            self._start_thread()

    def _start_thread(self) -> None:
        with self._lock:
            number = len(self._threads) + 1
            thread = threading.Thread(
                target=self._loop, name=f"{self.name}-task-{number}", daemon=True
            )
            self._threads.append(thread)
        thread.start()

    def put(self, work: Work) -> None:
        self._ready.put(work)

    def stop(self) -> None:
        """Let every thread end once the work it was given is done."""
        with self._lock:
            count = len(self._threads)
        for _ in range(count):
            self._ready.put(None)

    def _loop(self) -> None:
        me = threading.current_thread()
        while True:
            work = self._ready.get()
            if work is None:
                return
            work.started = time.monotonic()
            with self._lock:
                self._running[work.message_id] = work
            task, queue = work.task.name, work.delivery.queue
            call = CurrentCall(
                work.message_id, work.claim.log_id, work.claim.attempt, task, queue, work.cancel
            )
            metrics.task_started(task, queue)
            work.span = tracing.start_run(
                work.delivery.headers,
                queue=queue,
                message_id=work.message_id,
                task=task,
                attempt=work.claim.attempt,
            )
            try:
                with running(call), tracing.current(work.span):
                    outcome = run_task(
                        work.task,
                        work.args,
                        work.kwargs,
                        log_level=self.log_level,
                        max_log_records=self.max_log_records,
                        watch=self._watch(work),
                        guard=work.guard,
                    )
            finally:
                with self._lock:
                    self._running.pop(work.message_id, None)
            if work.cancel.is_set() and not outcome.succeeded:
                outcome.cancelled = True  # asked to stop: whatever it raised, not retried
            if work.settle():
                self.finished.put((work, outcome))
                self.on_finished()
            else:
                # The time-limit watch already failed it and gave this slot a new thread:
                # this one retires instead of taking more work.
                self.logger.info("%s ended after its abandoned task returned", me.name)
                return

    def _watch(self, work: Work) -> Watch:
        """Keep the task's log buffer at hand while it runs, and show its lines live when
        the worker writes them."""
        live, row_id = self.live_log, work.claim.log_id

        def watch(buffer: LogBuffer) -> AbstractContextManager[object]:
            work.buffer = buffer  # the time-limit watch records it, should it fail the task
            if live is None or row_id is None:
                return nullcontext()
            return live.watching(row_id, work.claim.attempt, buffer)

        return watch

    def running(self) -> list[Work]:
        """Return the work its threads run now."""
        with self._lock:
            return list(self._running.values())

    def oldest_running(self) -> float | None:
        """Return for how many seconds the longest-running task has run, or None."""
        with self._lock:
            starts = [w.started for w in self._running.values() if w.started is not None]
        return time.monotonic() - min(starts) if starts else None

    def check_time_limits(self) -> None:
        """Fail tasks stuck past their time limit and give their slot a new thread.

        The task thread gets TimeLimitExceeded raised in it at the limit (run_task); code
        blocked outside Python (a socket, a C call) cannot be interrupted, so after a
        grace period its attempt is failed from here, and the thread is abandoned: it
        ends when the blocking call returns.
        """
        now = time.monotonic()
        with self._lock:
            overdue = [
                w
                for w in self._running.values()
                if w.deadline is not None and now > w.deadline + ABANDON_GRACE
            ]
        for work in overdue:
            if not work.settle():
                continue
            task = work.task
            message = (
                f"TimeLimitExceeded: {task.name} ran longer than its time limit of "
                f"{task.time_limit:g}s and did not stop (it is blocked outside Python "
                "code); its thread was abandoned"
            )
            self.logger.error("%s (%s)", message, work.message_id)
            outcome = Outcome(
                succeeded=False,
                exception=message,
                exception_type=error_type(TimeLimitExceeded),
                log=work.buffer.as_list() if work.buffer is not None else [],
            )
            self.finished.put((work, outcome))
            self.on_finished()
            self._start_thread()


def drain(source: queuelib.SimpleQueue[Any], limit: int = 500) -> list[Any]:
    """Take up to ``limit`` items from ``source`` without waiting."""
    out: list[Any] = []
    while len(out) < limit:
        try:
            out.append(source.get_nowait())
        except queuelib.Empty:
            break
    return out
