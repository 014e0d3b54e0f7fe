"""``python manage.py carrot``: run the worker (consumers and scheduler) in the foreground."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from carrot.exceptions import BrokerError, CarrotConfigError

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(threadName)s] %(name)s: %(message)s"


def configure_logging(level: str, logfile: str | None) -> logging.Handler:
    """Send the ``carrot`` logger's records at ``level`` and above to stderr or ``logfile``."""
    handler: logging.Handler = (
        logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stderr)
    )
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    log = logging.getLogger("carrot")
    log.addHandler(handler)
    numeric = logging.getLevelName(level)
    if log.level == logging.NOTSET or log.level > numeric:
        log.setLevel(numeric)
    return handler


class Command(BaseCommand):
    help = "Run the carrot worker: consume the configured queues and run the scheduler."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--no-scheduler", action="store_true", help="only consume; do not publish schedules"
        )
        parser.add_argument(
            "--loglevel", default="INFO", choices=LEVELS, type=str.upper, help="default: INFO"
        )
        parser.add_argument("--logfile", help="write the log to this file instead of stderr")
        parser.add_argument(
            "--queues",
            help="comma-separated queue names to consume (default: every consumable queue)",
        )
        parser.add_argument(
            "--scheduler-only",
            action="store_true",
            help="only publish schedules; consume nothing (one per host is enough)",
        )
        parser.add_argument("--testmode", action="store_true", help="accepted for compatibility")

    def handle(self, *args: Any, **options: Any) -> None:
        from carrot.worker import Worker

        configure_logging(options["loglevel"], options["logfile"])
        queues = [q.strip() for q in (options["queues"] or "").split(",") if q.strip()]
        try:
            if options["scheduler_only"] and options["no_scheduler"]:
                raise CommandError("--scheduler-only and --no-scheduler exclude each other.")
            worker = Worker(
                queues=queues or None,
                scheduler=not options["no_scheduler"],
                consume=not options["scheduler_only"],
            )
            worker.install_signal_handlers()
            exit_code = worker.run()
        except (BrokerError, CarrotConfigError) as exc:
            raise CommandError(str(exc)) from None
        if exit_code:
            sys.exit(exit_code)
