"""The recorder on its own: claims, outcomes and rejections as the worker writes them, in
the database (no broker)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from carrot.broker.consuming import Delivery
from carrot.models import MessageLog, OutboxEntry, WorkerHeartbeat
from carrot.worker.attempts import Claim, OutcomeKind, Record
from carrot.worker.heartbeats import new_identity, process_table, worker_name
from carrot.worker.recorder import WAIT_FOR_OWNER, Recorder

pytestmark = pytest.mark.django_db(transaction=True)


def recorder(max_interruptions=3):
    return Recorder("me:1", max_interruptions=max_interruptions)


def published(**fields):
    defaults = {"task": "tests.testapp.tasks.add", "uuid": uuid.uuid4(), "task_args": [1, 2]}
    return MessageLog.objects.create(**{**defaults, **fields})


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
    claim = recorder().claim(delivery_for(log), log.task, [], {})
    assert claim.run is False
    assert claim.wait == WAIT_FOR_OWNER
    assert "still running on other-host:42" in claim.reason


def test_a_redelivery_runs_again_when_its_worker_went_silent():
    WorkerHeartbeat.objects.create(
        name="other-host:42",
        hostname="other-host",
        pid=42,
        last_seen=timezone.now() - timedelta(minutes=5),
    )
    log = in_progress_on("other-host:42")
    claim = recorder().claim(delivery_for(log), log.task, [], {})
    assert (claim.run, claim.attempt) == (True, 2)
    log.refresh_from_db()
    assert (log.interruptions, log.worker) == (1, "me:1")


def test_a_dead_process_on_this_host_is_known_dead_at_once():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    log = in_progress_on(f"{socket.gethostname()}:{proc.pid}:{process_table()}.0badf00d")
    claim = recorder().claim(delivery_for(log), log.task, [], {})
    assert claim.run


def delivery(message_id, *, redelivered=False, app_id="carrot", age=0.0, type_="add"):
    return Delivery(
        tag=1,
        generation=1,
        queue="default",
        redelivered=redelivered,
        body=b"",
        message_id=message_id,
        type=type_,
        content_type="application/json",
        app_id=app_id,
        priority=3,
        headers={},
        timestamp=int(time.time() - age),
    )


# ------------------------------------------------------------------ group commit


def test_a_batch_claims_fresh_messages_and_records_outcomes_in_one_go():
    running = [published(status="IN_PROGRESS", attempts=1) for _ in range(3)]
    fresh = [published() for _ in range(2)]
    records = [
        Record(OutcomeKind.COMPLETED, Claim(True, running[0].pk, 1), {"output": 3, "log": []}),
        Record(
            OutcomeKind.FAILED,
            Claim(True, running[1].pk, 1),
            {
                "exception": "ValueError: x",
                "exception_type": "builtins.ValueError",
                "traceback": "tb",
                "log": [],
            },
        ),
        Record(  # a stale outcome: the row is at attempt 1, not 7
            OutcomeKind.COMPLETED, Claim(True, running[2].pk, 7), {"output": 9, "log": []}
        ),
    ]
    written = recorder().write_batch(records, [str(f.uuid) for f in fresh])
    assert {m: (c.run, c.log_id, c.attempt) for m, c in written.claims.items()} == {
        str(f.uuid): (True, f.pk, 1) for f in fresh
    }
    assert written.retried == [] and written.entries is None
    statuses = dict(MessageLog.objects.values_list("pk", "status"))
    assert [statuses[r.pk] for r in running] == ["COMPLETED", "FAILED", "IN_PROGRESS"]
    assert [statuses[f.pk] for f in fresh] == ["IN_PROGRESS", "IN_PROGRESS"]
    assert set(
        MessageLog.objects.filter(pk__in=[f.pk for f in fresh]).values_list("worker", flat=True)
    ) == {"me:1"}


def test_a_retry_goes_back_to_the_queue_with_an_outbox_entry_in_the_same_commit():
    log = published(status="IN_PROGRESS", attempts=1)
    stale = published(status="IN_PROGRESS", attempts=2)
    eta = timezone.now() + timedelta(seconds=30)
    values = {"eta": eta, "exception": "E: 1", "exception_type": "", "traceback": "", "log": []}
    written = recorder().write_batch(
        [
            Record(OutcomeKind.RETRYING, Claim(True, log.pk, 1), values, retry_in=30),
            Record(OutcomeKind.RETRYING, Claim(True, stale.pk, 1), values, retry_in=30),
        ],
        [],
    )
    assert written.retried == [log.pk]  # the stale one did not move, so it is not published
    log.refresh_from_db()
    assert (log.status, log.eta, log.exception) == ("PUBLISHED", eta, "E: 1")
    entry = OutboxEntry.objects.get()
    assert (entry.message_id, entry.created_at) == (log.pk, written.entries)


# ------------------------------------------------------------------ one at a time


def test_a_finished_task_is_skipped():
    log = published(status="COMPLETED", attempts=1)
    claim = recorder().claim(delivery(str(log.uuid), redelivered=True), log.task, [], {})
    assert (claim.run, claim.reason) == (False, "it is already COMPLETED")


def test_a_second_fresh_copy_of_a_running_task_does_not_run():
    log = published(status="IN_PROGRESS", attempts=1, worker="me:1")
    claim = recorder().claim(delivery(str(log.uuid)), log.task, [], {})
    assert not claim.run and "same message id is running" in claim.reason


def test_a_task_that_kills_its_worker_every_time_is_given_up():
    log = published(status="IN_PROGRESS", attempts=4, interruptions=3, worker="gone:1")
    claim = recorder(max_interruptions=3).claim(
        delivery(str(log.uuid), redelivered=True), log.task, [], {}
    )
    assert not claim.run
    log.refresh_from_db()
    assert log.status == "FAILED" and log.exception.startswith("Gave up after 4 interrupted")


def test_a_missing_row_waits_while_the_message_is_young_and_drops_it_when_old():
    message_id = str(uuid.uuid4())
    young = recorder().claim(delivery(message_id), "tests.testapp.tasks.add", [], {})
    assert (young.run, young.wait) == (False, 2.0)
    old = recorder().claim(delivery(message_id, age=120), "tests.testapp.tasks.add", [], {})
    assert (old.run, old.wait) == (False, 0.0) and "deleted" in old.reason
    assert not MessageLog.objects.exists()


def test_a_foreign_message_gets_a_row_and_runs():
    message_id = str(uuid.uuid4())
    claim = recorder().claim(
        delivery(message_id, app_id="elsewhere"), "tests.testapp.tasks.add", [1], {"b": 2}
    )
    row = MessageLog.objects.get(uuid=message_id)
    assert (claim.run, claim.log_id, claim.attempt) == (True, row.pk, 1)
    assert (row.status, row.task_args, row.task_kwargs, row.priority) == (
        "IN_PROGRESS",
        [1],
        {"b": 2},
        3,
    )


# ------------------------------------------------------------------ rejections


def test_a_rejection_fails_the_row_keeps_a_finished_one_and_creates_a_missing_one():
    queued, done = published(), published(status="COMPLETED", attempts=1)
    for row in (queued, done):
        recorder().reject(delivery(str(row.uuid)), "bad body")
    queued.refresh_from_db()
    done.refresh_from_db()
    assert (queued.status, queued.exception) == ("FAILED", "Message rejected: bad body")
    assert done.status == "COMPLETED"
    recorder().reject(delivery("not-a-uuid", type_="os.system"), "not registered")
    created = MessageLog.objects.get(task="os.system")
    assert (created.status, created.exception) == ("FAILED", "Message rejected: not registered")


# ------------------------------------------------------------------ identity


def test_two_processes_with_the_same_host_name_and_pid_have_different_names(monkeypatch):
    # Two containers whose worker is PID 1 on hosts both called "web".
    monkeypatch.setattr(socket, "gethostname", lambda: "web")
    monkeypatch.setattr("os.getpid", lambda: 1)
    assert new_identity() != new_identity()
    assert new_identity().startswith("web:1:")


def test_a_task_running_in_a_twin_container_is_waited_for():
    """Before: both workers were called host:pid, so the redelivery looked like this
    worker's own interrupted attempt and ran again beside the first."""
    host, pid, _ = worker_name().split(":")
    twin = f"{host}:{pid}:ffffff.0badf00d"  # same host name and PID, another process table
    WorkerHeartbeat.objects.create(name=twin, hostname=host, pid=int(pid), last_seen=timezone.now())
    log = in_progress_on(twin)
    claim = Recorder(worker_name(), max_interruptions=3).claim(delivery_for(log), log.task, [], {})
    assert (claim.run, claim.wait) == (False, WAIT_FOR_OWNER)
