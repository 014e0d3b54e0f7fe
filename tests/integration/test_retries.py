"""Retries end to end: through a real worker, the outbox and RabbitMQ's delay queues."""

from __future__ import annotations

import pytest

from carrot.models import MessageLog
from tests.harness import finished, wait_until
from tests.testapp.models import Effect
from tests.testapp.tasks import asks_for_retry, flaky, only_value_errors_retry

pytestmark = pytest.mark.django_db(transaction=True)


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


@pytest.mark.slow  # ~7 s (three backoffs); keeps make test under 15 minutes
def test_exhausted_retries_fail_with_the_last_error(worker):
    log = finished(flaky.delay("always", 10))
    assert log.status == "FAILED"
    assert log.attempts == 4
    assert log.exception == "ConnectionError: attempt 4 failed (gave up after 4 attempts)"


def test_a_task_can_ask_for_a_retry(worker):
    log = finished(asks_for_retry.delay("ask"))
    assert (log.status, log.output, log.attempts) == ("COMPLETED", "second time lucky", 2)


def test_errors_outside_autoretry_for_fail_at_once(worker):
    value = finished(only_value_errors_retry.delay("v", "value"))
    key = finished(only_value_errors_retry.delay("k", "key"))
    assert (value.status, value.attempts) == ("FAILED", 3)
    assert (key.status, key.attempts) == ("FAILED", 1)
