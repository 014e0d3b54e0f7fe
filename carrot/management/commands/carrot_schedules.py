"""``manage.py carrot_schedules``: list schedules, check or sync them against the code."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from carrot.models import ScheduledTask
from carrot.scheduling.cadence import Cadence, upcoming
from carrot.scheduling.sync import plan_sync, sync_declared


class Command(BaseCommand):
    help = (
        "List schedules with their next three run times. --check exits 1 when the table "
        "differs from the @periodic declarations (for CI); --sync applies them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--check", action="store_true", help="exit 1 if out of sync")
        group.add_argument("--sync", action="store_true", help="apply the declarations now")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["check"]:
            plan = plan_sync()
            if plan.in_sync:
                self.stdout.write("Schedules are in sync with the code.")
                return
            for line in plan.lines():
                self.stdout.write(line)
            self.stderr.write(
                "Schedules differ from the code; run `manage.py carrot_schedules --sync`"
                " (the worker also syncs when it starts)."
            )
            raise SystemExit(1)
        if options["sync"]:
            plan = sync_declared()
            for line in plan.lines():
                self.stdout.write(line)
            self.stdout.write("Schedules synced." if plan.lines() else "Nothing to change.")
            return
        self._list()

    def _list(self) -> None:
        rows = list(ScheduledTask.objects.all())
        if not rows:
            self.stdout.write(
                "No schedules. Declare one with @periodic or create it in the monitor."
            )
            return
        now = datetime.now(tz=UTC)
        for row in rows:
            try:
                cadence = Cadence.of(row)
                tz = cadence.zone()
                if row.active and row.next_run_at:
                    first = row.next_run_at
                    times = [first, *upcoming(cadence, first, 2)]
                else:
                    times = upcoming(cadence, now, 3)
                when = ", ".join(t.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z") for t in times)
                describe = cadence.describe()
            except ValueError as exc:
                when, describe = "-", f"invalid ({exc})"
            state = "active" if row.active else "inactive"
            if row.removed_at:
                state = "inactive (removed from code)"
            self.stdout.write(
                f"{row.task_name}\n    task: {row.task}\n    runs: {describe}\n"
                f"    state: {state}, {row.get_source_display().lower()}\n"
                f"    next: {when if row.active else '(not scheduled while inactive) ' + when}"
            )
