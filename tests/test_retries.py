"""Retries: the pure decision, then end to end through a real worker and delay queues."""

from __future__ import annotations

import pytest

from carrot import InvalidTask, Retry, task
from carrot.models import MessageLog
from carrot.retries import retry_delay
from carrot.tasks import make_task
from tests.harness import finished, wait_until
from tests.testapp.models import Effect
from tests.testapp.tasks import asks_for_retry, flaky, only_value_errors_retry


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


# ------------------------------------------------------------------ end to end

pytestmark_e2e = pytest.mark.django_db(transaction=True)


@pytestmark_e2e
def test_a_retried_task_succeeds_on_attempt_3_with_attempts_recorded(worker, broker):
    log = flaky.delay("flaky", 2)
    # Between attempts the row is back in the queue with the last error and an eta.
    wait_until(
        lambda: MessageLog.objects.filter(
            pk=log.pk, status="PUBLISHED", exception__contains="attempt 1"
        ).exists(),
        20,
    )
    row = MessageLog.objects.get(pk=log.pk)
    assert row.eta is not None and row.attempts == 1
    log = finished(log)
    assert (log.status, log.output, log.attempts) == ("COMPLETED", 3, 3)
    assert log.exception == ""
    assert Effect.objects.filter(key="flaky").count() == 3
    worker.wait_for_log(r"Retrying tests.testapp.tasks.flaky \S+ in 2.0s: attempt 2 failed")
    assert broker.count("default") == 0


@pytestmark_e2e
def test_exhausted_retries_fail_with_the_last_error(worker):
    log = finished(flaky.delay("always", 10))
    assert log.status == "FAILED"
    assert log.attempts == 4
    assert log.exception == "ConnectionError: attempt 4 failed (gave up after 4 attempts)"


@pytestmark_e2e
def test_a_task_can_ask_for_a_retry(worker):
    log = finished(asks_for_retry.delay("ask"))
    assert (log.status, log.output, log.attempts) == ("COMPLETED", "second time lucky", 2)


@pytestmark_e2e
def test_errors_outside_autoretry_for_fail_at_once(worker):
    value = finished(only_value_errors_retry.delay("v", "value"))
    key = finished(only_value_errors_retry.delay("k", "key"))
    assert (value.status, value.attempts) == ("FAILED", 3)
    assert (key.status, key.attempts) == ("FAILED", 1)
