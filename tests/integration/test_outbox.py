"""The outbox on its own: entries written with their rows, versions that keep a newer
publish's entry, and the sweeper that publishes what was left behind."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone

from carrot.models import MessageLog, OutboxEntry
from carrot.models.handover import flush
from carrot.models.outbox import add_entries, insert_with_entries, settle_entries
from carrot.publishing.sweeper import OUTBOX_GRACE, OUTBOX_LEASE, sweep_outbox

pytestmark = pytest.mark.django_db(transaction=True)


def new_rows(count, **fields):
    return [
        MessageLog(task="tests.testapp.tasks.add", task_args=[n, n], **fields) for n in range(count)
    ]


def later(seconds=1):
    return timezone.now() + OUTBOX_GRACE + timedelta(seconds=seconds)


def test_rows_and_their_entries_are_inserted_together_with_one_version():
    logs = new_rows(3)
    with transaction.atomic():
        written = insert_with_entries(logs, "default")
    assert all(log.pk for log in logs)
    entries = dict(OutboxEntry.objects.values_list("message_id", "created_at"))
    assert entries == {log.pk: written for log in logs}


def test_a_rolled_back_insert_leaves_neither_rows_nor_entries():
    with pytest.raises(RuntimeError), transaction.atomic():
        insert_with_entries(new_rows(2), "default")
        raise RuntimeError
    assert not MessageLog.objects.exists() and not OutboxEntry.objects.exists()


def test_a_newer_entry_survives_the_confirm_of_an_older_publish():
    (log,) = new_rows(1)
    with transaction.atomic():
        first = insert_with_entries([log], "default")
    with transaction.atomic():
        second = add_entries([log.pk], "default")  # published again before the confirm
    assert second > first
    assert settle_entries([(log.pk, first)], "default") == 0  # the old confirm
    assert OutboxEntry.objects.get().created_at == second
    assert settle_entries([(log.pk, second)], "default") == 1
    assert not OutboxEntry.objects.exists()


def test_the_sweeper_leaves_young_entries_to_their_publisher(broker):
    with transaction.atomic():
        insert_with_entries(new_rows(2), "default")
    assert sweep_outbox() == 0
    assert OutboxEntry.objects.filter(lease_until__isnull=True).count() == 2


def test_the_sweeper_publishes_an_old_entry_once_while_it_is_leased(broker):
    with transaction.atomic():
        insert_with_entries(new_rows(1), "default")
    assert sweep_outbox(later()) == 1
    assert sweep_outbox(later()) == 0  # leased by the first sweep
    assert flush(10)
    assert broker.count("default") == 1
    assert not OutboxEntry.objects.exists()


def test_an_expired_lease_is_taken_over(broker):
    with transaction.atomic():
        insert_with_entries(new_rows(1), "default")
    OutboxEntry.objects.update(lease_until=timezone.now() - timedelta(seconds=1), attempts=1)
    assert sweep_outbox(later()) == 1
    assert flush(10)
    assert broker.count("default") == 1
    assert OUTBOX_LEASE > OUTBOX_GRACE  # a lease outlives a normal publish


def test_the_sweeper_drops_entries_of_consumed_rows_and_fails_unpublishable_ones(broker):
    logs = new_rows(2)
    logs[1].queue = "gone"  # a queue removed from the settings since
    with transaction.atomic():
        insert_with_entries(logs, "default")
    MessageLog.objects.filter(pk=logs[0].pk).update(status="COMPLETED")
    assert sweep_outbox(later()) == 0
    assert not OutboxEntry.objects.exists()
    gone = MessageLog.objects.get(pk=logs[1].pk)
    assert gone.status == "FAILED" and gone.exception.startswith("Not published: ")
    assert "'gone' is not configured" in gone.exception
    assert broker.count("default") == 0


def test_an_unreachable_broker_leaves_the_entry_unleased_and_says_why():
    with override_settings(CARROT={"default_broker": "amqp://guest:guest@127.0.0.1:1/"}):
        with transaction.atomic():
            insert_with_entries(new_rows(1), "default")
        assert sweep_outbox(later()) == 0
    entry = OutboxEntry.objects.get()
    assert entry.lease_until is None and "connection refused" in entry.last_error
    connection.close()
