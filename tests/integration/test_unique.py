"""Unique tasks: one queued or running row per key, held by the database across
processes; the key frees once the row finishes."""

from __future__ import annotations

import textwrap
import threading

import pytest
from django.db import transaction

from carrot.exceptions import NotRequeueable
from carrot.models import MessageLog, OutboxEntry
from tests.harness import django_shell, finished, wait_until
from tests.testapp.models import Effect
from tests.testapp.tasks import add, sync_account, unique_record

pytestmark = pytest.mark.django_db(transaction=True)


def settled():
    """Wait until RabbitMQ confirmed what was published (the outbox is empty)."""
    wait_until(lambda: not OutboxEntry.objects.exists(), 10, message="the outbox to empty")


def test_a_second_delay_returns_the_queued_row(broker):
    first = unique_record.delay("a")
    second = unique_record.delay("a")
    other = unique_record.delay("b")
    assert second.pk == first.pk and second.uuid == first.uuid
    assert other.pk != first.pk
    assert MessageLog.objects.filter(task=unique_record.name).count() == 2
    assert first.unique_key and len(first.unique_key) == 64
    assert unique_record.delay(key="a").pk != first.pk  # other arguments: another key
    settled()
    assert broker.count("default") == 3  # one message per row


def test_once_it_finished_a_new_one_may_be_queued(worker):
    first = finished(unique_record.delay("again"))
    assert first.status == "COMPLETED"
    second = unique_record.delay("again")
    assert second.pk != first.pk
    assert finished(second).status == "COMPLETED"
    assert Effect.objects.filter(key="again").count() == 2


def test_a_running_task_holds_its_key(worker):
    log = unique_record.delay("slow", 1.5)
    wait_until(lambda: MessageLog.objects.get(pk=log.pk).status == "IN_PROGRESS", 10)
    assert unique_record.delay("slow", 1.5).pk == log.pk
    finished(log)
    assert unique_record.delay("slow", 1.5).pk != log.pk
    settled()


def test_a_custom_key_decides_which_calls_are_the_same(broker):
    quick = sync_account.delay(7)
    full = sync_account.delay(7, full=True)
    assert full.pk == quick.pk  # the key ignores "full": the queued call stands
    assert sync_account.delay(8).pk != quick.pk
    settled()


def test_delay_many_and_a_transaction(broker):
    rows = unique_record.delay_many([(("m",), {}), (("m",), {}), (("n",), {})])
    assert rows[0].pk == rows[1].pk != rows[2].pk
    with transaction.atomic():
        inside = unique_record.delay("t")
        assert unique_record.delay("t").pk == inside.pk
        assert add.delay(1, 2).unique_key is None
    assert MessageLog.objects.filter(task=unique_record.name).count() == 3
    settled()


def test_a_rolled_back_call_frees_its_key(broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        unique_record.delay("rolled")
        raise RuntimeError("the caller's transaction fails")
    assert not MessageLog.objects.filter(task=unique_record.name).exists()
    assert unique_record.delay("rolled").pk
    settled()


def test_a_failed_unique_task_cannot_be_requeued_while_another_is_queued(broker):
    failed = unique_record.delay("r")
    MessageLog.objects.filter(pk=failed.pk).update(status="FAILED")
    queued = unique_record.delay("r")
    assert queued.pk != failed.pk
    with pytest.raises(NotRequeueable, match=f"same key is queued or running \\({queued.uuid}\\)"):
        MessageLog.objects.get(pk=failed.pk).requeue()
    assert MessageLog.objects.get(pk=failed.pk).status == "FAILED"
    settled()


def test_two_threads_race_for_one_key(broker):
    rows: list[MessageLog] = []
    barrier = threading.Barrier(2)

    def caller():
        from django.db import connection

        barrier.wait()
        try:
            rows.extend(unique_record.delay("thread-race") for _ in range(20))
        finally:
            connection.close()

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(rows) == 40
    assert len({row.pk for row in rows}) == 1
    settled()


RACE = textwrap.dedent(
    """
    import sys
    from tests.testapp.tasks import unique_record

    uuids = {str(unique_record.delay("process-race").uuid) for _ in range(50)}
    print("UUIDS", *sorted(uuids))
    """
)


def test_two_processes_race_for_one_key(broker):
    results: list = []

    def run():
        results.append(django_shell(RACE, timeout=120))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert all(r.returncode == 0 for r in results), [r.stderr[-2000:] for r in results]
    seen = [
        line.split()[1:]
        for r in results
        for line in r.stdout.splitlines()
        if line.startswith("UUIDS")
    ]
    assert len(seen) == 2 and seen[0] == seen[1] and len(seen[0]) == 1
    rows = MessageLog.objects.filter(task=unique_record.name)
    assert [str(u) for u in rows.values_list("uuid", flat=True)] == seen[0]
    settled()


def test_a_scheduled_tick_is_skipped_while_the_last_run_is_queued(broker):
    from datetime import timedelta

    from django.utils import timezone

    from carrot.models import ScheduledTask
    from carrot.scheduling.scheduler import Scheduler

    now = timezone.now()
    schedule = ScheduledTask.objects.create(
        task=unique_record.name,
        task_name="unique every minute",
        interval_type="minutes",
        interval_count=1,
        task_args=["tick"],
        next_run_at=now - timedelta(seconds=1),
    )
    (first,) = Scheduler().publish_due(now)
    later = now + timedelta(minutes=1)
    assert Scheduler().publish_due(later) == []  # skipped: the first is still queued
    schedule.refresh_from_db()
    assert schedule.next_run_at > later  # the tick was claimed, not retried every round
    assert schedule.last_message_id == first.pk
    MessageLog.objects.filter(pk=first.pk).update(status="COMPLETED")
    (second,) = Scheduler().publish_due(later + timedelta(minutes=1))
    assert second.pk != first.pk
    settled()


def test_the_task_page_says_what_makes_it_unique(broker, client):
    from django.contrib.auth.models import User
    from django.urls import reverse

    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    by_args, by_key = unique_record.delay("page"), sync_account.delay(3)
    page = client.get(reverse("carrot:task", args=[by_args.uuid])).content.decode()
    assert "<dt>Unique</dt><dd>by its arguments" in page and by_args.unique_key[:12] in page
    page = client.get(reverse("carrot:task", args=[by_key.uuid])).content.decode()
    assert "by tests.testapp.tasks._account_key()" in page
    page = client.get(reverse("carrot:task", args=[add.delay(1, 1).uuid])).content.decode()
    assert "<dt>Unique</dt>" not in page
    settled()
