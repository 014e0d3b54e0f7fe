"""When schedules are due: pure functions of an injected ``now``. No database, no broker.

The only module that imports croniter. Policies (see the README's Scheduling section):

- Missed ticks: ticks due within the last ``CATCH_UP`` are each published (a short pause
  loses nothing). If older ticks were missed (the scheduler was down, the clock jumped
  forward), the schedule runs once for the most recent missed tick and then resumes.
- Clock jumping back: the next tick is stored; nothing runs until the clock reaches it,
  so nothing is published twice.
- DST: a fixed-time cron job (minute and hour fields without ``*``, e.g. ``30 2 * * *``)
  runs once per local day: when clocks go back, the second pass over the same wall time
  is skipped; when they go forward over it, it runs right after the gap. Jobs with ``*``
  in the minute or hour field (``0 * * * *``, ``*/30 * * * *``) follow real time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.conf import settings

CATCH_UP = timedelta(seconds=10)
UNITS = ("seconds", "minutes", "hours", "days")
UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
# Longer intervals are a typo, and would overflow date arithmetic near year 9999.
MAX_INTERVAL = timedelta(days=3660)
# Cron iteration is bounded: a missed period longer than this is searched from its end.
_CRON_LOOKBACK = timedelta(days=7)
_DST_MARGIN = timedelta(hours=3)


def validate_timezone(name: str) -> ZoneInfo:
    """Return the zone called ``name``; raise ValueError naming it if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(
            f"{name!r} is not a known time zone (use an IANA name such as 'Europe/Berlin' or 'UTC')"
        ) from None


def validate_cron(expression: str) -> str:
    """Return a normalised five-field cron expression; raise ValueError if it is invalid."""
    if not isinstance(expression, str):
        raise ValueError(f"a cron expression must be a string, got {expression!r}")
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} is not a cron expression: expected 5 fields "
            "(minute hour day-of-month month day-of-week), e.g. '*/5 * * * *'"
        )
    normalised = " ".join(fields)
    if not croniter.is_valid(normalised):
        raise ValueError(f"{expression!r} is not a valid cron expression")
    try:
        croniter(normalised, datetime(2025, 1, 1, tzinfo=UTC)).get_next(datetime)
    except Exception as exc:  # croniter raises several types for impossible dates
        raise ValueError(f"{expression!r} never fires ({exc})") from None
    return normalised


class ScheduleFields(Protocol):
    """The columns of a ScheduledTask that say when it runs."""

    interval_type: str
    interval_count: int | None
    cron: str
    timezone: str


@dataclass(frozen=True)
class Cadence:
    """How often a schedule fires: a fixed interval, or a cron expression in a time zone."""

    interval: timedelta | None = None
    cron: str = ""
    timezone: str = ""  # empty: settings.TIME_ZONE

    def __post_init__(self) -> None:
        if (self.interval is None) == (not self.cron):
            raise ValueError("give exactly one of an interval or a cron expression")
        if self.interval is not None and self.interval < timedelta(seconds=1):
            raise ValueError(f"the interval must be at least one second, got {self.interval}")
        if self.cron:
            object.__setattr__(self, "cron", validate_cron(self.cron))
        if self.timezone:
            validate_timezone(self.timezone)

    @classmethod
    def build(
        cls,
        *,
        seconds: Any = None,
        minutes: Any = None,
        hours: Any = None,
        days: Any = None,
        cron: str | None = None,
        timezone: str | None = None,
    ) -> Cadence:
        """Build from ``seconds=``/``minutes=``/``hours=``/``days=`` or ``cron=``."""
        given = {
            u: v
            for u, v in zip(UNITS, (seconds, minutes, hours, days), strict=True)
            if v is not None
        }
        if cron is not None:
            if given:
                raise ValueError("give either an interval or cron=, not both")
            return cls(cron=cron, timezone=timezone or "")
        if len(given) != 1:
            raise ValueError("give exactly one of seconds=, minutes=, hours=, days= or cron=")
        if timezone:
            raise ValueError("timezone= applies to cron schedules only")
        ((unit, count),) = given.items()
        return cls.every(unit, count)

    @classmethod
    def every(cls, unit: str, count: Any) -> Cadence:
        """Return an interval cadence of ``count`` ``unit`` (the seed's interval_type)."""
        if unit not in UNITS:
            raise ValueError(f"the interval unit must be one of {', '.join(UNITS)}, got {unit!r}")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"the interval count must be a positive integer, got {count!r}")
        if count * UNIT_SECONDS[unit] > MAX_INTERVAL.total_seconds():
            raise ValueError(
                f"the interval is too large: at most {MAX_INTERVAL.days} days, got {count} {unit}"
            )
        return cls(interval=timedelta(**{unit: count}))

    @classmethod
    def of(cls, row: ScheduleFields) -> Cadence:
        """Build from a ScheduledTask's columns; raise ValueError if they are invalid."""
        if row.cron:
            return cls(cron=row.cron, timezone=row.timezone)
        return cls.every(row.interval_type, row.interval_count)

    def fields(self) -> dict[str, Any]:
        """Return the ScheduledTask columns that store this cadence."""
        if self.interval is None:
            return {
                "interval_type": "",
                "interval_count": None,
                "cron": self.cron,
                "timezone": self.timezone,
            }
        unit, count = self.unit_and_count
        return {"interval_type": unit, "interval_count": count, "cron": "", "timezone": ""}

    @property
    def unit_and_count(self) -> tuple[str, int]:
        """Return the interval as the largest whole unit (the seed's interval_type/count)."""
        assert self.interval is not None
        total = int(self.interval.total_seconds())
        for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
            if total % size == 0:
                return unit, total // size
        return "seconds", total

    @property
    def fixed_time(self) -> bool:
        """Return True for cron jobs at fixed wall times (no ``*`` in minute or hour)."""
        if not self.cron:
            return False
        minute, hour = self.cron.split()[:2]
        return not minute.startswith("*") and not hour.startswith("*")

    def zone(self) -> ZoneInfo:
        if self.timezone:
            return validate_timezone(self.timezone)
        return validate_timezone(getattr(settings, "TIME_ZONE", None) or "UTC")

    def describe(self) -> str:
        if self.cron:
            return f"cron {self.cron} ({self.zone().key})"
        unit, count = self.unit_and_count
        return f"every {unit[:-1]}" if count == 1 else f"every {count} {unit}"


def _repeated_wall_time(moment: datetime) -> bool:
    """Return True for the second pass over a wall time that clocks going back repeat."""
    return moment.fold == 1 and moment.replace(fold=0).utcoffset() != moment.utcoffset()


def _offset_changes_near(zone: ZoneInfo, moment: datetime) -> bool:
    return (moment - _DST_MARGIN).astimezone(zone).utcoffset() != (moment + _DST_MARGIN).astimezone(
        zone
    ).utcoffset()


def next_run(cadence: Cadence, after: datetime) -> datetime:
    """Return the first tick strictly after ``after``, in UTC."""
    if after.tzinfo is None:
        raise ValueError("next_run() needs an aware datetime")
    if cadence.interval is not None:
        return (after + cadence.interval).astimezone(UTC)
    zone = cadence.zone()
    # croniter handles a repeated hour only while iterating through it: started inside
    # it, it skips the repeat. Near an offset change, start before it and iterate.
    start = after - _DST_MARGIN if _offset_changes_near(zone, after) else after
    iterator = croniter(cadence.cron, start.astimezone(zone))
    for _ in range(10_000):
        candidate: datetime = iterator.get_next(datetime)
        if candidate <= after:  # croniter has repeated itself around DST before
            continue
        if cadence.fixed_time and _repeated_wall_time(candidate):
            continue
        return candidate.astimezone(UTC)
    raise RuntimeError(f"cron {cadence.cron!r} yields no time after {after.isoformat()}")


def upcoming(cadence: Cadence, after: datetime, count: int = 3) -> list[datetime]:
    """Return the next ``count`` ticks after ``after`` (for listings and previews)."""
    out: list[datetime] = []
    moment = after
    for _ in range(count):
        moment = next_run(cadence, moment)
        out.append(moment)
    return out


@dataclass(frozen=True)
class Due:
    """What a schedule should publish now: ``ticks``, then wait for ``next_run_at``."""

    ticks: list[datetime] = field(default_factory=list)
    next_run_at: datetime | None = None
    skipped: int = 0


def due_ticks(
    cadence: Cadence, next_run_at: datetime, now: datetime, catch_up: timedelta = CATCH_UP
) -> Due:
    """Return the ticks to publish at ``now`` for a schedule whose next tick is stored."""
    if next_run_at > now:
        return Due([], next_run_at, 0)
    if now - next_run_at <= catch_up:
        ticks = []
        moment = next_run_at
        while moment <= now:
            ticks.append(moment)
            moment = next_run(cadence, moment)
        return Due(ticks, moment, 0)
    # Missed ticks older than the catch-up window: run once, for the latest one.
    if cadence.interval is not None:
        missed = (now - next_run_at) // cadence.interval
        latest = next_run_at + missed * cadence.interval
        return Due([latest], latest + cadence.interval, missed)
    moment = next_run_at
    skipped = 0
    if now - moment > _CRON_LOOKBACK:
        moment = next_run(cadence, now - _CRON_LOOKBACK)
        skipped = -1  # unknown: more than a week of ticks
    latest = moment
    while moment <= now:
        latest = moment
        moment = next_run(cadence, moment)
        skipped += 1
    return Due([latest], moment, max(skipped - 1, 0))
