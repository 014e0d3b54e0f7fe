"""Run one task call and describe what happened, without touching the broker."""

from __future__ import annotations

import ctypes
import logging
import threading
import time
import traceback as tb
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from django.db import close_old_connections

from carrot.exceptions import TaskCancelled, TimeLimitExceeded
from carrot.messages import normalise_value
from carrot.models.lifecycle import error_type
from carrot.tasks import Task
from carrot.worker import logcapture

logger = logging.getLogger("carrot")

CANCELLED_TEXT = "TaskCancelled: cancelled while it ran"

# Given the task's log buffer, what to do with it while the task runs (the live log).
Watch = Callable[[logcapture.LogBuffer], AbstractContextManager[object]]


@dataclass
class Outcome:
    """The result of one attempt."""

    succeeded: bool
    output: Any = None
    exception: str = ""
    exception_type: str = ""  # the dotted path of the exception's class
    traceback: str = ""
    error: BaseException | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    duration: float = 0.0
    cancelled: bool = False  # it ended because it was cancelled


def user_traceback(exc: BaseException) -> str:
    """Format a task's traceback from the task's own code (carrot's frames left out)."""
    summary = tb.TracebackException.from_exception(exc)
    while len(summary.stack) > 1 and summary.stack[0].filename == __file__:
        del summary.stack[0]
    return "".join(summary.format())


def describe_exception(exc: BaseException) -> str:
    """Return ``ExceptionType: message`` for the MessageLog."""
    text = str(exc)
    name = type(exc).__qualname__
    return f"{name}: {text}" if text else name


class Guard:
    """Raise an exception in a task's thread while (and only while) its function runs:
    TimeLimitExceeded at its time limit, TaskCancelled when it is cancelled."""

    def __init__(self) -> None:
        self.thread_id: int | None = None
        self.lock = threading.Lock()
        self.running = False
        self.timer: threading.Timer | None = None

    def interrupt(self, exc_class: type[BaseException]) -> bool:
        """Raise ``exc_class`` in the task's thread; return False if it is not running."""
        with self.lock:
            if not self.running or self.thread_id is None:
                return False
            # Delivered when the thread next runs Python bytecode; a call blocked in C
            # is handled by the worker's watch (see TaskPool.check_time_limits).
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.thread_id), ctypes.py_object(exc_class)
            )
            return True

    def __enter__(self) -> Guard:
        with self.lock:
            self.thread_id = threading.get_ident()
            self.running = True
        return self

    def limit(self, seconds: float) -> None:
        self.timer = threading.Timer(seconds, self.interrupt, (TimeLimitExceeded,))
        self.timer.daemon = True
        self.timer.start()

    def __exit__(self, *exc: Any) -> None:
        with self.lock:
            self.running = False
        if self.timer is not None:
            self.timer.cancel()


def _call(task: Task, args: list[Any], kwargs: dict[str, Any], guard: Guard) -> Any:
    with guard:
        if task.time_limit:
            guard.limit(task.time_limit)
        return task.func(*args, **kwargs)


def run_task(
    task: Task,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    log_level: int,
    max_log_records: int,
    watch: Watch | None = None,
    guard: Guard | None = None,
) -> Outcome:
    """Call the task with its arguments, capturing its ``carrot`` log lines (shown live
    through ``watch``)."""
    # A connection that went stale between tasks (server restart, CONN_MAX_AGE) is
    # replaced instead of failing the task, as a request would.
    close_old_connections()
    started = time.monotonic()
    with (
        logcapture.capture(log_level, max_log_records) as buffer,
        watch(buffer) if watch is not None else nullcontext(),
    ):
        try:
            # The limit's exception may land just after the call returned, inside _call;
            # it is caught here all the same.
            result = _call(task, args, kwargs, guard or Guard())
        except TaskCancelled as exc:  # raised by the worker after the grace, or by the task
            outcome = Outcome(
                succeeded=False,
                exception=describe_exception(exc) if str(exc) else CANCELLED_TEXT,
                exception_type=error_type(TaskCancelled),
                traceback=user_traceback(exc),
                error=exc,
                cancelled=True,
            )
        except TimeLimitExceeded as exc:
            message = (
                f"TimeLimitExceeded: {task.name} ran longer than its time limit of "
                f"{task.time_limit:g}s"
            )
            outcome = Outcome(
                succeeded=False,
                exception=message,
                exception_type=error_type(TimeLimitExceeded),
                traceback=user_traceback(exc),
                error=TimeLimitExceeded(message),
            )
        except BaseException as exc:  # sys.exit(), CancelledError...: the task's, not the worker's
            outcome = Outcome(
                succeeded=False,
                exception=describe_exception(exc),
                exception_type=error_type(type(exc)),
                traceback=user_traceback(exc),
                error=exc,
            )
        else:
            try:
                output = normalise_value(result)
            except TypeError:
                kind = type(result)
                logger.warning(
                    "The return value of %s is a %s.%s, which is not JSON; its repr() is "
                    "stored as text instead.",
                    task.name,
                    kind.__module__,
                    kind.__qualname__,
                )
                output = repr(result)
            outcome = Outcome(succeeded=True, output=output)
    close_old_connections()
    outcome.log = buffer.as_list()
    outcome.duration = time.monotonic() - started
    return outcome
