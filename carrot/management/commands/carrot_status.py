"""``manage.py carrot_status``: queues, workers, schedules and task counts at a glance."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count

from carrot.broker.maintenance import queue_depths
from carrot.conf import get_config
from carrot.exceptions import BrokerError
from carrot.models import MessageLog, ScheduledTask, WorkerHeartbeat
from carrot.worker.heartbeats import LEASE


class Command(BaseCommand):
    help = "Print queue depths, consumers, live workers, schedules and task counts by status."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-broker", action="store_true", help="skip the queue depths")

    def handle(self, *args: Any, **options: Any) -> None:
        config = get_config()
        exit_code = 0
        if not options["no_broker"]:
            self.stdout.write("Queues (ready messages, consumers; dead letters):")
            for queue in config.queues:
                try:
                    depths = queue_depths(queue, config)
                except BrokerError as exc:
                    self.stdout.write(f"  {queue.name}: broker unavailable: {exc}")
                    exit_code = 1
                    continue
                ready, consumers = depths[queue.name]
                dead, _ = depths[queue.dead_letter_queue]
                self.stdout.write(
                    f"  {queue.name:<20} {ready:>7} ready  {consumers:>3} consumer(s)  "
                    f"{dead:>5} dead-lettered"
                )
        counts = dict(MessageLog.objects.values_list("status").annotate(n=Count("id")))
        waiting = MessageLog.objects.queued().filter(eta__gt=datetime.now(tz=UTC)).count()
        self.stdout.write("Tasks:")
        for status, label in MessageLog.STATUS_CHOICES:
            extra = (
                f" ({waiting} waiting for a later time)"
                if status == "PUBLISHED" and waiting
                else ""
            )
            self.stdout.write(f"  {label:<12} {counts.get(status, 0):>9}{extra}")
        fresh = datetime.now(tz=UTC) - LEASE
        workers = list(WorkerHeartbeat.objects.all())
        self.stdout.write(f"Workers ({sum(w.last_seen >= fresh for w in workers)} alive):")
        for w in workers:
            state = "alive" if w.last_seen >= fresh else "silent since " + w.last_seen.isoformat()
            self.stdout.write(
                f"  {w.name:<30} {state}; queues: {', '.join(w.queues) or '-'}"
                f"{'; scheduler' if w.scheduler else ''}"
            )
        active = ScheduledTask.objects.filter(active=True)
        soonest = active.exclude(next_run_at=None).order_by("next_run_at").first()
        self.stdout.write(
            f"Schedules: {active.count()} active of {ScheduledTask.objects.count()}"
            + (
                f"; next: {soonest.task_name} at {soonest.next_run_at.isoformat()}"
                if soonest and soonest.next_run_at
                else ""
            )
        )
        if exit_code:
            sys.exit(exit_code)
