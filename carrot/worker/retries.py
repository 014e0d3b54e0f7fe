"""Whether and when a failed attempt runs again: a pure function of the task and error."""

from __future__ import annotations

import random
from collections.abc import Callable

from carrot.exceptions import Retry
from carrot.tasks import Task


def retry_delay(
    task: Task,
    error: BaseException | None,
    attempt: int,
    *,
    rand: Callable[[float, float], float] = random.uniform,
) -> float | None:
    """Return the seconds to wait before the next attempt, or None to fail for good.

    ``attempt`` is the number of the attempt that just failed (1 for the first run). A
    task retries up to ``task.retries`` times: on ``Retry``, on any ``autoretry_for``
    exception, or, when ``autoretry_for`` is empty, on any Exception.
    """
    if error is None or attempt > task.retries:
        return None
    if isinstance(error, Retry):
        if error.countdown is not None:
            return max(0.0, float(error.countdown))
    elif task.autoretry_for:
        if not isinstance(error, task.autoretry_for):
            return None
    elif not isinstance(error, Exception):
        return None
    delay = min(task.retry_backoff * 2 ** (attempt - 1), task.retry_backoff_max)
    return rand(delay / 2, delay) if task.retry_jitter else delay
