"""The task call a worker is running now: ``carrot.current_call()``.

Set by the worker around each run (also seen inside ``async def`` tasks); None outside a
worker (a task called inline, a test). Code inside a task can read its message id, row
and attempt number from it, and ``carrot.backends`` builds a Django task's ``TaskContext``
from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from threading import Event


@dataclass(frozen=True)
class CurrentCall:
    """A running task call: its message id (the MessageLog's uuid), row and attempt."""

    message_id: str
    row_id: int | None
    attempt: int
    task: str
    queue: str
    # Set by the worker when someone cancels this running task (MessageLog.cancel()).
    cancel: Event = field(default_factory=Event, compare=False, repr=False)

    @property
    def cancel_requested(self) -> bool:
        """True once the task was asked to stop: finish early (return, or raise
        carrot.TaskCancelled); after ``CARROT['cancel_grace']`` the worker raises
        TaskCancelled in the task itself."""
        return self.cancel.is_set()


# A context variable, not a thread-local: an ``async def`` task runs in asgiref's event
# loop thread, which gets a copy of the task thread's context.
_current: ContextVar[CurrentCall | None] = ContextVar("carrot_current_call", default=None)


def current_call() -> CurrentCall | None:
    """Return the call this task is running for the worker, or None."""
    return _current.get()


current_task = current_call  # the name the task controls' documentation uses


@contextmanager
def running(call: CurrentCall) -> Iterator[CurrentCall]:
    """Make ``call`` the current call while the block runs."""
    token = _current.set(call)
    try:
        yield call
    finally:
        _current.reset(token)
