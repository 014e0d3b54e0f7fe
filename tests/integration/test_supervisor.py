"""``manage.py carrot --processes N``: several worker processes under one supervisor."""

from __future__ import annotations

import os
import re
import signal

import pytest

from carrot.models import MessageLog
from tests.harness import wait_until
from tests.testapp.models import Effect
from tests.testapp.tasks import sleep_then_record

pytestmark = pytest.mark.django_db(transaction=True)


def child_pids(log: str) -> list[int]:
    return [int(p) for p in re.findall(r"Started worker \d \(pid (\d+)\)", log)]


def test_two_processes_consume_and_a_killed_one_is_replaced(worker_factory, broker):
    supervisor = worker_factory("--no-scheduler", "--processes", "2")
    supervisor.wait_for_log(r"Consuming 'default'", 30, count=2)
    first = child_pids(supervisor.log())
    assert len(first) == 2 and supervisor.pid not in first

    logs = [sleep_then_record.delay(f"spread-{i}", 0.3) for i in range(12)]
    wait_until(lambda: MessageLog.objects.completed().count() == 12, 60)
    pids = set(Effect.objects.values_list("pid", flat=True))
    assert pids == set(first)  # both children took work; the supervisor ran none

    os.kill(first[0], signal.SIGKILL)
    supervisor.wait_for_log(r"Worker 1 \(pid \d+\) exited with code -9; restarting", 20)
    supervisor.wait_for_log(r"Started worker 1 \(pid \d+\)", 20, count=2)
    supervisor.wait_for_log(r"Consuming 'default'", 30, count=3)
    replacement = child_pids(supervisor.log())[-1]
    assert replacement not in first

    more = [sleep_then_record.delay(f"after-{i}", 0.1) for i in range(6)]
    wait_until(lambda: MessageLog.objects.completed().count() == 18, 60)
    assert all(MessageLog.objects.get(pk=log.pk).status == "COMPLETED" for log in logs + more)

    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0
    assert "Supervisor stopped" in supervisor.log()
    for pid in (first[1], replacement):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_only_the_first_process_runs_the_scheduler(worker_factory):
    supervisor = worker_factory("--processes", "2")
    supervisor.wait_for_log("Scheduler started", 30)
    supervisor.wait_for_log(r"Consuming 'default'", 30, count=2)
    assert supervisor.log().count("Scheduler started") == 1
