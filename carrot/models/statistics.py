"""Task statistics: finished tasks summed into TaskRollup, and read back per window.

``roll_up()`` sums the tasks that finished (COMPLETED or FAILED after they started) into
one TaskRollup row per task and minute, and one per task and hour, moving a RollupMark
forward in the same transaction: a minute is summed exactly once, however many workers
and monitor pages call it at the same moment. Runtimes go into fixed buckets (1 ms to an
hour), so percentiles can be added up across minutes; they are estimated within their
bucket. What finished after the mark is read from MessageLog directly (the tail).
"""

from __future__ import annotations

import bisect
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import zip_longest
from typing import Any

from django.db import router, transaction
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import TruncMinute
from django.utils import timezone

from carrot.models.lifecycle import NOT_PUBLISHED_TYPE, PURGED_TYPE, REJECTED_TYPE
from carrot.models.messagelog import MessageLog
from carrot.models.rollups import RollupMark, TaskRollup

# Upper bounds of the runtime buckets, in seconds; a last bucket holds what ran longer.
BOUNDS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
    10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
# An outcome committed later than this after its task ended may miss its minute.
LAG = timedelta(seconds=10)
SPAN = timedelta(hours=1)  # at most this much history per transaction
KEEP_MINUTES = timedelta(days=2)
KEEP_HOURS = timedelta(days=35)
MARK = "tasks"
NOT_RUNS = (REJECTED_TYPE, PURGED_TYPE, NOT_PUBLISHED_TYPE)  # failed without running
SUMS = (  # the columns of a TaskRollup that Summary.add_sums takes, in order
    "completed",
    "failed",
    "runtime_total",
    "runtime_max",
    "histogram",
    "last_failure",
    "last_failure_time",
)
WINDOWS: dict[str, tuple[timedelta, int]] = {
    "1h": (timedelta(hours=1), TaskRollup.MINUTE),
    "24h": (timedelta(days=1), TaskRollup.HOUR),
    "7d": (timedelta(days=7), TaskRollup.HOUR),
}


def floor(moment: datetime, period: int) -> datetime:
    """Return the start of the minute (60) or hour (3600) that ``moment`` falls in."""
    if period == TaskRollup.HOUR:
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(second=0, microsecond=0)


@dataclass
class Summary:
    """The finished runs of one task (in a period or a window)."""

    completed: int = 0
    failed: int = 0
    runtime_total: float = 0.0
    runtime_max: float = 0.0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))
    last_failure: str | None = None
    last_failure_time: datetime | None = None

    @property
    def runs(self) -> int:
        return self.completed + self.failed

    @property
    def failure_rate(self) -> float:
        return self.failed / self.runs if self.runs else 0.0

    @property
    def mean(self) -> float:
        return self.runtime_total / self.runs if self.runs else 0.0

    def add(self, ok: bool, seconds: float, uuid: Any, ended: datetime) -> None:
        seconds = max(seconds, 0.0)
        if ok:
            self.completed += 1
        else:
            self.failed += 1
            self._failure(str(uuid), ended)
        self.runtime_total += seconds
        self.runtime_max = max(self.runtime_max, seconds)
        self.histogram[bisect.bisect_left(BOUNDS, seconds)] += 1

    def _failure(self, uuid: str | None, when: datetime | None) -> None:
        if when is not None and (self.last_failure_time is None or when > self.last_failure_time):
            self.last_failure, self.last_failure_time = uuid, when

    def merge(self, other: Summary | TaskRollup) -> None:
        self.add_sums(
            other.completed,
            other.failed,
            other.runtime_total,
            other.runtime_max,
            other.histogram,
            other.last_failure,
            other.last_failure_time,
        )

    def add_sums(
        self,
        completed: int,
        failed: int,
        runtime_total: float,
        runtime_max: float,
        histogram: list[int],
        last_failure: Any,
        last_failure_time: datetime | None,
    ) -> None:
        """Add a period's sums (a TaskRollup's columns, in ``SUMS`` order)."""
        self.completed += completed
        self.failed += failed
        self.runtime_total += runtime_total
        self.runtime_max = max(self.runtime_max, runtime_max)
        mine = self.histogram
        for i, n in enumerate(histogram[: len(mine)]):
            if n:
                mine[i] += n
        self._failure(str(last_failure) if last_failure else None, last_failure_time)

    def percentile(self, p: float) -> float | None:
        """Estimate the runtime below which ``p`` (0..1) of the runs finished."""
        if not self.runs:
            return None
        rank, seen = p * self.runs, 0
        for i, count in enumerate(self.histogram):
            if count and seen + count >= rank:
                low = BOUNDS[i - 1] if i else 0.0
                high = BOUNDS[i] if i < len(BOUNDS) else self.runtime_max
                high = min(high, self.runtime_max)
                low = min(low, high)
                return low + (high - low) * max(rank - seen, 0) / count
            seen += count
        return self.runtime_max

    def values(self) -> dict[str, Any]:
        return {
            "completed": self.completed,
            "failed": self.failed,
            "runtime_total": self.runtime_total,
            "runtime_max": self.runtime_max,
            "histogram": self.histogram,
            "last_failure": self.last_failure,
            "last_failure_time": self.last_failure_time,
        }


def runs(status: str) -> Any:
    """The rows of ``status`` that are the end of a run: it started, and it was not failed
    without running (a message rejected, purged or not published keeps the ``start_time``
    of an earlier attempt that went back to the queue for a retry)."""
    return MessageLog.objects.filter(status=status, start_time__isnull=False).exclude(
        exception_type__in=NOT_RUNS
    )


def finished(since: datetime, until: datetime) -> Iterator[tuple[str, bool, float, Any, datetime]]:
    """Yield (task, completed?, runtime, uuid, ended) for runs that ended in [since, until)."""
    for ok, status, column in (
        (True, MessageLog.COMPLETED, "completion_time"),
        (False, MessageLog.FAILED, "failure_time"),
    ):
        rows = (
            runs(status)
            .filter(**{f"{column}__gte": since, f"{column}__lt": until})
            .values_list("task", "start_time", column, "uuid")
        )
        for task, started, ended, uuid in rows.iterator(chunk_size=2000):
            yield task, ok, (ended - started).total_seconds(), uuid, ended


def _first_mark(target: datetime) -> datetime:
    earliest = [
        MessageLog.objects.filter(status=s).aggregate(m=Min(c))["m"]
        for s, c in ((MessageLog.COMPLETED, "completion_time"), (MessageLog.FAILED, "failure_time"))
    ]
    known = [e for e in earliest if e is not None]
    start = min(known) if known else target
    return floor(max(start, target - KEEP_HOURS), TaskRollup.MINUTE)


def roll_up(now: datetime | None = None, *, budget: float | None = None) -> int:
    """Sum what finished up to a few seconds ago into TaskRollup; return the runs summed.

    Safe to call from many processes at once: each span of history is claimed by moving
    the mark with a conditional UPDATE, in the transaction that writes its sums. The sums
    are read before that transaction, so it holds the database's write lock only briefly.
    With a ``budget`` (seconds) it stops after the span that exceeds it; the next call (or
    the readers' tail) goes on from there.
    """
    deadline = time.monotonic() + budget if budget is not None else None
    now = now or timezone.now()
    target = floor(now - LAG, TaskRollup.MINUTE)
    mark = RollupMark.objects.filter(name=MARK).first()
    if mark is None:
        first = _first_mark(target)
        mark, _ = RollupMark.objects.get_or_create(name=MARK, defaults={"upto": first})
    upto, total = mark.upto, 0
    using = router.db_for_write(TaskRollup)
    while upto < target:
        end = min(target, upto + SPAN)
        minutes, hours, count = _sums(upto, end)
        with transaction.atomic(using=using):
            if not RollupMark.objects.filter(name=MARK, upto=upto).update(upto=end):
                return total  # another process summed this span
            _write(minutes, hours)
        total += count
        upto = end
        if deadline is not None and time.monotonic() > deadline:
            break
    if total:
        TaskRollup.objects.filter(period=TaskRollup.MINUTE, start__lt=now - KEEP_MINUTES).delete()
        TaskRollup.objects.filter(period=TaskRollup.HOUR, start__lt=now - KEEP_HOURS).delete()
    return total


Sums = dict[tuple[str, datetime], Summary]


def _sums(since: datetime, until: datetime) -> tuple[Sums, Sums, int]:
    minutes: Sums = defaultdict(Summary)
    hours: Sums = defaultdict(Summary)
    count = 0
    for task, ok, seconds, uuid, ended in finished(since, until):
        minutes[task, floor(ended, TaskRollup.MINUTE)].add(ok, seconds, uuid, ended)
        hours[task, floor(ended, TaskRollup.HOUR)].add(ok, seconds, uuid, ended)
        count += 1
    return minutes, hours, count


def _write(minutes: Sums, hours: Sums) -> None:
    TaskRollup.objects.bulk_create(
        [
            TaskRollup(task=task, period=TaskRollup.MINUTE, start=start, **s.values())
            for (task, start), s in minutes.items()
        ],
        batch_size=500,
    )
    if not hours:
        return
    # An hour may have been partly summed by the span before: add to it.
    existing = TaskRollup.objects.filter(
        period=TaskRollup.HOUR,
        start__in={start for _, start in hours},
        task__in={task for task, _ in hours},
    )
    for row in existing:
        summary = hours.pop((row.task, row.start), None)
        if summary is not None:
            summary.merge(row)
            TaskRollup.objects.filter(pk=row.pk).update(**summary.values())
    TaskRollup.objects.bulk_create(
        [
            TaskRollup(task=task, period=TaskRollup.HOUR, start=start, **s.values())
            for (task, start), s in hours.items()
        ],
        batch_size=500,
    )


def _mark() -> datetime | None:
    return RollupMark.objects.filter(name=MARK).values_list("upto", flat=True).first()


def task_summaries(window: str, now: datetime | None = None) -> dict[str, Summary]:
    """Return the runs per task name that ended within the window ("1h", "24h", "7d").

    The window starts at the minute (1h) or the hour (24h, 7d) it falls in.
    """
    now = now or timezone.now()
    span, period = WINDOWS[window]
    start = floor(now - span, period)
    mark = _mark() or start
    out: dict[str, Summary] = defaultdict(Summary)
    # Whole periods before the mark's own, then its minutes up to the mark: a roll-up that
    # commits meanwhile adds to the mark's hour row, but never to these, and only inserts
    # minutes after the mark, so nothing is counted both here and in the tail.
    whole = floor(mark, period)
    rows = TaskRollup.objects.filter(period=period, start__gte=start, start__lt=whole)
    minutes = TaskRollup.objects.filter(
        period=TaskRollup.MINUTE, start__gte=max(start, whole), start__lt=mark
    )
    for periods in (rows, minutes):
        _add_periods(out, periods)
    for task, ok, seconds, uuid, ended in finished(max(mark, start), now + LAG):
        out[task].add(ok, seconds, uuid, ended)
    return dict(out)


def _add_periods(out: dict[str, Summary], periods: Any) -> None:
    """Add the sums of many TaskRollup rows per task: the counts and runtimes summed by
    the database, the histograms column by column, the latest failure looked up once."""
    latest: dict[str, datetime] = {}
    sums = periods.values("task").annotate(
        completed_=Sum("completed"),
        failed_=Sum("failed"),
        total_=Sum("runtime_total"),
        max_=Max("runtime_max"),
        failure_=Max("last_failure_time"),
    )
    for row in sums:
        summary = out[row["task"]]
        summary.add_sums(
            row["completed_"], row["failed_"], row["total_"], row["max_"], [], None, None
        )
        if row["failure_"] is not None:
            latest[row["task"]] = row["failure_"]
    histograms: dict[str, list[list[int]]] = defaultdict(list)
    for task, histogram in periods.values_list("task", "histogram"):
        histograms[task].append(histogram)
    for task, lists in histograms.items():
        mine = out[task].histogram
        for i, total in enumerate(map(sum, zip_longest(*lists, fillvalue=0))):
            if i < len(mine):
                mine[i] += total
    if latest:
        which = Q()
        for task, when in latest.items():
            which |= Q(task=task, last_failure_time=when)
        failures = periods.filter(which).values_list("task", "last_failure", "last_failure_time")
        for task, uuid, when in failures:
            out[task].add_sums(0, 0, 0.0, 0.0, [], uuid, when)


def per_minute(minutes: int = 60, now: datetime | None = None) -> list[tuple[datetime, int, int]]:
    """Return (minute, completed, failed) for each of the last ``minutes`` minutes."""
    now = now or timezone.now()
    first = floor(now, TaskRollup.MINUTE) - timedelta(minutes=minutes - 1)
    mark = _mark() or first
    counts: dict[datetime, list[int]] = {
        first + timedelta(minutes=i): [0, 0] for i in range(minutes)
    }
    rows = TaskRollup.objects.filter(period=TaskRollup.MINUTE, start__gte=first, start__lt=mark)
    for start, completed, failed in rows.values_list("start", "completed", "failed"):
        if start in counts:
            counts[start][0] += completed
            counts[start][1] += failed
    # What finished after the mark, counted per minute by the database.
    since = max(mark, first)
    for slot, status, column in (
        (0, MessageLog.COMPLETED, "completion_time"),
        (1, MessageLog.FAILED, "failure_time"),
    ):
        tail = (
            runs(status)
            .filter(**{f"{column}__gte": since})
            .annotate(minute=TruncMinute(column))
            .values("minute")
            .annotate(n=Count("id"))
            .values_list("minute", "n")
        )
        for minute, n in tail:
            if minute in counts:
                counts[minute][slot] += n
    return [(minute, c, f) for minute, (c, f) in counts.items()]
