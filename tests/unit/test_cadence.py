"""The scheduler's decisions as pure functions of an injected ``now``; nothing sleeps."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from carrot.scheduling.cadence import CATCH_UP, Cadence, due_ticks, next_run, upcoming

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args):
    return datetime(*args, tzinfo=UTC)


def local(*args, fold=0):
    return datetime(*args, tzinfo=BERLIN, fold=fold)


def walk(cadence, start, end, step=timedelta(minutes=1)):
    """Drive the scheduler's decision loop with a fake clock; return the published ticks."""
    published = []
    start, end = start.astimezone(UTC), end.astimezone(UTC)  # step real time, not wall time
    next_at = next_run(cadence, start)
    now = start
    while now <= end:
        due = due_ticks(cadence, next_at, now)
        published += due.ticks
        next_at = due.next_run_at
        now += step
    return published


# ------------------------------------------------------------------ building cadences


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "exactly one of"),
        ({"seconds": 5, "minutes": 1}, "exactly one of"),
        ({"seconds": 5, "cron": "* * * * *"}, "not both"),
        ({"seconds": 0}, "positive integer"),
        ({"seconds": -3}, "positive integer"),
        ({"seconds": 1.5}, "positive integer"),
        ({"seconds": 5, "timezone": "UTC"}, "cron schedules only"),
        ({"cron": "61 * * * *"}, "not a valid cron"),
        ({"cron": "* * *"}, "expected 5 fields"),
        ({"cron": "* * * * * *"}, "expected 5 fields"),
        ({"cron": "0 0 31 2 *"}, "never fires"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "not a known time zone"),
    ],
)
def test_bad_cadences_are_refused_with_a_reason(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        Cadence.build(**kwargs)


def test_interval_units_and_description():
    assert Cadence.build(seconds=5).interval == timedelta(seconds=5)
    assert Cadence.build(days=2).unit_and_count == ("days", 2)
    assert Cadence.build(seconds=120).unit_and_count == ("minutes", 2)
    assert Cadence.build(seconds=5).describe() == "every 5 seconds"
    assert Cadence.build(hours=1).describe() == "every hour"
    assert Cadence.build(cron="*/5  * * * *", timezone="UTC").cron == "*/5 * * * *"
    assert Cadence.build(cron="0 3 * * *", timezone="UTC").describe() == "cron 0 3 * * * (UTC)"


def test_cron_timezone_defaults_to_time_zone(settings):
    settings.TIME_ZONE = "Europe/Berlin"
    assert Cadence.build(cron="0 3 * * *").zone().key == "Europe/Berlin"


@pytest.mark.parametrize(
    ("cron", "fixed"),
    [
        ("30 2 * * *", True),
        ("0 2,3 * * *", True),
        ("0 * * * *", False),
        ("*/30 * * * *", False),
        ("0 */2 * * *", False),
        ("* 3 * * *", False),
    ],
)
def test_fixed_time_jobs_are_those_without_wildcard_minute_or_hour(cron, fixed):
    assert Cadence.build(cron=cron, timezone="UTC").fixed_time is fixed


# ------------------------------------------------------------------ next_run


def test_interval_next_run_is_after_plus_interval():
    assert next_run(Cadence.build(seconds=5), utc(2025, 1, 1, 10)) == utc(2025, 1, 1, 10, 0, 5)


def test_cron_next_run_is_in_the_schedule_timezone_and_returned_in_utc():
    cadence = Cadence.build(cron="0 3 * * *", timezone="Europe/Berlin")
    assert next_run(cadence, utc(2025, 1, 1, 12)) == utc(2025, 1, 2, 2)  # 03:00 CET
    assert next_run(cadence, utc(2025, 7, 1, 12)) == utc(2025, 7, 2, 1)  # 03:00 CEST


def test_next_run_is_strictly_after():
    cadence = Cadence.build(cron="*/5 * * * *", timezone="UTC")
    assert next_run(cadence, utc(2025, 1, 1, 10, 5)) == utc(2025, 1, 1, 10, 10)


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError, match="aware"):
        next_run(Cadence.build(seconds=5), datetime(2025, 1, 1))  # noqa: DTZ001


def test_upcoming_lists_the_next_ticks():
    cadence = Cadence.build(minutes=10)
    assert upcoming(cadence, utc(2025, 1, 1, 10), 3) == [
        utc(2025, 1, 1, 10, 10),
        utc(2025, 1, 1, 10, 20),
        utc(2025, 1, 1, 10, 30),
    ]


# ------------------------------------------------------------------ DST, Europe/Berlin 2025


def test_spring_forward_fixed_time_job_runs_once_right_after_the_gap():
    cadence = Cadence.build(cron="30 2 * * *", timezone="Europe/Berlin")
    ticks = walk(cadence, local(2025, 3, 30, 0), local(2025, 3, 30, 5))
    assert ticks == [local(2025, 3, 30, 3).astimezone(UTC)]  # 02:30 does not exist


def test_fall_back_fixed_time_job_runs_once_per_local_day():
    cadence = Cadence.build(cron="30 2 * * *", timezone="Europe/Berlin")
    ticks = walk(cadence, local(2025, 10, 26, 0), local(2025, 10, 26, 5))
    assert ticks == [local(2025, 10, 26, 2, 30).astimezone(UTC)]  # 00:30 UTC, not 01:30 too
    # ...and the next day it is back at 02:30 local.
    assert next_run(cadence, ticks[0]) == local(2025, 10, 27, 2, 30).astimezone(UTC)


def test_spring_forward_hourly_job_runs_every_real_hour():
    cadence = Cadence.build(cron="0 * * * *", timezone="Europe/Berlin")
    ticks = walk(cadence, local(2025, 3, 30, 0), local(2025, 3, 30, 5))
    assert [t.astimezone(BERLIN).hour for t in ticks] == [1, 3, 4, 5]
    assert all(b - a == timedelta(hours=1) for a, b in zip(ticks, ticks[1:], strict=False))


def test_fall_back_hourly_job_runs_every_real_hour_including_the_repeat():
    cadence = Cadence.build(cron="0 * * * *", timezone="Europe/Berlin")
    ticks = walk(cadence, local(2025, 10, 26, 0), local(2025, 10, 26, 5))
    assert [t.astimezone(BERLIN).strftime("%H%z") for t in ticks] == [
        "01+0200",
        "02+0200",
        "02+0100",
        "03+0100",
        "04+0100",
        "05+0100",
    ]
    assert all(b - a == timedelta(hours=1) for a, b in zip(ticks, ticks[1:], strict=False))


@pytest.mark.parametrize("day", [(2025, 3, 30), (2025, 10, 26)])
def test_every_30_minutes_is_strictly_30_real_minutes_across_dst(day):
    cadence = Cadence.build(cron="*/30 * * * *", timezone="Europe/Berlin")
    ticks = walk(cadence, local(*day, 0), local(*day, 5))
    assert len(ticks) >= 8  # 4 real hours in spring, 6 in autumn
    assert all(b - a == timedelta(minutes=30) for a, b in zip(ticks, ticks[1:], strict=False))


# ------------------------------------------------------------------ missed ticks and clocks


def test_nothing_is_due_before_the_next_tick():
    due = due_ticks(Cadence.build(minutes=1), utc(2025, 1, 1, 10, 1), utc(2025, 1, 1, 10))
    assert (due.ticks, due.next_run_at) == ([], utc(2025, 1, 1, 10, 1))


def test_a_short_pause_publishes_every_tick():
    due = due_ticks(Cadence.build(seconds=1), utc(2025, 1, 1, 10), utc(2025, 1, 1, 10, 0, 3))
    assert due.ticks == [utc(2025, 1, 1, 10, 0, s) for s in range(4)]
    assert due.next_run_at == utc(2025, 1, 1, 10, 0, 4)
    assert due.skipped == 0


def test_three_hours_down_publishes_a_missed_interval_schedule_once():
    due = due_ticks(Cadence.build(minutes=1), utc(2025, 1, 1, 10), utc(2025, 1, 1, 13, 0, 30))
    assert due.ticks == [utc(2025, 1, 1, 13)]
    assert due.skipped == 180
    assert due.next_run_at == utc(2025, 1, 1, 13, 1)


def test_a_clock_jump_forward_is_one_run_not_a_burst():
    cadence = Cadence.build(minutes=1)
    published = []
    next_at = utc(2025, 1, 1, 10, 1)
    for now in (utc(2025, 1, 1, 10, 1), utc(2025, 1, 1, 13, 0, 1), utc(2025, 1, 1, 13, 0, 2)):
        due = due_ticks(cadence, next_at, now)
        published += due.ticks
        next_at = due.next_run_at
    assert published == [utc(2025, 1, 1, 10, 1), utc(2025, 1, 1, 13)]


def test_a_clock_jump_back_republishes_nothing():
    cadence = Cadence.build(minutes=1)
    next_at = utc(2025, 1, 1, 11, 1)  # ticks up to 11:00 were published
    for minutes in range(61):  # the clock now reads 10:00 .. 11:00 again
        due = due_ticks(cadence, next_at, utc(2025, 1, 1, 10) + timedelta(minutes=minutes))
        assert due.ticks == []
        assert due.next_run_at == next_at
    assert due_ticks(cadence, next_at, utc(2025, 1, 1, 11, 1)).ticks == [next_at]


def test_missed_cron_ticks_run_once_for_the_latest():
    cadence = Cadence.build(cron="*/5 * * * *", timezone="UTC")
    due = due_ticks(cadence, utc(2025, 1, 1, 10), utc(2025, 1, 1, 13, 2))
    assert due.ticks == [utc(2025, 1, 1, 13)]
    assert due.next_run_at == utc(2025, 1, 1, 13, 5)
    assert due.skipped == 36


def test_cron_missed_for_weeks_is_bounded_and_runs_once():
    cadence = Cadence.build(cron="* * * * *", timezone="UTC")
    due = due_ticks(cadence, utc(2025, 1, 1), utc(2025, 3, 1, 0, 0, 30))
    assert due.ticks == [utc(2025, 3, 1)]
    assert due.next_run_at == utc(2025, 3, 1, 0, 1)


def test_the_catch_up_window_is_ten_seconds():
    cadence = Cadence.build(seconds=1)
    start = utc(2025, 1, 1, 10)
    assert len(due_ticks(cadence, start, start + CATCH_UP).ticks) == 11
    assert len(due_ticks(cadence, start, start + CATCH_UP + timedelta(seconds=1)).ticks) == 1


def test_an_interval_too_large_is_refused_with_the_limit():
    with pytest.raises(ValueError, match="too large: at most 3660 days"):
        Cadence.every("days", 10**15)
    assert Cadence.every("days", 3660).interval.days == 3660
