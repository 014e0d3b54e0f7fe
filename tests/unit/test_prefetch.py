"""The adaptive prefetch as a pure policy: grows for short tasks, falls back at once for a
long one, and asks the broker to change only when it matters."""

from __future__ import annotations

from carrot.worker.prefetch import CEILING, HOLD, LONG_MIN, AdaptivePrefetch, PrefetchControl


def grown(policy: AdaptivePrefetch, duration: float, steps: int = 20) -> list[int]:
    values = []
    for _ in range(steps):
        policy.observe([duration])
        policy.update(None)
        values.append(policy.value)
    return values


def test_it_starts_at_the_concurrency_and_grows_for_short_tasks_to_the_ceiling():
    policy = AdaptivePrefetch(2)
    assert policy.value == 2
    values = grown(policy, 0.001)
    assert values[0] == 4  # at most twice over per step
    assert values == sorted(values) and values[-1] == CEILING


def test_it_holds_about_hold_seconds_of_work_per_thread():
    policy = AdaptivePrefetch(4)
    grown(policy, 0.02, steps=40)  # 20 ms tasks: 4 threads x 0.1 s / 0.02 s = 20 extra
    assert policy.value == 4 + int(4 * HOLD / 0.02)


def test_tasks_as_long_as_the_hold_get_only_the_concurrency():
    policy = AdaptivePrefetch(2)
    assert grown(policy, 1.0)[-1] == 2


def test_a_long_running_task_brings_it_back_to_the_concurrency_at_once():
    policy = AdaptivePrefetch(2)
    grown(policy, 0.001)
    assert policy.long_after() == LONG_MIN  # 10 x 1 ms is less than the minimum
    assert policy.update(oldest_running=0.05) is None  # not long yet
    assert policy.update(oldest_running=LONG_MIN + 0.01) == 2


def test_small_changes_are_not_sent_to_the_broker():
    policy = AdaptivePrefetch(2)
    grown(policy, 0.004)  # 2 + 2 x 0.1 / 0.004 = 52
    assert policy.value == 52
    policy.observe([0.0045])  # the average moves a little: the target is 46
    assert policy.update(None) is None
    assert policy.value == 52


def test_the_control_returns_held_messages_when_a_task_runs_long():
    applied = []
    control = PrefetchControl(AdaptivePrefetch(2), applied.append)
    for _ in range(10):
        assert control.step([0.001], None, busy=0, held=0) == 0
    assert applied[-1] == CEILING
    # One of two threads runs a long task: a window of one free thread, nothing held.
    assert control.step([], oldest_running=5.0, busy=1, held=30) == 30
    assert applied[-1] == 1
    assert control.step([], oldest_running=6.0, busy=1, held=0) == 0
    assert applied.count(1) == 1  # no change, nothing sent
    # Both threads are busy with long tasks: the consumer pauses.
    assert control.step([], oldest_running=6.5, busy=2, held=1) == 1
    assert applied[-1] == 0
    # The long tasks end: the window opens again at the concurrency, then grows.
    assert control.step([2.0, 2.0], None, busy=0, held=0) == 0
    assert applied[-1] == 2
    # Growth restarts once short tasks pull the average (2 s after the long ones) down.
    for _ in range(60):
        control.step([0.001], None, busy=0, held=0)
    assert applied[-1] >= CEILING * 0.75  # within the hysteresis of the ceiling


def test_with_one_thread_a_long_task_pauses_the_consumer():
    applied = []
    control = PrefetchControl(AdaptivePrefetch(1), applied.append)
    for _ in range(10):
        control.step([0.001], None, busy=0, held=0)
    assert control.step([], oldest_running=1.0, busy=1, held=7) == 7
    assert applied[-1] == 0


def test_a_gentler_shrink_returns_only_what_is_over_the_new_prefetch():
    applied = []
    control = PrefetchControl(AdaptivePrefetch(2), applied.append)
    for _ in range(10):
        control.step([0.001], None, busy=0, held=0)
    # Tasks got slower (10 ms): the target falls well below the ceiling.
    returned = [control.step([0.01], None, busy=0, held=80) for _ in range(10)]
    assert applied[-1] < CEILING
    assert sum(returned) > 0
    assert all(r <= 80 for r in returned)
