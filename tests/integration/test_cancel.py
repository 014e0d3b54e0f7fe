"""Cancelling tasks end to end: before they run, while they run (politely and not),
from the API, the command and the monitor."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from carrot.exceptions import NotCancellable
from carrot.models import MessageLog, OutboxEntry
from tests.harness import finished, wait_until
from tests.testapp.models import Effect
from tests.testapp.tasks import add, cancellable, unique_record

pytestmark = pytest.mark.django_db(transaction=True)


def status(log) -> str:
    return MessageLog.objects.get(pk=log.pk).status


def running(log, timeout: float = 20.0) -> None:
    wait_until(lambda: status(log) == "IN_PROGRESS", timeout, message="the task to start")


def test_a_queued_task_never_runs(worker_factory, broker):
    log = add.apply_async(args=(1, 2), countdown=3)  # waits in a delay queue meanwhile
    cancelled = log.cancel(by="tester")
    assert cancelled.status == "CANCELLED"
    assert cancelled.cancelled_at is not None and cancelled.cancelled_by == "tester"
    assert cancelled.exception == "TaskCancelled: cancelled before it ran by tester"
    assert cancelled.exception_type == "carrot.exceptions.TaskCancelled"
    assert not OutboxEntry.objects.filter(message_id=log.pk).exists()
    queued = add.delay(5, 5)  # in the main queue
    queued.cancel()
    worker = worker_factory("--no-scheduler").wait_ready()
    worker.wait_for_log(rf"Skipping tests.testapp.tasks.add {queued.uuid}: it is already CANCELLED")
    worker.wait_for_log(
        rf"Skipping tests.testapp.tasks.add {log.uuid}: it is already CANCELLED", 20
    )
    assert status(log) == status(queued) == "CANCELLED"
    assert MessageLog.objects.get(pk=queued.pk).start_time is None
    wait_until(lambda: broker.count("default") == 0, 10)


def test_a_running_task_that_polls_stops_and_is_not_retried(worker, tmp_path):
    log = cancellable.delay("polite")
    running(log)
    log.cancel(by="tester")
    done = finished(log)
    assert done.status == "CANCELLED"
    assert done.attempts == 1  # not retried, although the task has retries
    assert done.exception == "TaskCancelled: polite stopped when asked"
    assert done.cancelled_by == "tester"
    assert [line["message"] for line in done.log][-1] == "polite: asked to stop, stopping"
    assert not Effect.objects.filter(key="polite").exists()
    worker.wait_for_log(r"Cancelling tests.testapp.tasks.cancellable \S+ \(by tester\)")


def test_a_task_that_ignores_the_request_is_interrupted_after_the_grace(worker):
    log = cancellable.delay("stubborn", 30, polite=False)
    running(log)
    log.cancel()
    done = finished(log, 15)  # the grace is 1 s in the test settings
    assert done.status == "CANCELLED"
    assert done.exception == "TaskCancelled: cancelled while it ran"
    assert "time.sleep" in done.traceback or "cancellable" in done.traceback
    worker.wait_for_log(r"did not stop within 1s: raised TaskCancelled in it")
    # The worker goes on.
    assert finished(add.delay(1, 1)).status == "COMPLETED"


def test_cancelling_a_finished_task_is_an_error(worker):
    log = finished(add.delay(1, 1))
    with pytest.raises(NotCancellable, match="already finished \\(COMPLETED\\)"):
        log.cancel()
    cancelled = add.apply_async(args=(1, 1), countdown=60)
    cancelled.cancel()
    with pytest.raises(NotCancellable, match="already finished \\(CANCELLED\\)"):
        cancelled.cancel()


def test_a_cancelled_unique_task_frees_its_key(broker):
    log = unique_record.delay("cancel-me")
    log.cancel()
    assert unique_record.delay("cancel-me").pk != log.pk
    wait_until(lambda: not OutboxEntry.objects.exists(), 10)


def test_the_command_cancels_by_id_task_and_queue(worker, capsys):
    a = add.apply_async(args=(1, 1), countdown=60)
    b = add.apply_async(args=(2, 2), countdown=60)
    c = cancellable.delay("by-command")
    running(c)
    call_command("carrot_cancel", str(a.uuid))
    assert f"{a.uuid}: cancelled" in capsys.readouterr().out
    call_command("carrot_cancel", "--task", cancellable.name)
    assert "Cancelled 0 queued task(s); asked 1 running to stop." in capsys.readouterr().out
    call_command("carrot_cancel", "--queue", "default")
    assert "Cancelled 1 queued task(s); asked 0 running to stop." in capsys.readouterr().out
    assert status(b) == "CANCELLED"
    assert finished(c).status == "CANCELLED"
    with pytest.raises(CommandError, match="could not be cancelled"):
        call_command("carrot_cancel", str(a.uuid))
    with pytest.raises(CommandError, match="Name the tasks"):
        call_command("carrot_cancel")


def test_the_monitor_cancels_with_a_confirmation_and_lists_cancelled_tasks(worker, client):
    admin = User.objects.create_superuser("ops", "o@example.com", "pw")
    client.force_login(admin)
    log = cancellable.delay("from-the-monitor")
    running(log)
    page = client.get(reverse("carrot:task", args=[log.uuid])).content.decode()
    assert reverse("carrot:cancel", args=[log.uuid]) in page and "Ask tests" in page
    url = reverse("carrot:cancel", args=[log.uuid])
    question = client.post(url)  # without confirming: the confirmation page
    assert question.status_code == 200 and b"Cancel tests.testapp.tasks.cancellable?" in (
        question.content
    )
    assert MessageLog.objects.get(pk=log.pk).cancelled_at is None
    client.post(url, {"confirmed": "yes"})
    row = finished(log)
    assert (row.status, row.cancelled_by) == ("CANCELLED", "ops")
    tab = client.get(reverse("carrot:tasks", args=["cancelled"])).content.decode()
    assert str(log.uuid) in tab
    detail = client.get(reverse("carrot:task", args=[log.uuid])).content.decode()
    assert "<dt>Cancelled</dt>" in detail and "by ops" in detail
    assert reverse("carrot:cancel", args=[log.uuid]) not in detail  # finished: no button


def test_a_bulk_cancel_takes_any_number_of_rows_and_their_outbox_entries(broker):
    """More rows than SQLite's limit on statement parameters (32766), as --queue may."""
    from django.utils import timezone

    from carrot.models.cancelling import cancel_rows
    from carrot.models.outbox import add_entries

    now = timezone.now()
    MessageLog.objects.bulk_create(
        MessageLog(task=add.name, queue="default", publish_time=now) for _ in range(33_000)
    )
    ids = list(MessageLog.objects.values_list("pk", flat=True))
    add_entries(ids[:40_000], "default")
    done = cancel_rows(MessageLog.objects.filter(status__in=["PUBLISHED", "IN_PROGRESS"]))
    assert (done.queued, done.asked) == (33_000, 0)
    assert MessageLog.objects.filter(status="CANCELLED").count() == 33_000
    assert not OutboxEntry.objects.exists()
