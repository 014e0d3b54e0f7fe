"""The operator commands: carrot_send, carrot_requeue, carrot_status, carrot_health, logs."""

from __future__ import annotations

import json
import socket
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from carrot.models import MessageLog, WorkerHeartbeat
from tests.harness import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

DOWN = {"default_broker": "amqp://guest:guest@127.0.0.1:1/"}


def run(*args):
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_carrot_send_publishes_with_json_arguments(broker):
    out, _ = run(
        "carrot_send",
        "tests.testapp.tasks.echo",
        "--args",
        '[1, "two"]',
        "--kwargs",
        '{"three": 3}',
        "--priority",
        "4",
    )
    log = MessageLog.objects.get()
    assert f"Published tests.testapp.tasks.echo to 'default': {log.uuid}" in out
    assert (log.task_args, log.task_kwargs, log.priority) == ([1, "two"], {"three": 3}, 4)
    assert broker.count("default") == 1


def test_carrot_send_uses_the_task_queue_and_countdown(broker):
    run("carrot_send", "tests.testapp.tasks.on_other_queue", "--args", '["k"]', "--countdown", "60")
    log = MessageLog.objects.get()
    assert log.queue == "other" and log.eta is not None
    assert broker.count("other.delay.32s") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["os.system"], "is not a registered task"),
        (["tests.testapp.tasks.add", "--args", "[1,"], "--args is not valid JSON"),
        (["tests.testapp.tasks.add", "--kwargs", "[]"], "--kwargs must be a JSON object"),
        (["tests.testapp.tasks.add", "--queue", "nope"], "Queue 'nope' is not configured"),
        (["tests.testapp.tasks.add", "--priority", "99"], "out of range"),
    ],
)
def test_carrot_send_errors_are_clear(args, message):
    with pytest.raises(CommandError, match=message):
        run("carrot_send", *args)
    assert not MessageLog.objects.exists()


def failed(task="tests.testapp.tasks.add", **fields):
    return MessageLog.objects.create(task=task, status="FAILED", task_args=[1, 2], **fields)


def test_carrot_requeue_failed_by_task(broker):
    failed()
    failed()
    failed(task="tests.testapp.tasks.record")
    failed(exception="Message rejected: not JSON")
    out, _ = run("carrot_requeue", "--failed", "--task", "tests.testapp.tasks.add", "--dry-run")
    assert "Would requeue 2 failed task(s)." in out
    out, _ = run("carrot_requeue", "--failed", "--task", "tests.testapp.tasks.add")
    assert "Requeued 2 failed task(s); skipped 0." in out
    assert broker.count("default") == 2
    assert MessageLog.objects.failed().count() == 2


def test_carrot_status_prints_queues_tasks_workers_and_schedules(broker):
    from tests.testapp.tasks import add

    add.delay(1, 2)
    failed()
    WorkerHeartbeat.objects.create(name="h:1", hostname="h", pid=1, queues=["default"])
    out, _ = run("carrot_status")
    assert "default" in out and "1 ready" in out and "dead-lettered" in out
    assert "Published" in out and "Failed" in out
    assert "Workers (1 alive):" in out and "h:1" in out
    assert "Schedules: 0 active of 0" in out


def test_carrot_status_with_the_broker_down_still_reports_and_exits_1():
    with override_settings(CARROT=DOWN), pytest.raises(SystemExit) as exit_info:
        run("carrot_status")
    assert exit_info.value.code == 1


def test_carrot_health(broker):
    out, _ = run("carrot_health")
    assert "database: ok" in out and "broker" in out
    with pytest.raises(SystemExit):
        run("carrot_health", "--worker")
    WorkerHeartbeat.objects.create(
        name=f"{socket.gethostname()}:1",
        hostname=socket.gethostname(),
        pid=1,
        last_seen=timezone.now(),
    )
    out, _ = run("carrot_health", "--worker")
    assert "worker: ok" in out
    with override_settings(CARROT=DOWN), pytest.raises(SystemExit) as exit_info:
        run("carrot_health")
    assert exit_info.value.code == 1


def test_carrot_rejects_contradictory_options():
    with pytest.raises(CommandError, match="exclude each other"):
        run("carrot", "--scheduler-only", "--no-scheduler")
    with pytest.raises(CommandError, match="1 or more"):
        run("carrot", "--processes", "0")


def test_json_logs_carry_task_fields(worker_factory, broker):
    from tests.testapp.tasks import add

    proc = worker_factory("--no-scheduler", "--log-format", "json").wait_ready()
    log = add.delay(2, 3)
    wait_until(lambda: MessageLog.objects.completed().exists(), 20)
    proc.wait_for_log('"outcome": "completed"')
    lines = [json.loads(line) for line in proc.log().splitlines() if line.startswith("{")]
    done = [x for x in lines if x.get("outcome") == "completed"]
    assert done[0]["task_id"] == str(log.uuid)
    assert done[0]["task"] == "tests.testapp.tasks.add" and done[0]["queue"] == "default"
    assert done[0]["duration"] >= 0 and done[0]["attempt"] == 1
