"""``manage.py carrot_health``: exit 0 when carrot can work, 1 with the reason otherwise.

For container orchestrators: as a liveness probe on a worker container, use ``--worker``
(a worker process on this host must have a fresh heartbeat); as a readiness probe, the
default checks the database, the broker, and that every configured queue can be declared
as carrot declares it.
"""

from __future__ import annotations

import socket
import sys
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, connection

from carrot.broker.connection import check_connection
from carrot.broker.maintenance import queue_problems
from carrot.conf import get_config
from carrot.exceptions import BrokerError
from carrot.models import WorkerHeartbeat
from carrot.worker.heartbeats import LEASE


class Command(BaseCommand):
    help = "Check the database, the broker and (with --worker) this host's worker."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--worker", action="store_true", help="also require a live worker process on this host"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        problems = []
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            self.stdout.write("database: ok")
        except DatabaseError as exc:
            problems.append(f"database: {exc}")
        config = get_config()
        reachable = True
        for broker in config.brokers():
            try:
                check_connection(broker, config)
                self.stdout.write(f"broker {broker.display_url}: ok")
            except BrokerError as exc:
                problems.append(f"broker: {exc}")
                reachable = False
        if reachable:
            refused = queue_problems(config)
            problems += refused
            if not refused:
                self.stdout.write(f"queues: ok ({', '.join(config.queue_names)})")
        if options["worker"] and not problems:
            fresh = WorkerHeartbeat.objects.filter(
                hostname=socket.gethostname(), last_seen__gte=datetime.now(tz=UTC) - LEASE
            )
            if fresh.exists():
                self.stdout.write(f"worker: ok ({', '.join(w.name for w in fresh)})")
            else:
                problems.append(
                    f"worker: no worker on {socket.gethostname()} has reported "
                    f"in the last {LEASE.seconds}s"
                )
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            sys.exit(1)
