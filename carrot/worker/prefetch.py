"""How many messages a worker holds for one queue when ``prefetch`` is left to carrot.

A worker that holds only as many messages as it has task threads waits a broker round
trip (ack, then the next delivery) between tasks; one that holds many makes short tasks
fast but keeps waiting messages from other workers while a long task runs. The adaptive
prefetch holds about ``HOLD`` seconds of work beyond what its threads run, judged from
how long recent tasks took, and falls back to the concurrency as soon as a task runs long
(the intake then returns the messages it held but did not start, so other workers take
them). A message is still claimed only when a task thread is free to run it.

A pure policy: the intake feeds it durations and the age of the oldest running task, and
applies what it decides.
"""

from __future__ import annotations

import math
from collections.abc import Callable

# Seconds of queued work a worker may hold per task thread beyond what its threads run.
HOLD = 0.1
# The most messages an adaptive prefetch holds.
CEILING = 100
# A running task is long once it ran this many times the recent average, and at least
# LONG_MIN seconds: the worker stops holding messages for it.
LONG_FACTOR = 10.0
LONG_MIN = 0.1
# How much one finished task moves the average (an exponentially weighted mean).
WEIGHT = 0.2


class AdaptivePrefetch:
    """The prefetch of one consumed queue: between its concurrency and ``ceiling``."""

    def __init__(self, concurrency: int, ceiling: int = CEILING) -> None:
        self.floor = max(1, concurrency)
        self.ceiling = max(self.floor, ceiling)
        self.value = self.floor
        self.average: float | None = None  # seconds a task took, recently

    def observe(self, durations: list[float]) -> None:
        """Take the durations of tasks that just finished."""
        for duration in durations:
            if self.average is None:
                self.average = duration
            else:
                self.average += WEIGHT * (duration - self.average)

    def long_after(self) -> float:
        """Return how long a task may run before it counts as long."""
        return max(LONG_MIN, LONG_FACTOR * (self.average or 0.0))

    def is_long(self, oldest_running: float | None) -> bool:
        """Whether the oldest running task has run long."""
        return oldest_running is not None and oldest_running > self.long_after()

    def target(self, oldest_running: float | None) -> int:
        """Return the prefetch for now, given how long the oldest running task has run."""
        if self.is_long(oldest_running):
            return self.floor
        if self.average is None:
            return self.floor  # nothing known yet: hold nothing extra
        extra = self.floor * HOLD / max(self.average, 1e-6)
        return min(self.ceiling, self.floor + math.floor(extra))

    def update(self, oldest_running: float | None) -> int | None:
        """Return the new prefetch if it should change, else None.

        It grows at most twice over per step (a few steps reach the ceiling) and shrinks
        at once; changes under a quarter are ignored, so the broker is not asked to
        change it on every step.
        """
        target = self.target(oldest_running)
        if target > self.value:
            target = min(target, self.value * 2)
            if target < self.value * 1.25:
                return None
        elif target < self.value and target != self.floor and target > self.value * 0.75:
            return None
        if target == self.value:
            return None
        self.value = target
        return target


class PrefetchControl:
    """Applies an adaptive prefetch to a consumer, step by step.

    While no task runs long, the consumer's window is the policy's value. Once one does,
    the window is the number of free task threads (0 pauses the consumer), so the worker
    holds nothing that waits for a thread: each message it takes runs at once, and the
    rest stay in the queue for other workers. RabbitMQ counts a window per consumer, so
    a new window is a new consumer; the window is therefore only changed when it must.
    """

    def __init__(self, policy: AdaptivePrefetch, apply: Callable[[int], None]) -> None:
        self.policy = policy
        self.apply = apply
        self.window = policy.value  # what the consumer was last given (0: paused)

    def step(
        self, durations: list[float], oldest_running: float | None, busy: int, held: int
    ) -> int:
        """Adjust after a step; return how many of the ``held`` messages (delivered, not
        started) to give back to the queue so that other workers can take them.

        ``busy`` counts the task threads running a task, ``held`` the messages that wait
        for one.
        """
        self.policy.observe(durations)
        changed = self.policy.update(oldest_running)
        if self.policy.is_long(oldest_running):
            free = max(0, self.policy.floor - busy)
            if free != self.window:
                self._set(free)
            return held  # with no thread free, nothing may wait here
        if self.window < self.policy.value or changed is not None:
            self._set(self.policy.value)
        return max(0, held - self.window)

    def _set(self, window: int) -> None:
        self.window = window
        self.apply(window)
