"""Delays, time limits and liveness, through real workers (and the claim, in-process)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from carrot.broker import Delivery, delay_bucket
from carrot.models import MessageLog, WorkerHeartbeat
from carrot.recorder import Recorder
from carrot.tasks import resolve_eta
from tests.harness import finished, wait_until
from tests.testapp.models import Effect
from tests.testapp.tasks import add, blocked_sleep, busy_loop, record

pytestmark = pytest.mark.django_db(transaction=True)


def test_delay_buckets_are_powers_of_two():
    assert [delay_bucket(s) for s in (0.6, 1, 3, 4, 5, 100, 10**9)] == [1, 1, 2, 4, 4, 64, 2**21]


def test_countdown_and_eta_validation():
    assert resolve_eta(None, None) is None
    eta = resolve_eta(60, None)
    assert timedelta(seconds=59) < eta - datetime.now(tz=UTC) <= timedelta(seconds=60)
    with pytest.raises(ValueError, match="not both"):
        resolve_eta(1, timezone.now())
    with pytest.raises(ValueError, match="aware"):
        resolve_eta(None, datetime(2030, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match=">= 0"):
        resolve_eta(-1, None)


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


# ------------------------------------------------------------------ liveness, in-process


def delivery_for(log, redelivered=True):
    return Delivery(
        tag=1,
        generation=1,
        queue="default",
        redelivered=redelivered,
        body=b"",
        message_id=str(log.uuid),
        type=log.task,
        content_type="application/json",
        app_id="carrot",
        priority=0,
        headers={},
    )


def in_progress_on(owner):
    return MessageLog.objects.create(
        task="tests.testapp.tasks.add",
        status="IN_PROGRESS",
        attempts=1,
        worker=owner,
        uuid=uuid.uuid4(),
    )


def test_a_redelivery_waits_while_its_task_runs_on_a_live_worker():
    WorkerHeartbeat.objects.create(
        name="other-host:42", hostname="other-host", pid=42, last_seen=timezone.now()
    )
    log = in_progress_on("other-host:42")
    claim = Recorder("me:1", max_interruptions=3).claim(delivery_for(log), log.task, [], {})
    assert claim.run is False
    assert claim.wait == 16.0
    assert "still running on other-host:42" in claim.reason


def test_a_redelivery_runs_again_when_its_worker_went_silent():
    WorkerHeartbeat.objects.create(
        name="other-host:42",
        hostname="other-host",
        pid=42,
        last_seen=timezone.now() - timedelta(minutes=5),
    )
    log = in_progress_on("other-host:42")
    claim = Recorder("me:1", max_interruptions=3).claim(delivery_for(log), log.task, [], {})
    assert (claim.run, claim.attempt) == (True, 2)
    log.refresh_from_db()
    assert (log.interruptions, log.worker) == (1, "me:1")


def test_a_dead_process_on_this_host_is_known_dead_at_once():
    import socket
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    log = in_progress_on(f"{socket.gethostname()}:{proc.pid}")
    claim = Recorder("me:1", max_interruptions=3).claim(delivery_for(log), log.task, [], {})
    assert claim.run


def test_the_worker_records_its_heartbeat_while_it_runs(worker):
    beat = wait_until(lambda: WorkerHeartbeat.objects.filter(pid=worker.pid).first(), 10)
    assert set(beat.queues) == {"default", "other"}
    first = beat.last_seen
    wait_until(lambda: WorkerHeartbeat.objects.get(pk=beat.pk).last_seen > first, 15)
    worker.stop()
    assert not WorkerHeartbeat.objects.filter(pid=worker.pid).exists()
