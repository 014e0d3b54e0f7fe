"""The overview and statistics pages, and the roll-ups behind them, on a real database
and the real broker."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from carrot.models import MessageLog, RollupMark, TaskRollup, WorkerHeartbeat
from carrot.models import statistics as stats
from carrot.models.lifecycle import NOT_PUBLISHED_TYPE, PURGED_TYPE, REJECTED_TYPE
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db

XSS = "<script>alert(1)</script>"


@pytest.fixture
def staff(client):
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    return client


def finished(task, ended, runtime=0.5, ok=True, **extra):
    status = MessageLog.COMPLETED if ok else MessageLog.FAILED
    end_field = "completion_time" if ok else "failure_time"
    return MessageLog.objects.create(
        task=task,
        status=status,
        start_time=ended - timedelta(seconds=runtime),
        **{end_field: ended},
        **extra,
    )


# ------------------------------------------------------------------ roll-ups


def test_roll_up_sums_each_minute_once_and_keeps_hours_whole():
    now = timezone.now().replace(minute=55, second=0, microsecond=0) - timedelta(hours=1)
    early = now - timedelta(minutes=50)  # 05 past the hour
    for i in range(5):
        finished("a", early + timedelta(seconds=i), runtime=0.1)
    finished("a", early, runtime=2.0, ok=False)
    finished("b", now - timedelta(minutes=3), runtime=0.02)
    # Never started (rejected by the gate): not a run.
    MessageLog.objects.create(task="a", status=MessageLog.FAILED, failure_time=early)

    assert stats.roll_up(now) == 7
    assert stats.roll_up(now) == 0  # nothing new: nothing summed twice
    minutes = TaskRollup.objects.filter(period=TaskRollup.MINUTE)
    assert sum(r.completed for r in minutes) == 6 and sum(r.failed for r in minutes) == 1

    # A run later in the same hour, summed by a later roll-up, is added to the hour's row.
    finished("a", now + timedelta(seconds=1), runtime=0.3)  # after the mark, at :55
    assert stats.roll_up(now + timedelta(minutes=2)) == 1
    (hour,) = TaskRollup.objects.filter(period=TaskRollup.HOUR, task="a")
    assert (hour.completed, hour.failed, hour.runtime_max) == (6, 1, 2.0)
    summed = stats.task_summaries("24h", now + timedelta(minutes=2))
    assert (summed["a"].completed, summed["a"].failed) == (6, 1)
    assert summed["a"].runtime_max == pytest.approx(2.0)


@pytest.mark.parametrize("window", ["1h", "24h", "7d"])
def test_a_roll_up_committing_while_a_page_reads_is_not_counted_twice(monkeypatch, window):
    now = timezone.now().replace(minute=30, second=0, microsecond=0)
    finished("a", now - timedelta(minutes=20))
    stats.roll_up(now - timedelta(minutes=10))
    finished("a", now - timedelta(minutes=5))  # after the mark: the tail, for now
    real = stats._mark

    def mark_then_roll_up():
        seen = real()
        stats.roll_up(now)  # a worker sums the tail into the hour's row meanwhile
        return seen

    monkeypatch.setattr(stats, "_mark", mark_then_roll_up)
    assert stats.task_summaries(window, now)["a"].runs == 2


def test_a_failure_without_a_run_is_not_a_run():
    now = timezone.now()
    # A retried attempt keeps its start_time; its redelivery is then rejected, or purged.
    for exception_type in (REJECTED_TYPE, PURGED_TYPE, NOT_PUBLISHED_TYPE):
        finished("a", now - timedelta(minutes=2), ok=False, exception_type=exception_type)
    finished("a", now - timedelta(minutes=2), ok=False, exception_type="builtins.ValueError")
    stats.roll_up(now)
    s = stats.task_summaries("1h", now + timedelta(minutes=1))["a"]
    assert (s.completed, s.failed) == (0, 1)
    assert sum(f for _, _, f in stats.per_minute(60, now + timedelta(minutes=1))) == 1


def test_a_span_another_process_summed_first_is_not_written_again(monkeypatch):
    now = timezone.now()
    finished("a", now - timedelta(minutes=5))
    stats.roll_up(now - timedelta(minutes=10))  # creates the mark before the row's minute
    real = stats._sums

    def racing(since, until):
        out = real(since, until)
        # Meanwhile another worker moved the mark over the same span and wrote its sums.
        RollupMark.objects.filter(name=stats.MARK).update(upto=until)
        return out

    monkeypatch.setattr(stats, "_sums", racing)
    assert stats.roll_up(now) == 0
    assert not TaskRollup.objects.exists()


def test_summaries_add_the_rollups_and_the_tail_without_counting_twice():
    now = timezone.now()
    finished("a", now - timedelta(minutes=30), runtime=1.0)
    finished("a", now - timedelta(minutes=20), runtime=3.0, ok=False)
    finished("a", now - timedelta(days=2))  # outside 24 h
    stats.roll_up(now)
    finished("a", now - timedelta(seconds=2), runtime=0.5)  # after the mark: the tail
    s = stats.task_summaries("24h", now)["a"]
    assert (s.completed, s.failed, s.runtime_max) == (2, 1, 3.0)
    assert stats.task_summaries("7d", now)["a"].runs == 4
    assert stats.task_summaries("1h", now)["a"].runs == 3


def test_per_minute_counts_completed_and_failed():
    now = timezone.now()
    finished("a", now - timedelta(minutes=10))
    finished("a", now - timedelta(minutes=10), ok=False)
    stats.roll_up(now)
    finished("b", now, ok=True)  # the tail, counted by the database
    minutes = stats.per_minute(60, now)
    assert len(minutes) == 60
    assert sum(c for _, c, _ in minutes) == 2 and sum(f for _, _, f in minutes) == 1
    assert minutes[-1][1] == 1


# ------------------------------------------------------------------ the overview


def test_overview_is_the_landing_page_and_needs_staff(client):
    response = client.get(reverse("carrot:index"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db(transaction=True)
def test_overview_shows_workers_running_tasks_and_queue_depths(staff, broker):
    beat = WorkerHeartbeat.objects.create(
        name="host-a:41:x.1",
        hostname="host-a",
        pid=41,
        queues=["default"],
        concurrency={"default": 2},
        scheduler=True,
    )
    WorkerHeartbeat.objects.create(
        name="host-b:42:x.2",
        hostname="host-b",
        pid=42,
        queues=["other"],
        last_seen=timezone.now() - timedelta(minutes=2),
    )
    WorkerHeartbeat.objects.create(
        name="gone:43:x.3", hostname="gone", pid=43, last_seen=timezone.now() - timedelta(hours=1)
    )
    running = MessageLog.objects.create(
        task=f"tests.testapp.tasks.{XSS}",
        status=MessageLog.IN_PROGRESS,
        worker=beat.name,
        start_time=timezone.now() - timedelta(seconds=75),
    )
    broker.purge("default")
    for i in range(3):
        add.delay(i, 1)
    assert broker.count("default") == 3
    finished("tests.testapp.tasks.add", timezone.now() - timedelta(minutes=3))
    finished("tests.testapp.tasks.add", timezone.now() - timedelta(minutes=3), ok=False)

    html = staff.get(reverse("carrot:index")).content.decode()
    assert "host-a" in html and "pid 41" in html and "default × 2" in html and "scheduler" in html
    assert "host-b" in html and "not seen" in html  # stale, flagged
    assert "gone" not in html  # hidden after a while
    assert str(running.uuid) in html and "1 min 15 s" in html
    assert XSS not in html and "&lt;script&gt;" in html
    row = re.search(r'<tr data-queue="default">(.*?)</tr>', html, re.S).group(1)
    assert re.search(r"data-ready>3<", row), row
    assert re.search(r"<a [^>]*>3</a>", row)  # queued rows, linked to their tab
    assert "1 completed" in html and "1 failed" in html
    assert html.count('class="minute"') == 60


def test_overview_fragment_polls_and_stops_nothing(staff):
    response = staff.get(reverse("carrot:index"), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="overview")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.startswith('<div id="overview"') and "<html" not in html
    assert 'hx-trigger="every 5s[!document.hidden]"' in html


@override_settings(CARROT={"default_broker": "amqp://guest:secret-pw@127.0.0.1:1/"})
def test_overview_with_the_broker_down_says_so(staff):
    response = staff.get(reverse("carrot:index"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Broker unreachable" in html and "secret-pw" not in html


# ------------------------------------------------------------------ statistics


def test_statistics_lists_tasks_with_runs_rates_and_runtimes(staff):
    now = timezone.now()
    for seconds in (0.01, 0.02, 0.03, 0.04):
        finished("tests.testapp.tasks.add", now - timedelta(minutes=5), runtime=seconds)
    failure = finished("tests.testapp.tasks.add", now - timedelta(minutes=4), runtime=9.0, ok=False)
    finished(XSS, now - timedelta(hours=3), runtime=1.0)

    html = staff.get(reverse("carrot:statistics"), {"window": "24h"}).content.decode()
    row = re.search(r'<tr data-task="tests.testapp.tasks.add">(.*?)</tr>', html, re.S).group(1)
    assert re.search(r"data-runs>5<", row)
    assert "20.0%" in row
    assert "9.0 s" in row  # the maximum, exact
    assert reverse("carrot:task", args=[failure.uuid]) in row
    assert XSS not in html and "&lt;script&gt;" in html

    one_hour = staff.get(reverse("carrot:statistics"), {"window": "1h"}).content.decode()
    assert "tests.testapp.tasks.add" in one_hour and "&lt;script&gt;" not in one_hour


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"window": "7d", "sort": "p95", "dir": "asc"},
        {"window": "x" * 5000, "sort": "'; DROP TABLE", "dir": "sideways"},
        {"window": ["1h", "7d"], "sort": ""},
        {"sort": "last_failure"},
    ],
)
def test_statistics_takes_any_query_string(staff, query):
    finished("a", timezone.now() - timedelta(minutes=1))
    assert staff.get(reverse("carrot:statistics"), query).status_code == 200


def test_statistics_sorts_by_each_column(staff):
    now = timezone.now()
    finished("few-slow", now - timedelta(minutes=2), runtime=5.0)
    for _ in range(3):
        finished("many-fast", now - timedelta(minutes=2), runtime=0.01)

    def order(**query):
        html = staff.get(reverse("carrot:statistics"), query).content.decode()
        return re.findall(r'<tr data-task="([^"]+)">', html)

    assert order(sort="runs", dir="desc") == ["many-fast", "few-slow"]
    assert order(sort="runs", dir="asc") == ["few-slow", "many-fast"]
    assert order(sort="max", dir="desc") == ["few-slow", "many-fast"]
    assert order(sort="task", dir="asc") == ["few-slow", "many-fast"]
    assert order(sort="task", dir="desc") == ["many-fast", "few-slow"]
