"""``manage.py carrot_cancel <uuid>... | --task NAME | --queue Q``: cancel tasks.

Queued tasks are cancelled at once and never run; running ones are asked to stop (see
``carrot.models.cancelling``). Finished tasks are left alone; naming one by its id is an
error.
"""

from __future__ import annotations

import getpass
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from carrot.exceptions import NotCancellable
from carrot.models import MessageLog
from carrot.models.cancelling import cancel_rows
from carrot.models.lifecycle import ACTIVE


class Command(BaseCommand):
    help = "Cancel tasks: queued ones never run, running ones are asked to stop."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", metavar="UUID", help="the tasks' ids")
        parser.add_argument("--task", help="every queued or running task of this name")
        parser.add_argument("--queue", help="every queued or running task of this queue")
        parser.add_argument("--dry-run", action="store_true", help="only count them")

    def handle(self, *args: Any, **options: Any) -> None:
        ids, task, queue = options["ids"], options["task"], options["queue"]
        if not (ids or task or queue):
            raise CommandError("Name the tasks: UUIDs, --task NAME or --queue QUEUE.")
        if ids and (task or queue):
            raise CommandError("Give UUIDs, or --task/--queue, not both.")
        by = f"{getpass.getuser()} (carrot_cancel)"
        if ids:
            self._by_id(ids, by, options["dry_run"])
            return
        rows = MessageLog.objects.filter(status__in=ACTIVE)
        if task:
            rows = rows.filter(task=task)
        if queue:
            rows = rows.filter(queue=queue)
        if options["dry_run"]:
            queued = rows.filter(status=MessageLog.PUBLISHED).count()
            running = rows.filter(status=MessageLog.IN_PROGRESS).count()
            self.stdout.write(f"Would cancel {queued} queued and ask {running} running to stop.")
            return
        done = cancel_rows(rows, by)
        self.stdout.write(
            f"Cancelled {done.queued} queued task(s); asked {done.asked} running to stop."
        )

    def _by_id(self, ids: list[str], by: str, dry_run: bool) -> None:
        try:
            keys = [uuid.UUID(value) for value in ids]
        except ValueError as exc:
            raise CommandError(f"Not a task id: {exc}") from None
        logs = {log.uuid: log for log in MessageLog.objects.filter(uuid__in=keys)}
        failed = False
        for key in keys:
            log = logs.get(key)
            if log is None:
                self.stderr.write(f"{key}: no such task")
                failed = True
                continue
            if dry_run:
                self.stdout.write(f"{key}: {log.status}")
                continue
            try:
                log = log.cancel(by)
            except NotCancellable as exc:
                self.stderr.write(str(exc))
                failed = True
                continue
            state = "cancelled" if log.status == MessageLog.CANCELLED else "asked to stop"
            self.stdout.write(f"{key}: {state}")
        if failed:
            raise CommandError("Some tasks could not be cancelled (see above).")
