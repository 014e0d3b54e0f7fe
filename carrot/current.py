"""The task call a worker thread is running now: ``carrot.current_call()``.

Set by the worker around each run; None outside a worker (a task called inline, a test).
Code inside a task can read its message id, row and attempt number from it, and
``carrot.backends`` builds the ``TaskContext`` of a Django task from it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class CurrentCall:
    """A running task call: its message id (the MessageLog's uuid), row and attempt."""

    message_id: str
    row_id: int | None
    attempt: int
    task: str
    queue: str


_local = threading.local()


def current_call() -> CurrentCall | None:
    """Return the call this thread is running for the worker, or None."""
    call: CurrentCall | None = getattr(_local, "call", None)
    return call


@contextmanager
def running(call: CurrentCall) -> Iterator[CurrentCall]:
    """Make ``call`` this thread's current call while the block runs."""
    previous = getattr(_local, "call", None)
    _local.call = call
    try:
        yield call
    finally:
        _local.call = previous
