"""Delays, time limits and liveness, through real workers (and the claim, in-process)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from carrot.models import MessageLog, WorkerHeartbeat
from tests.harness import finished, wait_until
from tests.testapp.models import Effect
from tests.testapp.tasks import add, blocked_sleep, busy_loop, record

pytestmark = pytest.mark.django_db(transaction=True)


def test_countdown_waits_in_rabbitmq_not_in_the_worker(worker, broker):
    started = time.monotonic()
    log = record.apply_async(args=("later",), countdown=3)
    assert log.eta is not None
    assert MessageLog.objects.get(pk=log.pk).eta == log.eta
    assert broker.count("default.delay.2s") == 1  # 3 s = a 2 s hop, then the rest
    log = finished(log)
    assert time.monotonic() - started >= 3
    assert log.start_time >= log.eta - timedelta(milliseconds=600)
    assert Effect.objects.filter(key="later").count() == 1


def test_countdown_survives_a_worker_restart(worker_factory, broker):
    first = worker_factory("--no-scheduler").wait_ready()
    log = record.apply_async(args=("restart",), countdown=4)
    time.sleep(1)
    first.stop()
    assert first.proc.returncode == 0
    time.sleep(1)
    worker_factory("--no-scheduler").wait_ready()
    log = finished(log)
    assert (log.status, log.attempts) == ("COMPLETED", 1)
    assert log.start_time >= log.eta - timedelta(milliseconds=600)
    assert Effect.objects.filter(key="restart").count() == 1


def test_a_time_limited_task_fails_with_the_reason(worker):
    log = finished(busy_loop.delay(30), 15)
    assert log.status == "FAILED"
    assert log.exception == (
        "TimeLimitExceeded: tests.testapp.tasks.busy_loop ran longer than its time limit of 1s"
    )
    assert log.duration < timedelta(seconds=5)


@pytest.mark.slow  # ~8 s; keeps make test under 15 minutes
def test_a_task_blocked_past_its_limit_is_abandoned_and_the_worker_keeps_serving(worker):
    log = finished(blocked_sleep.delay("stuck", 8), 15)
    assert log.status == "FAILED"
    assert "did not stop" in log.exception and "abandoned" in log.exception
    # Both task threads stay available while the abandoned one is still sleeping.
    assert finished(add.delay(1, 1)).output == 2
    assert finished(add.delay(2, 2)).output == 4
    # When the blocking call returns, the pending TimeLimitExceeded stops the task before
    # its next line, and the extra thread retires.
    worker.wait_for_log(r"default-task-\d ended after its abandoned task returned", 15)
    assert not Effect.objects.filter(key="stuck").exists()
    assert MessageLog.objects.get(pk=log.pk).status == "FAILED"  # its late end changes nothing


def test_the_worker_records_its_heartbeat_while_it_runs(worker):
    beat = wait_until(lambda: WorkerHeartbeat.objects.filter(pid=worker.pid).first(), 10)
    assert set(beat.queues) == {"default", "other"}
    first = beat.last_seen
    wait_until(lambda: WorkerHeartbeat.objects.get(pk=beat.pk).last_seen > first, 15)
    worker.stop()
    assert not WorkerHeartbeat.objects.filter(pid=worker.pid).exists()
