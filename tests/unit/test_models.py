from datetime import timedelta

import pytest
from django.utils import timezone

from carrot.models import MessageLog
from carrot.models.lifecycle import NOT_PUBLISHED

pytestmark = pytest.mark.django_db


def make(**kwargs):
    defaults = {"task": "tests.testapp.tasks.add", "task_args": [1, 2], "task_kwargs": {"a": 1}}
    defaults.update(kwargs)
    return MessageLog.objects.create(**defaults)


def test_defaults_and_seed_accessors():
    log = make()
    assert log.status == MessageLog.PUBLISHED
    assert log.positionals == [1, 2]
    assert log.keywords == {"a": 1}
    assert log.attempts == 0
    assert str(log.uuid) in str(log)


def test_transitions_move_forward_only():
    log = make()
    rows = MessageLog.objects.filter(pk=log.pk)
    assert rows.mark_completed(output=1) == 0  # cannot skip IN_PROGRESS
    assert rows.mark_started(worker="w:1") == 1
    assert rows.mark_started(worker="w:2") == 0  # a second claim is refused
    assert rows.mark_completed(output={"x": 1}, log=[{"message": "hi"}]) == 1
    assert rows.mark_failed(exception="late") == 0  # finished rows stay finished
    assert rows.mark_started(worker="w:3", interrupted=True) == 0
    log.refresh_from_db()
    assert (log.status, log.output, log.attempts, log.worker) == ("COMPLETED", {"x": 1}, 1, "w:1")
    assert log.completion_time is not None and log.exception == ""


def test_interrupted_restart_counts_attempts_and_interruptions():
    log = make()
    rows = MessageLog.objects.filter(pk=log.pk)
    rows.mark_started(worker="w:1")
    assert rows.mark_started(worker="w:2", interrupted=True) == 1
    log.refresh_from_db()
    assert (log.attempts, log.interruptions, log.worker) == (2, 1, "w:2")


def test_a_publish_error_fails_a_published_row():
    log = make()
    rows = MessageLog.objects.filter(pk=log.pk)
    assert rows.mark_failed(exception="nope") == 0  # only a running task fails that way
    assert rows.apply(NOT_PUBLISHED, exception="Not published: nope") == 1
    log.refresh_from_db()
    assert (log.status, log.exception) == ("FAILED", "Not published: nope")
    assert log.failure_time is not None


def test_queryset_helpers_filter_by_status():
    for status in ("PUBLISHED", "IN_PROGRESS", "FAILED", "COMPLETED"):
        make(status=status)
    assert MessageLog.objects.queued().get().status == "PUBLISHED"
    assert MessageLog.objects.in_progress().get().status == "IN_PROGRESS"
    assert MessageLog.objects.failed().get().status == "FAILED"
    assert MessageLog.objects.completed().get().status == "COMPLETED"
    assert MessageLog.objects.finished().count() == 2


def test_duration_and_finish_time():
    now = timezone.now()
    log = make(start_time=now, completion_time=now + timedelta(seconds=3), status="COMPLETED")
    assert log.duration == timedelta(seconds=3)
    assert log.is_finished
    assert make().duration is None
