"""What people do to schedules (the monitor, ``create_scheduled_task``): create, edit,
pause, resume, run now. Every change that affects timing counts the next run from now,
so an edit never causes a burst of old ticks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import IntegrityError, transaction

from carrot.conf import get_config
from carrot.messages import normalise_arguments
from carrot.models import MessageLog, ScheduledTask
from carrot.publishing.enqueue import enqueue
from carrot.registry import registry
from carrot.scheduling.cadence import Cadence, next_run


def call_options(row: ScheduledTask) -> dict[str, Any]:
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


def run_now(schedule: ScheduledTask) -> MessageLog:
    """Publish a schedule's task right away, outside its cadence; return the MessageLog."""
    log = enqueue(**call_options(schedule))
    ScheduledTask.objects.filter(pk=schedule.pk).update(last_message=log)
    return log


def first_run(cadence: Cadence, now: datetime | None = None) -> datetime:
    """Return the next tick counted from ``now``: after an edit, a resume, a creation."""
    return next_run(cadence, now or datetime.now(tz=UTC))


def pause(schedule: ScheduledTask) -> None:
    """Stop publishing the schedule's ticks until it is resumed."""
    ScheduledTask.objects.filter(pk=schedule.pk).update(active=False)


def resume(schedule: ScheduledTask, now: datetime | None = None) -> None:
    """Publish the schedule again from its next tick after ``now``; ValueError if it cannot."""
    if schedule.removed_at is not None:
        raise ValueError("it was removed from the code, so it cannot run")
    first = first_run(Cadence.of(schedule), now)
    ScheduledTask.objects.filter(pk=schedule.pk).update(active=True, next_run_at=first)


def save_schedule(
    fields: dict[str, Any],
    cadence: Cadence,
    instance: ScheduledTask | None = None,
    *,
    now: datetime | None = None,
) -> ScheduledTask:
    """Create (``instance`` None) or update a schedule a person made; its next run counts
    from ``now``."""
    values = {**fields, **cadence.fields(), "next_run_at": first_run(cadence, now)}
    if instance is None:
        return ScheduledTask.objects.create(source=ScheduledTask.SOURCE_USER, **values)
    for key, value in values.items():
        setattr(instance, key, value)
    instance.save()
    return instance


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
    queue = queue or registry[task].queue
    get_config().queue(queue)
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
    for n in range(1, 1000):
        name = task if n == 1 else f"{task} #{n}"
        existing = ScheduledTask.objects.filter(task_name=name).first()
        if existing is None:
            try:
                with transaction.atomic():
                    return save_schedule({**fields, "task_name": name}, cadence)
            except IntegrityError:
                continue
        if all(getattr(existing, k) == v for k, v in fields.items()):
            return existing
    raise ValueError(f"too many schedules for {task!r}")
