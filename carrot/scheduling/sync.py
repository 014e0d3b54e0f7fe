"""Sync the ``@periodic`` declarations into the ScheduledTask table when a worker starts.

New declarations are created, changed ones updated (their next run counted from now),
ones removed from the code deactivated and marked, never deleted. Rows people created
are left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from carrot.conf import get_config
from carrot.models import ScheduledTask
from carrot.registry import registry
from carrot.scheduling.cadence import Cadence, next_run
from carrot.scheduling.declaration import Declaration

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
            next_run_at=next_run(Cadence.of(row), now),
            updated_at=timezone.now(),
        )
    for row in plan.deactivate:
        ScheduledTask.objects.filter(pk=row.pk).update(
            removed_at=now, active=False, updated_at=timezone.now()
        )
    for line in plan.lines():
        logger.info("Schedules: %s", line)
    return plan
