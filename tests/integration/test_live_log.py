"""Live logs: a running task's lines reach its row (and the monitor) while it runs, in
batches, and its outcome still writes the complete log. A real worker, RabbitMQ and the
database; the worker logs each write of the live log (DEBUG), which the tests count."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import reverse

from carrot.models import MessageLog
from carrot.models.lifecycle import COMPLETED, IN_PROGRESS, LOG_SO_FAR
from carrot.worker.livelog import FLUSH_INTERVAL, write_logs
from tests.harness import WorkerProcess, finished, wait_until
from tests.testapp.tasks import chatty, log_until_released, sleep_then_record

pytestmark = pytest.mark.django_db(transaction=True)

WROTE = re.compile(r"Live log: wrote the log so far of \d+ running task\(s\) \(rows ([\d, ]+)\)")


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    path = tmp_path / "markers"
    path.mkdir()
    return path


@pytest.fixture
def live_worker(worker_factory: Any, markers: Path) -> WorkerProcess:
    return worker_factory("--no-scheduler", CARROT_TEST_MARKER_DIR=str(markers)).wait_ready()


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("live", "live@example.com", "pw"))
    return client


def writes_of(worker: WorkerProcess, row: MessageLog) -> int:
    """How many times the worker wrote ``row``'s live log so far."""
    return sum(str(row.pk) in match.group(1).split(", ") for match in WROTE.finditer(worker.log()))


def messages(row: MessageLog) -> list[str]:
    return [r["message"] for r in MessageLog.objects.get(pk=row.pk).log]


def running_with(row: MessageLog, predicate: Any) -> Any:
    """Return the row when it is IN_PROGRESS and ``predicate(its messages)`` holds."""
    fresh = MessageLog.objects.get(pk=row.pk)
    lines = [r["message"] for r in fresh.log]
    return fresh if fresh.status == IN_PROGRESS and predicate(lines) else None


def detail(client: Client, row: MessageLog, **headers: str) -> Any:
    return client.get(reverse("carrot:task", args=[row.uuid]), **headers)


def poll(client: Client, row: MessageLog, seen: str) -> Any:
    return client.get(
        reverse("carrot:task", args=[row.uuid]),
        {"seen": seen, "level": "DEBUG"},
        headers={"HX-Request": "true", "HX-Target": "task-detail"},
    )


def test_a_running_tasks_lines_show_while_it_runs_and_its_outcome_writes_them_all(
    live_worker, markers, staff
):
    log = log_until_released.delay("live", lines=3)
    first = ["live line 1", "live line 2", "live line 3"]
    row = wait_until(
        lambda: running_with(log, lambda lines: lines == first), 15, message="the first lines"
    )
    assert [r["level"] for r in row.log] == ["INFO"] * 3

    page = detail(staff, log)
    assert page.status_code == 200
    html = page.content.decode()
    assert all(line in html for line in first)
    assert ">live</span>" in html  # the Log heading says it is live
    fragment = poll(staff, log, IN_PROGRESS)
    assert fragment.status_code == 200
    assert 'hx-trigger="every 2s' in fragment.content.decode()  # polling goes on
    assert "live line 3" in fragment.content.decode()

    (markers / "release-live").touch()  # a later line, while it still runs
    wait_until(
        lambda: running_with(log, lambda lines: lines[-1:] == ["live released"]),
        15,
        message="the later line",
    )
    assert "live released" in poll(staff, log, IN_PROGRESS).content.decode()

    (markers / "finish-live").touch()
    row = finished(log)
    assert row.status == COMPLETED and row.output == "live"
    assert messages(row) == [*first, "live released"]  # the outcome's log: complete

    done = poll(staff, log, IN_PROGRESS)  # the first poll after the end: the final page
    assert done.status_code == 200
    assert "hx-trigger" not in done.content.decode()
    assert "live released" in done.content.decode()
    assert ">live</span>" not in done.content.decode()
    assert poll(staff, log, COMPLETED).status_code == 286  # polling stops


@pytest.mark.slow  # ~9 s: keeps make test under 15 minutes
def test_a_burst_of_lines_is_written_in_a_few_batches(live_worker, markers):
    log = log_until_released.delay("burst", lines=1, burst=998, burst_seconds=1.0)
    wait_until(
        lambda: running_with(log, lambda lines: lines == ["burst line 1"]), 15, message="line 1"
    )
    # The worker logs each write just after its commit: wait for the line, not the row.
    wait_until(lambda: writes_of(live_worker, log) >= 1, 5, message="the write's log line")
    before = writes_of(live_worker, log)
    assert before == 1

    started = time.monotonic()
    (markers / "release-burst").touch()  # 998 lines within a second, then one more
    wait_until(lambda: (markers / "logged-burst").exists(), 15, message="the burst")
    row = wait_until(
        lambda: running_with(log, lambda lines: len(lines) == 1000), 15, message="all lines"
    )
    elapsed = time.monotonic() - started
    assert [r["message"] for r in row.log][-2:] == ["burst burst 998", "burst released"]
    time.sleep(2.5 * FLUSH_INTERVAL)  # no new lines: no more writes (and all logged)
    during = writes_of(live_worker, log) - before
    # One write per interval at most, whatever the number of lines (not one per line).
    assert 1 <= during <= elapsed / FLUSH_INTERVAL + 1, (during, elapsed)
    assert during <= 5, during
    time.sleep(2 * FLUSH_INTERVAL)
    assert writes_of(live_worker, log) - before == during
    (markers / "finish-burst").touch()
    row = finished(log)
    assert len(row.log) == 1000 and row.log[-1]["message"] == "burst released"


def test_short_tasks_cause_no_live_log_write(live_worker, markers):
    # Each runs a quarter of the interval, eight of them on two threads: the live log's
    # rounds fall while they run, and must still leave them to their outcomes.
    logs = [sleep_then_record.delay(f"short-{i}", FLUSH_INTERVAL / 4) for i in range(8)]
    logs.append(chatty.delay())
    rows = [finished(log) for log in logs]
    assert all(row.status == COMPLETED for row in rows)
    assert [r["message"] for r in rows[0].log] == ["started short-0"]
    assert len(rows[-1].log) == 4
    first_start = min(row.start_time for row in rows)
    last_end = max(row.completion_time for row in rows)
    assert (last_end - first_start).total_seconds() > FLUSH_INTERVAL  # rounds did happen
    time.sleep(1.5 * FLUSH_INTERVAL)
    assert not WROTE.search(live_worker.log()), "a short task's log was written while it ran"


# ------------------------------------------------------------------ the write itself


def in_progress(attempts: int = 2, status: str = IN_PROGRESS) -> MessageLog:
    return MessageLog.objects.create(
        task="tests.testapp.tasks.add",
        queue="default",
        status=status,
        attempts=attempts,
        log=[{"message": "old"}],
    )


def test_the_write_only_touches_a_running_row_at_its_attempt():
    running, later, done = in_progress(), in_progress(attempts=3), in_progress(status=COMPLETED)
    rows = [(r.pk, 2, {"log": [{"message": "so far"}]}) for r in (running, later, done)]
    assert write_logs(rows) == {running.pk}
    assert messages(running) == ["so far"]
    assert messages(later) == ["old"]  # a later attempt's log is not replaced
    assert messages(done) == ["old"]  # nor an outcome's
    assert MessageLog.objects.get(pk=running.pk).status == IN_PROGRESS


def test_the_orm_and_the_batched_sql_write_the_same_log_so_far():
    by_orm, by_sql = in_progress(), in_progress()
    values = {"log": [{"message": "so far"}]}
    assert MessageLog.objects.filter(pk=by_orm.pk).apply(LOG_SO_FAR, **values) == 1
    MessageLog.objects.apply_each(LOG_SO_FAR, [(by_sql.pk, 2, values)])
    fields = ("status", "attempts", "log", "start_time", "worker")
    assert MessageLog.objects.filter(pk=by_orm.pk).values(*fields).get() == (
        MessageLog.objects.filter(pk=by_sql.pk).values(*fields).get()
    )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL")
def test_a_row_another_transaction_holds_is_skipped_not_waited_for():
    import psycopg

    held, free = in_progress(), in_progress()
    settings = connection.settings_dict
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(
            host=settings["HOST"],
            port=settings["PORT"],
            user=settings["USER"],
            dbname=settings["NAME"],
        ) as other:
            other.execute(
                f"SELECT id FROM {MessageLog._meta.db_table} WHERE id = %s FOR UPDATE",  # noqa: S608
                (held.pk,),
            )
            locked.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        rows = [(r.pk, 2, {"log": [{"message": "so far"}]}) for r in (held, free)]
        assert write_logs(rows) == {free.pk}
        assert time.monotonic() - started < 2
    finally:
        release.set()
        thread.join()
    assert messages(held) == ["old"] and messages(free) == ["so far"]
