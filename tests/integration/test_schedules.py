"""Schedules in the database: declarations, sync, claims, the outbox, run now, cleanup."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from carrot import InvalidTask, periodic, task
from carrot.exceptions import TaskNotRegistered
from carrot.helper_tasks import cleanup
from carrot.models import MessageLog, OutboxEntry, ScheduledTask
from carrot.models.handover import flush
from carrot.publishing.sweeper import OUTBOX_GRACE, sweep_outbox
from carrot.registry import registry
from carrot.scheduling.cadence import Cadence
from carrot.scheduling.declaration import Declaration
from carrot.scheduling.edits import run_now, save_schedule
from carrot.scheduling.scheduler import Scheduler
from carrot.scheduling.sync import CLEANUP_SCHEDULE, plan_sync, sync_declared
from carrot.utilities import create_scheduled_task
from tests.testapp import tasks

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def declarations():
    """Isolate @periodic declarations made by a test."""
    saved = dict(registry._schedules)
    registry._schedules.clear()
    yield registry
    registry._schedules.clear()
    registry._schedules.update(saved)


def heartbeat():
    return "beat"


def nightly(kind="full"):
    return kind


# ------------------------------------------------------------------ @periodic


def test_periodic_registers_the_task_and_declares_the_schedule(declarations):
    t = periodic(seconds=30)(heartbeat)
    assert registry[t.name] is t
    (declaration,) = registry.declarations()
    assert declaration.name == t.name == "tests.integration.test_schedules.heartbeat"
    assert declaration.cadence == Cadence.build(seconds=30)


def test_periodic_stacks_on_task_with_its_own_arguments_and_names(declarations):
    t = task(queue="other")(nightly)
    periodic(
        cron="0 3 * * *", timezone="Europe/Berlin", kwargs={"kind": "full"}, name="nightly full"
    )(t)
    periodic(cron="0 * * * *", kwargs={"kind": "quick"}, name="hourly quick", priority=5)(t)
    by_name = {d.name: d for d in registry.declarations()}
    assert by_name["nightly full"].kwargs == {"kind": "full"}
    assert by_name["nightly full"].cadence.timezone == "Europe/Berlin"
    assert by_name["hourly quick"].priority == 5
    assert by_name["hourly quick"].task == t.name


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({}, "exactly one of"),
        ({"cron": "61 * * * *"}, "not a valid cron"),
        ({"seconds": 0}, "positive integer"),
        ({"seconds": 5, "kwargs": {"when": object()}}, "not JSON-serialisable"),
        ({"seconds": 5, "priority": 99}, "out of range"),
        ({"cron": "* * * * *", "timezone": "Nowhere/Land"}, "not a known time zone"),
    ],
)
def test_bad_declarations_fail_at_import_with_a_message(declarations, options, fragment):
    with pytest.raises(InvalidTask, match=fragment):
        periodic(**options)(heartbeat)


# ------------------------------------------------------------------ sync


def declare(name, cadence, task_name="tests.testapp.tasks.record", **kwargs):
    registry.declare(Declaration(name=name, task=task_name, cadence=cadence, **kwargs))


@pytest.mark.django_db
@override_settings(CARROT={"completed_retention": None})
def test_sync_creates_updates_and_deactivates_across_restarts(declarations):
    declare("a", Cadence.build(seconds=5), args=("x",))
    declare("b", Cadence.build(cron="0 3 * * *", timezone="UTC"))
    plan = sync_declared(NOW)
    assert [d.name for d in plan.create] == ["a", "b"]
    a = ScheduledTask.objects.get(task_name="a")
    assert (a.source, a.active, a.interval_type, a.interval_count, a.task_args) == (
        "code",
        True,
        "seconds",
        5,
        ["x"],
    )
    assert a.next_run_at == NOW + timedelta(seconds=5)
    assert sync_declared(NOW).in_sync  # idempotent

    # "Restart" with a changed and a removed declaration.
    registry.undeclare("b")
    declare("a", Cadence.build(minutes=1), args=("y",))
    later = NOW + timedelta(hours=1)
    plan = sync_declared(later)
    assert [r.task_name for r, _, _ in plan.update] == ["a"]
    assert [r.task_name for r in plan.deactivate] == ["b"]
    a.refresh_from_db()
    assert (a.interval_type, a.interval_count, a.task_args) == ("minutes", 1, ["y"])
    assert a.next_run_at == later + timedelta(minutes=1)  # rescheduled from now: no burst
    b = ScheduledTask.objects.get(task_name="b")
    assert (b.active, b.removed_at) == (False, later)  # kept, marked, never deleted

    # Declared again: reactivated.
    declare("b", Cadence.build(cron="0 3 * * *", timezone="UTC"))
    sync_declared(later)
    b.refresh_from_db()
    assert (b.active, b.removed_at) == (True, None)


@pytest.mark.django_db
@override_settings(CARROT={"completed_retention": None})
def test_sync_leaves_user_rows_and_paused_code_rows_alone(declarations):
    ScheduledTask.objects.create(
        task_name="mine",
        task="tests.testapp.tasks.add",
        interval_type="hours",
        interval_count=1,
        task_args=[1, 2],
    )
    declare("paused", Cadence.build(seconds=5))
    sync_declared(NOW)
    ScheduledTask.objects.filter(task_name="paused").update(active=False)
    declare("mine", Cadence.build(seconds=5))  # clashes with the person's schedule
    plan = sync_declared(NOW)
    assert [r.task_name for r, _ in plan.conflicts] == ["mine"]
    mine = ScheduledTask.objects.get(task_name="mine")
    assert (mine.source, mine.interval_type, mine.task_args) == ("user", "hours", [1, 2])
    assert ScheduledTask.objects.get(task_name="paused").active is False


@pytest.mark.django_db
def test_cleanup_is_declared_unless_retention_is_none(declarations):
    assert CLEANUP_SCHEDULE in [d.name for d in plan_sync().create]
    with override_settings(CARROT={"completed_retention": None}):
        assert CLEANUP_SCHEDULE not in [d.name for d in plan_sync().create]


@pytest.mark.django_db
@override_settings(CARROT={"completed_retention": None})
def test_carrot_schedules_check_list_and_sync(declarations):
    declare("every-minute", Cadence.build(minutes=1))
    out, err = StringIO(), StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("carrot_schedules", "--check", stdout=out, stderr=err)
    assert exit_info.value.code == 1
    assert "create 'every-minute'" in out.getvalue()
    call_command("carrot_schedules", "--sync", stdout=StringIO())
    out = StringIO()
    call_command("carrot_schedules", "--check", stdout=out)
    assert "in sync" in out.getvalue()
    out = StringIO()
    call_command("carrot_schedules", stdout=out)
    listing = out.getvalue()
    assert "every-minute" in listing and "every minute" in listing
    assert listing.count(", ") >= 2  # three next run times


# ------------------------------------------------------------------ publishing ticks


def make_schedule(**kwargs):
    fields = {
        "task_name": "s",
        "task": "tests.testapp.tasks.record",
        "interval_type": "seconds",
        "interval_count": 10,
        "task_args": ["k"],
        "next_run_at": NOW,
    }
    fields.update(kwargs)
    return ScheduledTask.objects.create(**fields)


@pytest.mark.django_db(transaction=True)
def test_a_due_tick_is_published_once_with_its_tick_time(broker):
    schedule = make_schedule()
    scheduler = Scheduler(clock=lambda: NOW)
    (log,) = scheduler.publish_due(NOW)
    assert (log.schedule_id, log.scheduled_for, log.task_args) == (schedule.pk, NOW, ["k"])
    assert scheduler.publish_due(NOW) == []
    schedule.refresh_from_db()
    assert schedule.next_run_at == NOW + timedelta(seconds=10)
    assert (schedule.last_run_at, schedule.last_message_id) == (NOW, log.pk)
    assert flush(10)  # the relay confirmed it: its outbox entry is gone
    assert not OutboxEntry.objects.exists()
    assert broker.count("default") == 1


@pytest.mark.django_db(transaction=True)
def test_new_rows_without_a_next_tick_are_scheduled_not_run_at_once(broker):
    schedule = make_schedule(next_run_at=None)
    assert Scheduler().publish_due(NOW) == []
    schedule.refresh_from_db()
    assert schedule.next_run_at == NOW + timedelta(seconds=10)


@pytest.mark.django_db(transaction=True)
def test_editing_a_schedule_takes_effect_without_a_burst(broker):
    schedule = make_schedule(next_run_at=NOW - timedelta(hours=1))
    save_schedule({}, Cadence.every("seconds", 60), schedule, now=NOW)
    assert Scheduler().publish_due(NOW) == []
    assert Scheduler().publish_due(NOW + timedelta(seconds=60)) != []
    assert MessageLog.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_inactive_schedules_publish_nothing(broker):
    make_schedule(active=False)
    assert Scheduler().publish_due(NOW + timedelta(days=1)) == []


@pytest.mark.django_db(transaction=True)
def test_a_schedule_for_an_unknown_task_is_skipped_not_fatal(broker, caplog):
    make_schedule(task="gone.tasks.old", task_name="stale")
    fine = make_schedule(task_name="fine")
    published = Scheduler().publish_due(NOW)
    assert [log.schedule_id for log in published] == [fine.pk]
    assert "not a registered task" in caplog.text
    stale = ScheduledTask.objects.get(task_name="stale")
    assert stale.next_run_at > NOW  # its ticks are consumed, not retried in a loop


@pytest.mark.django_db(transaction=True)
def test_a_schedule_for_a_queue_no_longer_configured_does_not_block_the_others(broker, caplog):
    make_schedule(task_name="a-orphan", queue="removed-from-settings")
    fine = make_schedule(task_name="b-fine")
    published = Scheduler().publish_due(NOW)
    assert [log.schedule_id for log in published] == [fine.pk]
    assert "cannot be published" in caplog.text and "removed-from-settings" in caplog.text
    assert ScheduledTask.objects.get(task_name="a-orphan").next_run_at > NOW


@pytest.mark.django_db(transaction=True)
def test_run_now_publishes_outside_the_cadence(broker):
    schedule = make_schedule(next_run_at=NOW + timedelta(hours=1))
    log = run_now(schedule)
    assert (log.status, log.schedule_id, log.scheduled_for) == ("PUBLISHED", schedule.pk, None)
    schedule.refresh_from_db()
    assert schedule.next_run_at == NOW + timedelta(hours=1)
    assert schedule.last_message_id == log.pk
    assert broker.count("default") == 1


# ------------------------------------------------------------------ the outbox


@pytest.mark.django_db(transaction=True)
def test_a_scheduler_dying_between_claim_and_publish_loses_nothing(broker, monkeypatch):
    make_schedule()
    # The process "dies" right after the claim commits: the publish never happens.
    monkeypatch.setattr("carrot.scheduling.scheduler.hand_over", lambda items: None)
    (log,) = Scheduler().publish_due(NOW)
    assert OutboxEntry.objects.filter(pk=log.pk).exists()
    assert broker.count("default") == 0
    monkeypatch.undo()
    assert sweep_outbox(timezone.now()) == 0  # too young: its publisher may still be alive
    assert sweep_outbox(timezone.now() + OUTBOX_GRACE + timedelta(seconds=1)) == 1
    assert flush(10)
    assert not OutboxEntry.objects.exists()
    properties, _ = broker.get("default")
    assert properties.message_id == str(log.uuid)
    assert MessageLog.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_leaves_the_tick_in_the_outbox_until_it_returns(broker):
    make_schedule()
    down = {"default_broker": "amqp://guest:guest@127.0.0.1:1/"}
    with override_settings(CARROT=down):
        (log,) = Scheduler().publish_due(NOW)
        assert sweep_outbox(timezone.now() + timedelta(minutes=1)) == 0
        assert "connection refused" in OutboxEntry.objects.get(pk=log.pk).last_error
    assert MessageLog.objects.get(pk=log.pk).status == "PUBLISHED"  # waiting, not failed
    assert sweep_outbox(timezone.now() + timedelta(minutes=5)) == 1
    assert broker.count("default") == 1
    assert MessageLog.objects.get(pk=log.pk).status == "PUBLISHED"


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweepers_publish_each_entry_once(broker, monkeypatch):
    for n in range(5):
        make_schedule(task_name=f"s{n}")
    monkeypatch.setattr("carrot.scheduling.scheduler.hand_over", lambda items: None)
    Scheduler().publish_due(NOW)
    monkeypatch.undo()
    later = timezone.now() + timedelta(minutes=1)
    counts = []

    def sweep():
        counts.append(sweep_outbox(later))
        connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 5
    assert broker.count("default") == 5


# ------------------------------------------------------------------ exactly once


def assert_each_tick_once(schedule_ids):
    """The invariant: no (schedule, tick) published twice; returns ticks per schedule."""
    out = {}
    for schedule_id in schedule_ids:
        ticks = list(
            MessageLog.objects.filter(schedule_id=schedule_id, scheduled_for__isnull=False)
            .order_by("scheduled_for")
            .values_list("scheduled_for", flat=True)
        )
        duplicates = {t for t in ticks if ticks.count(t) > 1}
        assert not duplicates, f"schedule {schedule_id} published {sorted(duplicates)} twice"
        out[schedule_id] = ticks
    return out


class NoClaimScheduler(Scheduler):
    """The negative control: the conditional UPDATE is replaced by a blind one."""

    def claim(self, row_id, expected, new_next):
        ScheduledTask.objects.filter(pk=row_id).update(next_run_at=new_next)
        return True


def race(scheduler_class, schedule_id):
    """Two schedulers read the same due schedule, then both try to publish its tick."""
    barrier = threading.Barrier(2)

    def run():
        scheduler = scheduler_class()
        row = ScheduledTask.objects.get(pk=schedule_id)  # both see next_run_at == NOW
        barrier.wait(5)
        scheduler.publish_tick(
            row,
            row.next_run_at,
            row.next_run_at + timedelta(seconds=10),
            row.next_run_at,
        )
        connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_racing_for_a_tick_publish_it_once(broker):
    schedule = make_schedule()
    race(Scheduler, schedule.pk)
    assert_each_tick_once([schedule.pk])
    assert MessageLog.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_without_the_claim_the_check_sees_duplicates(broker):
    schedule = make_schedule()
    race(NoClaimScheduler, schedule.pk)
    assert MessageLog.objects.count() == 2
    with pytest.raises(AssertionError, match="twice"):
        assert_each_tick_once([schedule.pk])


# ------------------------------------------------------------------ seed helper, cleanup


@pytest.mark.django_db
def test_create_scheduled_task_keeps_the_seed_signature():
    row = create_scheduled_task(tasks.record, {"seconds": 5}, key="x")
    assert (row.task, row.interval_type, row.interval_count, row.task_kwargs) == (
        "tests.testapp.tasks.record",
        "seconds",
        5,
        {"key": "x"},
    )
    assert (row.source, row.queue, row.active) == ("user", "default", True)
    assert row.next_run_at is not None
    assert create_scheduled_task(tasks.record, {"seconds": 5}, key="x") == row  # idempotent
    other = create_scheduled_task(
        "tests.testapp.tasks.record", {"minutes": 1}, queue="other", key="y"
    )
    assert other.task_name == "tests.testapp.tasks.record #2"
    assert other.queue == "other"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("interval", "error"),
    [
        ({"weeks": 1}, ValueError),
        ({"seconds": 0}, ValueError),
        ({}, ValueError),
        ({"seconds": 1, "minutes": 1}, ValueError),
    ],
)
def test_create_scheduled_task_validates_the_interval(interval, error):
    with pytest.raises(error):
        create_scheduled_task(tasks.record, interval)


@pytest.mark.django_db
def test_create_scheduled_task_refuses_unregistered_tasks():
    with pytest.raises(TaskNotRegistered):
        create_scheduled_task("os.system", {"seconds": 5})


@pytest.mark.django_db
@override_settings(CARROT={"completed_retention": 3600, "scheduler": {"cleanup_batch_size": 2}})
def test_cleanup_deletes_old_completed_tasks_in_batches():
    old = timezone.now() - timedelta(hours=2)
    for _n in range(5):
        MessageLog.objects.create(task="t", status="COMPLETED", completion_time=old)
    MessageLog.objects.create(task="t", status="COMPLETED", completion_time=timezone.now())
    MessageLog.objects.create(task="t", status="FAILED", failure_time=old)
    assert cleanup() == 5
    assert MessageLog.objects.count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow  # ~18 s of ticks
def test_two_scheduler_processes_publish_each_tick_exactly_once(worker_factory, broker):
    start = timezone.now() + timedelta(seconds=3)
    every_second = make_schedule(task_name="1s", interval_count=1, next_run_at=start)
    every_two = make_schedule(task_name="2s", interval_count=2, next_run_at=start)
    processes = [worker_factory("--scheduler-only") for _ in range(2)]
    for proc in processes:
        proc.wait_for_log("Scheduler started", 30)
    time.sleep(15)
    ScheduledTask.objects.update(active=False)
    time.sleep(1.5)
    for proc in processes:
        proc.stop()
    ticks = assert_each_tick_once([every_second.pk, every_two.pk])
    for schedule, step, at_least in ((every_second, 1, 12), (every_two, 2, 6)):
        found = ticks[schedule.pk]
        assert len(found) >= at_least
        gaps = {(b - a).total_seconds() for a, b in zip(found, found[1:], strict=False)}
        assert gaps == {step}, f"{schedule.task_name}: a tick is missing ({sorted(gaps)})"
    total = MessageLog.objects.filter(schedule__isnull=False).count()
    assert broker.count("default") == total  # every row reached the broker, nothing else did
