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

from carrot.exceptions import TimeLimitExceeded
from carrot.messages import normalise_value
from carrot.models.lifecycle import error_type
from carrot.tasks import Task
from carrot.worker import logcapture

logger = logging.getLogger("carrot")

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


class _Limit:
    """Raise TimeLimitExceeded in the task's thread when its time is up."""

    def __init__(self, seconds: float) -> None:
        self.thread_id = threading.get_ident()
        self.lock = threading.Lock()
        self.running = True
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def _fire(self) -> None:
        with self.lock:
            if self.running:
                # Delivered when the thread next runs Python bytecode; a call blocked in C
                # is handled by the worker's watch (see TaskPool.check_time_limits).
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self.thread_id), ctypes.py_object(TimeLimitExceeded)
                )

    def __enter__(self) -> _Limit:
        self.timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        with self.lock:
            self.running = False
        self.timer.cancel()


def _call(task: Task, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if not task.time_limit:
        return task.func(*args, **kwargs)
    with _Limit(task.time_limit):
        return task.func(*args, **kwargs)


def run_task(
    task: Task,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    log_level: int,
    max_log_records: int,
    watch: Watch | None = None,
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
            result = _call(task, args, kwargs)
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
