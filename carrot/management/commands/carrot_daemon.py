"""``manage.py carrot_daemon start|stop|restart|status``: run the worker detached."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from carrot.conf import get_config
from carrot.exceptions import CarrotError
from carrot.worker.daemon import MissingPid, PidExists, read_pid, running_pid, start, stop

__all__ = ["Command", "MissingPid", "PidExists"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Command(BaseCommand):
    help = (
        "Run the carrot worker in the background. status exits 0 when running, 1 when the "
        "pidfile is stale, 3 when not running (as init scripts do)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("mode", choices=("start", "stop", "restart", "status"))
        parser.add_argument("--pidfile", default="carrot.pid", help="default: ./carrot.pid")
        parser.add_argument("--logfile", default="carrot.log", help="default: ./carrot.log")
        parser.add_argument("--no-scheduler", action="store_true")
        parser.add_argument("--loglevel", default="INFO", choices=LEVELS, type=str.upper)
        parser.add_argument("--queues", help="comma-separated queue names to consume")
        parser.add_argument("--processes", type=int, default=1)
        parser.add_argument(
            "--timeout",
            type=float,
            help="seconds stop waits for tasks in flight before killing "
            "(default: CARROT['shutdown_timeout'] + 15)",
        )
        parser.add_argument(
            "--hard", action="store_true", help="stop without waiting for tasks in flight"
        )
        parser.add_argument("--testmode", action="store_true", help="accepted for compatibility")

    def handle(self, *args: Any, **options: Any) -> None:
        pidfile = Path(options["pidfile"]).resolve()
        mode = options["mode"]
        if mode == "status":
            self._status(pidfile)
        if mode in ("stop", "restart"):
            self._stop(pidfile, options, quiet_if_not_running=mode == "restart")
        if mode in ("start", "restart"):
            self._start(pidfile, options)

    def _worker_args(self, options: dict[str, Any]) -> list[str]:
        out = ["--loglevel", options["loglevel"]]
        if options["no_scheduler"]:
            out.append("--no-scheduler")
        if options["queues"]:
            out += ["--queues", options["queues"]]
        if options["processes"] != 1:
            out += ["--processes", str(options["processes"])]
        return out

    def _start(self, pidfile: Path, options: dict[str, Any]) -> None:
        logfile = Path(options["logfile"]).resolve()
        try:
            pid = start(pidfile, logfile, self._worker_args(options))
        except PidExists as exc:
            raise CommandError(str(exc)) from None
        except CarrotError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"carrot started (pid {pid}); log: {logfile}, pidfile: {pidfile}")

    def _stop(self, pidfile: Path, options: dict[str, Any], *, quiet_if_not_running: bool) -> None:
        timeout = options["timeout"]
        if timeout is None:
            timeout = get_config().shutdown_timeout + 15
        try:
            pid = stop(pidfile, timeout=timeout, hard=options["hard"])
        except MissingPid as exc:
            if not quiet_if_not_running:
                self.stdout.write(str(exc))
            return
        self.stdout.write(f"carrot stopped (pid {pid}).")

    def _status(self, pidfile: Path) -> None:
        pid = running_pid(pidfile)
        if pid is not None:
            self.stdout.write(f"carrot is running (pid {pid}).")
            sys.exit(0)
        if read_pid(pidfile) is not None:
            self.stdout.write(f"carrot is not running, but the pidfile {pidfile} remains.")
            sys.exit(1)
        self.stdout.write("carrot is not running.")
        sys.exit(3)
