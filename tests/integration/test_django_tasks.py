"""Django's task API on carrot, end to end: ``TASKS`` names ``carrot.backends.RabbitMQBackend``,
tasks are written with ``django.tasks`` (or the backport on Django 5.2) in
tests/djangoapp/tasks.py, and real ``manage.py carrot`` workers run them."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction
from django.utils import timezone

from carrot.backends import compat
from carrot.models import MessageLog
from tests.djangoapp import tasks
from tests.harness import finished, wait_until
from tests.testapp import tasks as carrot_tasks
from tests.testapp.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)

READY, RUNNING = compat.TaskResultStatus.READY, compat.TaskResultStatus.RUNNING
SUCCESSFUL, FAILED = compat.TaskResultStatus.SUCCESSFUL, compat.TaskResultStatus.FAILED


def done(result, timeout: float = 30.0):
    """Wait until the task of ``result`` finished; return ``result``, refreshed."""
    finished(MessageLog.objects.get(uuid=result.id), timeout)
    result.refresh()
    return result


def effects(prefix: str) -> list[str]:
    return list(
        Effect.objects.filter(key__startswith=prefix).order_by("id").values_list("key", flat=True)
    )


# ---------------------------------------------------------------- enqueue and results


def test_enqueue_records_a_row_and_returns_a_ready_result(broker):
    result = tasks.add.enqueue(2, b=3)
    assert result.status == READY
    assert (result.args, result.kwargs, result.backend) == ([2], {"b": 3}, "default")
    assert result.enqueued_at is not None and result.worker_ids == [] and result.errors == []
    log = MessageLog.objects.get(uuid=result.id)
    assert (log.task, log.backend, log.status) == (
        "tests.djangoapp.tasks.add",
        "default",
        "PUBLISHED",
    )
    assert (log.task_args, log.task_kwargs) == ([2], {"b": 3})
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value
    wait_until(lambda: broker.count("default") == 1, 10, message="the message in RabbitMQ")


def test_a_task_runs_and_its_result_says_so(worker):
    result = done(tasks.add.enqueue(2, 3))
    assert result.status == SUCCESSFUL
    assert result.return_value == 5
    assert result.is_finished and result.errors == []
    assert len(result.worker_ids) == 1 and f":{worker.pid}:" in result.worker_ids[0]
    assert result.attempts == 1
    assert result.enqueued_at <= result.started_at == result.last_attempted_at
    assert result.started_at <= result.finished_at
    # The same result through the task and through the backend; ids are the row's uuid.
    again = tasks.add.get_result(result.id)
    assert (again.status, again.return_value, again.worker_ids) == (
        SUCCESSFUL,
        5,
        result.worker_ids,
    )
    assert again.task.func is tasks.add.func


def test_a_failing_task_has_its_error_and_traceback(worker):
    result = done(tasks.fail.enqueue("bad input"))
    assert result.status == FAILED
    [error] = result.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "raise ValueError(message)" in error.traceback
    assert error.traceback.rstrip().endswith("ValueError: bad input")
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    log = MessageLog.objects.get(uuid=result.id)
    assert (log.exception, log.exception_type) == ("ValueError: bad input", "builtins.ValueError")


def test_retries_from_the_backend_options_keep_every_attempt(worker):
    result = done(tasks.flaky.enqueue(fail_times=2), timeout=60)
    assert result.status == SUCCESSFUL
    assert result.return_value == 3  # context.attempt of the third attempt
    assert result.attempts == 3 and len(result.worker_ids) == 3
    assert [e.exception_class_path for e in result.errors] == ["builtins.ConnectionError"] * 2
    assert "attempt 1 fails" in result.errors[0].traceback
    assert "attempt 2 fails" in result.errors[1].traceback
    assert result.started_at < result.last_attempted_at


def test_takes_context_gets_the_running_result(worker):
    result = done(tasks.with_context.enqueue("x"))
    assert result.status == SUCCESSFUL
    value = result.return_value
    assert (value["value"], value["attempt"], value["id"]) == ("x", 1, result.id)
    assert value["status"] == RUNNING
    assert value["worker_ids"] == result.worker_ids


def test_an_async_task_runs(worker):
    assert done(tasks.async_double.enqueue(21)).return_value == 42


def test_a_return_value_that_is_not_json_fails_the_task(worker):
    result = done(tasks.not_json.enqueue())
    assert result.status == FAILED
    assert result.errors[0].exception_class_path == "builtins.TypeError"


def test_aenqueue_and_aget_result(worker):
    async def roundtrip():
        result = await tasks.add.aenqueue(20, 22)
        return result.id

    result_id = async_to_sync(roundtrip)()
    finished(MessageLog.objects.get(uuid=result_id))
    fetched = async_to_sync(tasks.add.aget_result)(result_id)
    assert (fetched.status, fetched.return_value) == (SUCCESSFUL, 42)


def test_an_unknown_id_does_not_exist(db):
    for bad in ("b7e0f5a4-9f4c-4a5e-8d7c-000000000000", "not-a-uuid", ""):
        with pytest.raises(compat.TaskResultDoesNotExist):
            tasks.add.get_result(bad)


# ---------------------------------------------------------------- when and in which order


def test_priority_orders_a_busy_queue(worker_factory, broker):
    low = [tasks.record.using(priority=-100).enqueue(f"prio-low-{i}") for i in range(5)]
    high = tasks.record.using(priority=100).enqueue("prio-high")
    rows = MessageLog.objects.filter(uuid__in=[r.id for r in [*low, high]])
    assert {row.priority for row in rows} == {0, 10}  # -100 -> 0, 100 -> max_priority
    worker_factory("--no-scheduler", "--queues", "other").wait_ready(queues=1)
    for result in [*low, high]:
        done(result)
    assert effects("prio-")[0] == "prio-high"


def test_run_after_waits_in_rabbitmq_not_in_a_worker(worker, broker):
    soon = timezone.now() + timedelta(seconds=3)
    at = tasks.add.using(run_after=soon).enqueue(1, 1)
    later = tasks.add.using(run_after=timedelta(seconds=3)).enqueue(2, 2)
    for result in (at, later):
        log = MessageLog.objects.get(uuid=result.id)
        assert log.eta is not None and log.eta >= soon - timedelta(seconds=1)
    for result in (at, later):
        result = done(result, timeout=30)
        assert result.status == SUCCESSFUL
        assert result.started_at >= MessageLog.objects.get(uuid=result.id).eta


# ---------------------------------------------------------------- signals


def test_signals_are_sent_by_the_process_that_does_the_work(worker):
    ok = done(tasks.add.enqueue(1, 2))
    bad = done(tasks.fail.enqueue("no"))
    here = os.getpid()
    assert effects(f"enqueued:{ok.id}") == [f"enqueued:{ok.id}:{here}"]
    assert effects(f"started:{ok.id}") == [f"started:{ok.id}:RUNNING:{worker.pid}"]
    wait_until(lambda: effects(f"finished:{bad.id}"), 10, message="task_finished of a failure")
    assert effects(f"finished:{ok.id}") == [f"finished:{ok.id}:SUCCESSFUL:-:{worker.pid}"]
    # Sent while the task's exception is handled, so Django's logger records its traceback.
    assert effects(f"finished:{bad.id}") == [f"finished:{bad.id}:FAILED:ValueError:{worker.pid}"]


def test_retried_attempts_start_again_and_finish_once(worker):
    result = done(tasks.flaky.enqueue(fail_times=1), timeout=60)
    wait_until(lambda: effects(f"finished:{result.id}"), 10, message="task_finished")
    assert len(effects(f"started:{result.id}")) == 2
    assert len(effects(f"finished:{result.id}")) == 1


# ---------------------------------------------------------------- what does not run


def test_a_task_on_a_queue_carrot_does_not_have_is_refused(db):
    with pytest.raises(compat.InvalidTask, match="'nowhere' is not a carrot queue"):
        tasks.add.using(queue_name="nowhere")
    with pytest.raises(compat.InvalidTask):  # QUEUES of "retrying" is ["default"]
        tasks.flaky.using(queue_name="other")
    assert not MessageLog.objects.exists()


def test_nothing_is_published_when_the_transaction_rolls_back(broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.add.enqueue(1, 2)
        raise RuntimeError("the view failed")
    assert not MessageLog.objects.exists()
    assert broker.count("default") == 0


def test_a_message_naming_a_plain_function_is_rejected_not_run(worker, broker):
    message_id = broker.publish(
        "default",
        json.dumps({"args": ["x"], "kwargs": {}}).encode(),
        type="tests.djangoapp.tasks.not_a_task",
        app_id="someone-else",
    )
    log = wait_until(
        lambda: MessageLog.objects.filter(uuid=message_id, status="FAILED").first(), 10
    )
    assert "is not a registered task" in log.exception
    assert log.exception_type == "carrot.exceptions.MessageRejected"
    wait_until(lambda: broker.count("default.dlq") == 1, 10, message="the dead-lettered message")
    assert not effects("not a task ran")


# ---------------------------------------------------------------- one history, two APIs


def test_a_carrot_task_row_gives_its_task_result(worker):
    log = finished(carrot_tasks.add.delay(2, 3))
    result = log.task_result()
    assert (result.status, result.return_value, result.id) == (SUCCESSFUL, 5, str(log.uuid))
    assert result.task.func is carrot_tasks.add.func
    assert result.worker_ids == [log.worker]
    assert result.backend == "default"


def test_a_requeued_django_task_keeps_its_history(worker):
    result = done(tasks.fail.enqueue("first"))
    log = MessageLog.objects.get(uuid=result.id)
    log.requeue()
    finished(log)
    result.refresh()
    assert result.status == FAILED
    assert len(result.worker_ids) == 2
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"] * 2


# ---------------------------------------------------------------- the monitor


@pytest.fixture
def staff(client):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    return client


def test_the_monitor_shows_the_backend_and_requeues_a_django_task(staff, worker):
    from django.urls import reverse

    result = done(tasks.flaky.enqueue(fail_times=5), timeout=60)  # fails all 3 attempts
    assert result.status == FAILED and len(result.errors) == 3
    listing = staff.get(reverse("carrot:tasks", args=["failed"])).content.decode()
    assert "django.tasks · retrying" in listing
    page = staff.get(reverse("carrot:task", args=[result.id])).content.decode()
    assert 'TASKS["retrying"]' in page and "builtins.ConnectionError" in page
    assert page.count("attempt 1 fails") == 1 and "attempt 3 fails" in page  # the attempts table
    response = staff.post(
        reverse("carrot:requeue", args=[result.id]),
        headers={"HX-Request": "true", "HX-Target": "task-detail"},
    )
    assert response.status_code == 200
    done(result, timeout=60)
    assert result.status == FAILED
    # A requeue runs it once more: the attempt count (and so the retry budget) carries on.
    assert len(result.worker_ids) == 4 and len(result.errors) == 4
    assert "attempt 4 fails" in result.errors[-1].traceback
    staff.post(
        reverse("carrot:delete", args=[result.id]),
        headers={"HX-Request": "true", "HX-Target": "task-detail"},
    )
    with pytest.raises(compat.TaskResultDoesNotExist):
        result.refresh()


def test_a_schedule_can_run_a_django_task(worker):
    from carrot.models import ScheduledTask
    from carrot.scheduling.edits import run_now

    schedule = ScheduledTask.objects.create(
        task_name="django add",
        task="tests.djangoapp.tasks.add",
        interval_type="hours",
        interval_count=1,
        task_args=[4, 5],
        next_run_at=timezone.now() + timedelta(hours=1),
    )
    log = finished(run_now(schedule))
    result = log.task_result()
    assert (result.status, result.return_value) == (SUCCESSFUL, 9)
    assert result.task.func is tasks.add.func


def test_return_values_follow_djangos_json_rules(worker):
    result = done(tasks.loose_json.enqueue())
    assert result.status == SUCCESSFUL
    assert result.return_value == {"1": "one", "list": [1, 2]}


def test_an_async_task_sees_its_current_call(worker):
    result = done(tasks.async_whoami.enqueue())
    assert result.return_value == {"message_id": result.id, "attempt": 1}


def test_task_enqueued_is_sent_when_the_transaction_commits(broker):
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append(task_result.id)

    compat.task_enqueued.connect(receiver)
    try:
        with transaction.atomic():
            kept = tasks.add.enqueue(1, 1)
            assert seen == []
        assert seen == [kept.id]
        with pytest.raises(RuntimeError), transaction.atomic():
            tasks.add.enqueue(2, 2)
            raise RuntimeError("rolled back")
        assert seen == [kept.id]
    finally:
        compat.task_enqueued.disconnect(receiver)


def test_the_time_limit_fails_an_async_task_it_cannot_interrupt(worker, tmp_path):
    marker = tmp_path / "slept"
    result = done(tasks.async_sleep.enqueue(4, str(marker)), timeout=30)
    assert result.status == FAILED
    [error] = result.errors
    assert error.exception_class_path == "carrot.exceptions.TimeLimitExceeded"
    log = MessageLog.objects.get(uuid=result.id)
    assert "did not stop" in log.exception  # failed by the watch: its thread was abandoned
    # The coroutine itself was not interrupted: it finishes on its own.
    wait_until(marker.exists, 10, message="the coroutine's end")
