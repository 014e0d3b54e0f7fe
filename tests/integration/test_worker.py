"""The worker end to end: real RabbitMQ, real database, real ``manage.py carrot`` processes."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import pytest

from carrot.models import MessageLog
from tests.harness import finished, wait_until
from tests.testapp.models import Effect
from tests.testapp.tasks import add, chatty, crash, fail, on_other_queue, record, sleep_then_record

pytestmark = pytest.mark.django_db(transaction=True)


def body(*args, **kwargs) -> bytes:
    return json.dumps({"args": list(args), "kwargs": kwargs}).encode()


# ---------------------------------------------------------------- the happy paths


def test_a_task_completes_with_its_output_and_log(worker):
    log = finished(chatty.delay())
    assert log.status == "COMPLETED"
    assert log.output == "done"
    assert [r["message"] for r in log.log] == [
        "a debug line",
        "an info line",
        "a warning line",
        "an error line",
    ]
    assert [r["level"] for r in log.log] == ["DEBUG", "INFO", "WARNING", "ERROR"]
    assert log.attempts == 1
    assert f":{worker.pid}:" in log.worker  # host:pid:instance
    assert log.start_time and log.completion_time and log.duration is not None


def test_a_failing_task_is_failed_with_exception_traceback_and_log(worker):
    log = finished(fail.delay("bad input"))
    assert log.status == "FAILED"
    assert log.exception == "ValueError: bad input"
    assert "raise ValueError(message)" in log.traceback
    assert "Traceback (most recent call last)" in log.traceback
    # It starts at the task's own code, not inside carrot's runner.
    assert "carrot/worker/runner.py" not in log.traceback
    assert log.traceback.splitlines()[1].strip().startswith('File "') and (
        "tests/testapp/tasks.py" in log.traceback.splitlines()[1]
    )
    assert [r["message"] for r in log.log] == ["about to fail"]
    assert log.failure_time is not None


def test_a_task_from_task_modules_runs(worker):
    from carrot.utilities import publish_message

    log = finished(publish_message("tests.testapp.plain_tasks.plain_multiply", 6, 7))
    assert (log.status, log.output) == ("COMPLETED", 42)


@pytest.mark.slow  # ~7 s; keeps make test under 15 minutes
def test_a_burst_of_1000_tasks_settles_with_nothing_lost(worker, broker):
    logs = [record.delay(f"burst-{i}") for i in range(1000)]
    wait_until(lambda: MessageLog.objects.completed().count() == 1000, 120, message="1000 tasks")
    assert Effect.objects.filter(key__startswith="burst-").count() == 1000
    assert Effect.objects.values("key").distinct().count() == 1000
    assert {str(log.uuid) for log in logs} == {
        str(u) for u in MessageLog.objects.values_list("uuid", flat=True)
    }
    wait_until(lambda: broker.count("default") == 0, 10, message="an empty queue")


def test_higher_priority_runs_first(worker_factory, broker):
    low = [on_other_queue.apply_async(args=(f"low-{i}",), priority=1) for i in range(5)]
    high = on_other_queue.apply_async(args=("high",), priority=9)
    worker_factory("--no-scheduler", "--queues", "other").wait_ready(queues=1)
    for log in [*low, high]:
        finished(log)
    order = list(Effect.objects.order_by("id").values_list("key", flat=True))
    assert order[0] == "high"


def test_a_foreign_message_gets_a_message_log(worker, broker):
    message_id = broker.publish(
        "default", body(4, 5), type="tests.testapp.tasks.add", app_id="someone-else"
    )
    log = wait_until(lambda: MessageLog.objects.filter(uuid=message_id).first(), 10)
    log = finished(log)
    assert (log.status, log.output, log.task_args) == ("COMPLETED", 9, [4, 5])


def test_a_message_id_in_another_uuid_spelling_runs_its_task(worker, broker):
    # Upper case, no dashes: the same UUID as the row's, as another publisher may write it.
    row = MessageLog.objects.create(
        task="tests.testapp.tasks.add", queue="default", task_args=[2, 3], status="PUBLISHED"
    )
    broker.publish(
        "default", body(2, 3), type="tests.testapp.tasks.add", message_id=row.uuid.hex.upper()
    )
    row = finished(row)
    assert (row.status, row.output, row.attempts) == ("COMPLETED", 5, 1)


def test_failure_callbacks_and_consumer_class_from_the_seed(worker_factory):
    worker_factory(
        "--no-scheduler", CARROT_TEST_OTHER_CONSUMER="tests.testapp.consumers.RecordingConsumer"
    ).wait_ready()
    log = finished(fail.apply_async(args=("from other",), queue="other"))
    assert log.status == "FAILED"
    wait_until(
        lambda: Effect.objects.filter(key=f"failure-callback:{log.uuid}:from other").exists(),
        10,
        message="the failure callback",
    )


# ---------------------------------------------------------------- bad input


MALFORMED = [
    ("not-json", b"\xff not json", {"type": "tests.testapp.tasks.add"}, "not UTF-8"),
    ("wrong-shape", b"[1, 2]", {"type": "tests.testapp.tasks.add"}, "must be a JSON object"),
    (
        "unknown-task",
        body("touch /tmp/carrot-pwned"),
        {"type": "os.system"},
        "'os.system' is not a registered task",
    ),
    ("no-type", body(1, 2), {"type": None}, "has no type property"),
    (
        "no-id",
        body(1, 2),
        {"type": "tests.testapp.tasks.add", "message_id": None},
        "has no message_id",
    ),
    (
        "bad-id",
        body(1, 2),
        {"type": "tests.testapp.tasks.add", "message_id": "not-a-uuid"},
        "is not a UUID",
    ),
    (
        "pickle",
        b"\x80\x04K\x01.",
        {"type": "tests.testapp.tasks.add", "content_type": "application/x-python-serialize"},
        "accepts only application/json",
    ),
    (
        "oversize",
        body("x" * (1024 * 1024 + 10)),
        {"type": "tests.testapp.tasks.add"},
        "over the limit",
    ),
    (
        "deep",
        b'{"args": [' + b"[" * 100_000 + b"]" * 100_000 + b'], "kwargs": {}}',
        {"type": "tests.testapp.tasks.add"},
        "nested",
    ),
]


def test_malformed_messages_are_dead_lettered_recorded_and_the_worker_keeps_going(worker, broker):
    for _name, raw, properties, _reason in MALFORMED:
        broker.publish("default", raw, **properties)
    wait_until(
        lambda: broker.count("default.dlq") == len(MALFORMED),
        20,
        message="every malformed message in the dead-letter queue",
    )
    failed = MessageLog.objects.failed()
    assert failed.count() == len(MALFORMED)
    exceptions = " | ".join(failed.values_list("exception", flat=True))
    for _name, _raw, _properties, reason in MALFORMED:
        assert reason in exceptions
    assert all(
        e.startswith("Message rejected: ") for e in failed.values_list("exception", flat=True)
    )
    assert not Path("/tmp/carrot-pwned").exists()
    # Still serving, same process.
    assert finished(add.delay(1, 1)).status == "COMPLETED"
    assert worker.proc.poll() is None
    assert broker.count("default") == 0


def test_wrong_arguments_fail_once_and_are_not_retried(worker, broker):
    log = finished(record.delay())  # missing the key argument
    assert log.status == "FAILED"
    assert "TypeError" in log.exception
    time.sleep(0.5)
    assert MessageLog.objects.get(pk=log.pk).attempts == 1
    assert broker.count("default") == 0


def test_redelivery_of_a_finished_task_is_acked_and_skipped(worker, broker):
    log = finished(record.delay("once"))
    broker.publish(
        "default",
        body("once"),
        type="tests.testapp.tasks.record",
        message_id=str(log.uuid),
        app_id="carrot",
    )
    worker.wait_for_log(rf"Skipping tests.testapp.tasks.record {log.uuid}: it is already COMPLETED")
    assert Effect.objects.filter(key="once").count() == 1
    wait_until(lambda: broker.count("default") == 0, 10)


def test_the_same_message_id_twice_runs_once(worker, broker):
    message_id = str(uuid.uuid4())
    for _ in range(2):
        broker.publish(
            "default",
            body("dup", 1),
            type="tests.testapp.tasks.sleep_then_record",
            message_id=message_id,
        )
    log = wait_until(lambda: MessageLog.objects.filter(uuid=message_id).first(), 10)
    finished(log)
    worker.wait_for_log(rf"Skipping tests.testapp.tasks.sleep_then_record {message_id}")
    assert Effect.objects.filter(key="dup").count() == 1


def test_an_old_message_whose_log_was_deleted_is_dropped(worker, broker):
    message_id = broker.publish(
        "default",
        body("deleted"),
        type="tests.testapp.tasks.record",
        app_id="carrot",
        timestamp=int(time.time()) - 120,
    )
    worker.wait_for_log(
        rf"Skipping tests.testapp.tasks.record {message_id}: its MessageLog was "
        "deleted"
    )
    assert not Effect.objects.filter(key="deleted").exists()
    assert not MessageLog.objects.exists()


def test_a_message_consumed_before_its_row_is_visible_waits_for_it(worker, broker):
    message_id = broker.publish(
        "default",
        body("early"),
        type="tests.testapp.tasks.record",
        app_id="carrot",
        timestamp=int(time.time()),
    )
    worker.wait_for_log(rf"{message_id}: its MessageLog is not visible yet")
    time.sleep(1)
    log = MessageLog.objects.create(
        uuid=message_id, task="tests.testapp.tasks.record", task_args=["early"]
    )
    assert finished(log).status == "COMPLETED"
    assert Effect.objects.filter(key="early").count() == 1


# ---------------------------------------------------------------- process faults


def test_sigkill_mid_task_redelivers_and_the_task_completes(worker_factory, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    first = worker_factory("--no-scheduler", CARROT_TEST_MARKER_DIR=str(markers)).wait_ready()
    log = sleep_then_record.delay("killed", 3)
    wait_until(lambda: (markers / "started-killed").exists(), 15, message="the task to start")
    first.kill()
    assert MessageLog.objects.get(pk=log.pk).status == "IN_PROGRESS"
    worker_factory("--no-scheduler").wait_ready()
    log = finished(log, 30)
    assert log.status == "COMPLETED"
    assert (log.attempts, log.interruptions) == (2, 1)
    assert Effect.objects.filter(key="killed").count() == 1  # killed before its effect


def test_a_task_that_kills_its_worker_every_time_is_given_up(worker_factory, broker):
    log = crash.delay("crasher")
    for _ in range(4):
        proc = worker_factory("--no-scheduler", CARROT_TEST_MAX_INTERRUPTIONS="1")
        # One consumer is enough: the crash can kill the worker before the second starts.
        proc.wait_ready(queues=1)
        wait_until(
            lambda p=proc: (
                p.proc.poll() is not None or MessageLog.objects.get(pk=log.pk).status == "FAILED"
            ),
            20,
        )
        if MessageLog.objects.get(pk=log.pk).status == "FAILED":
            break
    log.refresh_from_db()
    assert log.status == "FAILED"
    assert "Gave up after 2 interrupted attempts" in log.exception
    assert Effect.objects.filter(key="crasher").count() == 2  # max_interruptions + 1 runs
    assert proc.proc.poll() is None  # the last worker survived and keeps serving
    assert finished(add.delay(2, 2)).output == 4
    wait_until(lambda: broker.count("default") == 0, 10)


def test_sigterm_finishes_the_task_in_flight_and_exits_zero(worker_factory, tmp_path, broker):
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = worker_factory("--no-scheduler", CARROT_TEST_MARKER_DIR=str(markers)).wait_ready()
    log = sleep_then_record.delay("graceful", 2)
    wait_until(lambda: (markers / "started-graceful").exists(), 15)
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    log.refresh_from_db()
    assert log.status == "COMPLETED"
    assert Effect.objects.filter(key="graceful").count() == 1
    assert broker.count("default") == 0
    assert "Worker stopped" in proc.log()


def test_a_task_longer_than_the_heartbeat_keeps_its_connection(worker_factory, broker):
    proc = worker_factory("--no-scheduler", CARROT_TEST_HEARTBEAT="1").wait_ready()
    log = finished(sleep_then_record.delay("long", 5), 30)
    assert (log.status, log.attempts) == ("COMPLETED", 1)
    assert "reconnecting" not in proc.log()
    assert Effect.objects.filter(key="long").count() == 1


def test_worker_refuses_to_start_without_a_broker_and_says_how(worker_factory):
    proc = worker_factory("--no-scheduler", CARROT_TEST_BROKER="amqp://guest:guest@127.0.0.1:1/")
    assert proc.wait(30) == 1
    out = proc.log()
    assert "connection refused" in out and "rabbitmq-server -detached" in out
    assert "Traceback" not in out


def test_a_task_knows_its_current_call(worker):
    import carrot
    from tests.testapp.tasks import whoami

    assert carrot.current_call() is None  # outside a worker
    log = finished(whoami.delay())
    assert log.output == {
        "message_id": str(log.uuid),
        "row_id": log.pk,
        "attempt": 1,
        "task": "tests.testapp.tasks.whoami",
        "queue": "default",
    }
    retried = finished(whoami.delay(fail_first=True))
    assert (retried.status, retried.output["attempt"]) == ("COMPLETED", 2)
    [first] = retried.attempt_history
    assert first["exception"] == "RuntimeError: first attempt fails"
    assert first["exception_type"] == "builtins.RuntimeError"
    assert "raise RuntimeError" in first["traceback"]
