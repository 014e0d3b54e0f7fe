"""Schedules in the database: sync with ``@periodic`` declarations, publish ticks, run now."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from carrot.conf import get_config
from carrot.exceptions import CarrotError
from carrot.models import MessageLog, ScheduledTask
from carrot.outbox import publish_outboxed, save_with_outbox
from carrot.publisher import enqueue, prepare
from carrot.registry import registry
from carrot.scheduler import Cadence, Declaration, next_run

if TYPE_CHECKING:
    from carrot.scheduler import Scheduler

logger = logging.getLogger(__name__)

CLEANUP_SCHEDULE = "carrot: delete old completed tasks"
CLEANUP_TASK = "carrot.helper_tasks.cleanup"


def declared() -> dict[str, Declaration]:
    """Return the schedules declared in code, plus the built-in cleanup if enabled."""
    out = {d.name: d for d in registry.declarations()}
    if get_config().completed_retention is not None and CLEANUP_TASK in registry:
        out[CLEANUP_SCHEDULE] = Declaration(
            name=CLEANUP_SCHEDULE, task=CLEANUP_TASK, cadence=Cadence.every("hours", 1)
        )
    return out


def _call(row: ScheduledTask) -> dict[str, Any]:
    """Return what ``prepare()``/``enqueue()`` take for a call of the schedule's task."""
    task = registry[row.task]
    return {
        "task_name": row.task,
        "args": row.positionals,
        "kwargs": row.keywords,
        "queue": row.queue or task.queue,
        "priority": task.priority if row.priority is None else row.priority,
        "exchange": row.exchange,
        "routing_key": row.routing_key or None,
        "who": f"schedule {row.task_name!r}",
        "schedule": row,
    }


def publish_tick(
    scheduler: Scheduler,
    row: ScheduledTask,
    expected: datetime,
    following: datetime,
    tick: datetime,
) -> MessageLog | None | bool:
    """Claim ``tick`` of ``row`` and publish it.

    Returns False if another scheduler claimed it first, None if it was claimed but not
    published (the task is not registered), or the MessageLog.
    """
    if row.task not in registry:
        if scheduler.claim(row.pk, expected, following):
            scheduler._warn_once(
                row.pk,
                "Schedule %r names %r, which is not a registered task; its ticks are skipped",
                row.task_name,
                row.task,
            )
            return None
        return False
    try:
        prepared = prepare(**_call(row), scheduled_for=tick)
    except (CarrotError, ValueError, TypeError) as exc:  # e.g. a queue no longer configured
        if scheduler.claim(row.pk, expected, following):
            scheduler._warn_once(
                row.pk, "Schedule %r cannot be published (%s); skipped", row.task_name, exc
            )
            return None
        return False
    with transaction.atomic():
        if not scheduler.claim(row.pk, expected, following):
            return False
        save_with_outbox(prepared)
        ScheduledTask.objects.filter(pk=row.pk).update(last_run_at=tick, last_message=prepared.log)
    publish_outboxed(prepared)
    logger.info("Published %s for schedule %r (tick %s)", row.task, row.task_name, tick.isoformat())
    return prepared.log


def run_now(schedule: ScheduledTask) -> MessageLog:
    """Publish a schedule's task right away, outside its cadence; return the MessageLog."""
    log = enqueue(**_call(schedule))
    ScheduledTask.objects.filter(pk=schedule.pk).update(last_message=log)
    return log


def reschedule(schedule: ScheduledTask, now: datetime | None = None) -> None:
    """Set the next tick from ``now`` (after an edit: no burst of old ticks)."""
    now = now or datetime.now(tz=UTC)
    schedule.next_run_at = next_run(schedule.cadence, now)
    ScheduledTask.objects.filter(pk=schedule.pk).update(next_run_at=schedule.next_run_at)


@dataclass
class SyncPlan:
    """How the table differs from the declarations."""

    create: list[Declaration] = field(default_factory=list)
    update: list[tuple[ScheduledTask, Declaration, list[str]]] = field(default_factory=list)
    deactivate: list[ScheduledTask] = field(default_factory=list)
    reactivate: list[ScheduledTask] = field(default_factory=list)
    conflicts: list[tuple[ScheduledTask, Declaration]] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not (
            self.create or self.update or self.deactivate or self.reactivate or self.conflicts
        )

    def lines(self) -> list[str]:
        out = [f"create {d.name!r}: {d.task} {d.cadence.describe()}" for d in self.create]
        out += [f"update {r.task_name!r}: {', '.join(changed)}" for r, _, changed in self.update]
        out += [f"deactivate {r.task_name!r}: no longer declared in code" for r in self.deactivate]
        out += [f"reactivate {r.task_name!r}: declared in code again" for r in self.reactivate]
        out += [
            f"conflict {r.task_name!r}: a schedule created by a person has the name of a "
            "declared one; rename one of them"
            for r, _ in self.conflicts
        ]
        return out


def plan_sync() -> SyncPlan:
    """Compare the declarations with the table, without changing anything."""
    plan = SyncPlan()
    wanted = declared()
    rows = {row.task_name: row for row in ScheduledTask.objects.all()}
    for name, declaration in wanted.items():
        row = rows.get(name)
        if row is None:
            plan.create.append(declaration)
            continue
        if row.source != ScheduledTask.SOURCE_CODE:
            plan.conflicts.append((row, declaration))
            continue
        changed = [k for k, v in declaration.fields().items() if getattr(row, k) != v]
        if changed:
            plan.update.append((row, declaration, changed))
        if row.removed_at is not None:
            plan.reactivate.append(row)
    for name, row in rows.items():
        if (
            row.source == ScheduledTask.SOURCE_CODE
            and name not in wanted
            and (row.removed_at is None)
        ):
            plan.deactivate.append(row)
    return plan


def sync_declared(now: datetime | None = None) -> SyncPlan:
    """Make the table match the declarations; rows created by people are left alone.

    New declarations are created, changed ones updated (and rescheduled from ``now``),
    removed ones deactivated and marked (never deleted). ``active`` is the operator's:
    a paused code schedule stays paused across syncs.
    """
    now = now or datetime.now(tz=UTC)
    plan = plan_sync()
    for declaration in plan.create:
        try:
            with transaction.atomic():
                ScheduledTask.objects.create(
                    task_name=declaration.name,
                    source=ScheduledTask.SOURCE_CODE,
                    next_run_at=next_run(declaration.cadence, now),
                    **declaration.fields(),
                )
        except IntegrityError:
            pass  # another scheduler created it at the same moment
    for row, declaration, _changed in plan.update:
        fields = declaration.fields()
        fields["next_run_at"] = next_run(declaration.cadence, now)
        ScheduledTask.objects.filter(pk=row.pk).update(**fields, updated_at=timezone.now())
    for row in plan.reactivate:
        ScheduledTask.objects.filter(pk=row.pk).update(
            removed_at=None,
            active=True,
            next_run_at=next_run(row.cadence, now),
            updated_at=timezone.now(),
        )
    for row in plan.deactivate:
        ScheduledTask.objects.filter(pk=row.pk).update(
            removed_at=now, active=False, updated_at=timezone.now()
        )
    for line in plan.lines():
        logger.info("Schedules: %s", line)
    return plan


def create_scheduled_task(
    task: str, interval: dict[str, int], queue: str | None = None, **kwargs: Any
) -> ScheduledTask:
    """Create a schedule publishing ``task`` every ``interval`` (e.g. ``{"seconds": 5}``).

    Calling it again with the same definition returns the existing row, so it is safe
    to call on every start; a different definition for the same task gets a new name.
    """
    if not isinstance(interval, dict) or len(interval) != 1:
        raise ValueError(
            f"interval must be a dict with one of seconds, minutes, hours or days, got {interval!r}"
        )
    ((unit, count),) = interval.items()
    cadence = Cadence.every(unit, count)
    registered = registry[task]
    queue = queue or registered.queue
    get_config().queue(queue)
    from carrot.messages import normalise_arguments

    _, norm_kwargs = normalise_arguments((), kwargs, who="create_scheduled_task()")
    fields = {
        "task": task,
        "interval_type": unit,
        "interval_count": count,
        "cron": "",
        "timezone": "",
        "queue": queue,
        "task_args": [],
        "task_kwargs": norm_kwargs,
    }
    base = task
    for n in range(1, 1000):
        name = base if n == 1 else f"{base} #{n}"
        existing = ScheduledTask.objects.filter(task_name=name).first()
        if existing is None:
            try:
                with transaction.atomic():
                    return ScheduledTask.objects.create(
                        task_name=name,
                        source=ScheduledTask.SOURCE_USER,
                        next_run_at=next_run(cadence, datetime.now(tz=UTC)),
                        **fields,
                    )
            except IntegrityError:
                continue
        if all(getattr(existing, k) == v for k, v in fields.items()):
            return existing
    raise ValueError(f"too many schedules for {task!r}")
