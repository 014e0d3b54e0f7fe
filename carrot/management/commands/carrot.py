"""``python manage.py carrot``: run the worker (consumers and scheduler) in the foreground."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from carrot.conf import get_config
from carrot.exceptions import BrokerError, CarrotConfigError
from carrot.observability import tracing
from carrot.observability.exposition import SummedMetrics
from carrot.worker.process import Worker
from carrot.worker.supervisor import Supervisor

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(process)d %(threadName)s] %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the task fields the worker attaches (``carrot``)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "thread": record.threadName,
            "message": record.getMessage(),
        }
        data.update(getattr(record, "carrot", None) or {})
        data.update(tracing.log_ids(record))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure_logging(level: str, logfile: str | None, fmt: str = "text") -> logging.Handler:
    """Send the ``carrot`` logger's records at ``level`` and above to stderr or ``logfile``."""
    handler: logging.Handler = (
        logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stderr)
    )
    handler.setLevel(level)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(LOG_FORMAT))
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
            "--scheduler-only",
            action="store_true",
            help="only publish schedules; consume nothing (one per host is enough)",
        )
        parser.add_argument(
            "--queues",
            help="comma-separated queue names to consume (default: every consumable queue)",
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=1,
            help="worker processes to run under one supervisor (default 1)",
        )
        parser.add_argument(
            "--loglevel", default="INFO", choices=LEVELS, type=str.upper, help="default: INFO"
        )
        parser.add_argument("--logfile", help="write the log to this file instead of stderr")
        parser.add_argument(
            "--log-format", choices=("text", "json"), default="text", help="default: text"
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            help="serve Prometheus metrics on this port (default: CARROT['metrics']['port']); "
            "with --processes, the supervisor serves the sum of its workers",
        )
        parser.add_argument("--testmode", action="store_true", help="accepted for compatibility")

    def handle(self, *args: Any, **options: Any) -> None:
        configure_logging(options["loglevel"], options["logfile"], options["log_format"])
        if options["scheduler_only"] and options["no_scheduler"]:
            raise CommandError("--scheduler-only and --no-scheduler exclude each other.")
        if options["processes"] < 1:
            raise CommandError("--processes must be 1 or more.")
        port = options["metrics_port"]
        if port is not None and not 1 <= port <= 65535:
            raise CommandError(f"--metrics-port must be a port number (1-65535), got {port}.")
        if options["processes"] > 1:
            sys.exit(self._supervise(options))
        queues = [q.strip() for q in (options["queues"] or "").split(",") if q.strip()]
        try:
            worker = Worker(
                queues=queues or None,
                scheduler=not options["no_scheduler"],
                consume=not options["scheduler_only"],
                metrics_port=port,
            )
            worker.install_signal_handlers()
            exit_code = worker.run()
        except (BrokerError, CarrotConfigError) as exc:
            raise CommandError(str(exc)) from None
        if exit_code:
            sys.exit(exit_code)

    def _supervise(self, options: dict[str, Any]) -> int:
        if options["scheduler_only"]:
            raise CommandError("--scheduler-only runs one process; drop --processes.")
        worker_args = ["--loglevel", options["loglevel"], "--log-format", options["log_format"]]
        if options["logfile"]:
            worker_args += ["--logfile", options["logfile"]]
        if options["queues"]:
            worker_args += ["--queues", options["queues"]]
        try:
            config = get_config()
            port = options["metrics_port"] or config.metrics.port
            summed = SummedMetrics(port, config.metrics.address) if port else None
        except CarrotConfigError as exc:
            raise CommandError(str(exc)) from None
        supervisor = Supervisor(
            options["processes"],
            worker_args,
            scheduler=not options["no_scheduler"],
            shutdown_timeout=config.shutdown_timeout,
            metrics=summed,
        )
        try:
            return supervisor.run()
        except CarrotConfigError as exc:
            raise CommandError(str(exc)) from None
