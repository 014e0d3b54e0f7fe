"""Retries: the pure decision of whether and when a failed attempt runs again."""

from __future__ import annotations

import pytest

from carrot import InvalidTask, Retry, task
from carrot.tasks import make_task
from carrot.worker.retries import retry_delay


def plain(x):
    return x


def fixed(lo, hi):
    return hi  # no jitter: the upper bound


def test_no_retries_by_default():
    assert retry_delay(make_task(plain), ValueError("x"), 1) is None


def test_exponential_backoff_capped_with_jitter_bounds():
    t = make_task(plain, retries=10, retry_backoff=2, retry_backoff_max=30)
    assert [retry_delay(t, ValueError(), n, rand=fixed) for n in (1, 2, 3, 4, 5, 6)] == [
        2,
        4,
        8,
        16,
        30,
        30,
    ]
    seen = []
    retry_delay(t, ValueError(), 3, rand=lambda lo, hi: seen.append((lo, hi)) or lo)
    assert seen == [(4, 8)]  # between half and all of the delay
    no_jitter = make_task(plain, retries=3, retry_backoff=1, retry_jitter=False)
    assert retry_delay(no_jitter, ValueError(), 2) == 2


def test_retries_stop_after_the_limit():
    t = make_task(plain, retries=2)
    assert retry_delay(t, ValueError(), 2) is not None
    assert retry_delay(t, ValueError(), 3) is None


def test_autoretry_for_limits_which_errors_retry():
    t = make_task(plain, retries=3, autoretry_for=(ConnectionError,))
    assert retry_delay(t, ConnectionRefusedError(), 1) is not None
    assert retry_delay(t, ValueError(), 1) is None


def test_retry_exception_sets_the_countdown_and_keyboard_interrupts_never_retry():
    t = make_task(plain, retries=1, autoretry_for=(KeyError,))
    assert retry_delay(t, Retry(countdown=7), 1) == 7
    assert retry_delay(make_task(plain, retries=1), KeyboardInterrupt(), 1) is None
    assert retry_delay(t, Retry(), 2) is None  # the limit holds for Retry too


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"retries": -1}, "retries"),
        ({"retry_backoff": 0}, "retry_backoff"),
        ({"autoretry_for": ValueError}, "autoretry_for"),
        ({"time_limit": "1m"}, "time_limit"),
        ({"retires": 3}, "unknown options"),
    ],
)
def test_bad_retry_options_fail_at_decoration(options, fragment):
    with pytest.raises(InvalidTask, match=fragment):
        task(**options)(plain)
