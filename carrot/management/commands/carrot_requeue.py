"""``manage.py carrot_requeue --failed [--task NAME] [--queue Q]``: requeue failed tasks."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from carrot.exceptions import BrokerError, NotRequeueable
from carrot.models import MessageLog
from carrot.models.lifecycle import REJECTED_PREFIX


class Command(BaseCommand):
    help = "Publish failed tasks again (messages rejected before running are left alone)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--failed",
            action="store_true",
            required=True,
            help="requeue FAILED tasks (required, to be explicit)",
        )
        parser.add_argument("--task", help="only this task name")
        parser.add_argument("--queue", help="only tasks of this queue")
        parser.add_argument("--limit", type=int, default=10_000, help="at most this many")
        parser.add_argument("--dry-run", action="store_true", help="only count them")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = MessageLog.objects.failed().exclude(exception__startswith=REJECTED_PREFIX)
        if options["task"]:
            rows = rows.filter(task=options["task"])
        if options["queue"]:
            rows = rows.filter(queue=options["queue"])
        rows = rows.order_by("id")[: options["limit"]]
        if options["dry_run"]:
            self.stdout.write(f"Would requeue {rows.count()} failed task(s).")
            return
        done, refused = 0, 0
        for log in rows:
            try:
                log.requeue()
            except NotRequeueable as exc:
                refused += 1
                self.stderr.write(f"Skipped {log.uuid}: {exc}")
            except BrokerError as exc:
                raise CommandError(f"Stopped after {done} requeued: {exc}") from None
            else:
                done += 1
        self.stdout.write(f"Requeued {done} failed task(s); skipped {refused}.")
