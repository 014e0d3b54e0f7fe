"""Pidfile handling for ``manage.py carrot_daemon start|stop|restart|status``.

Whether carrot already runs is read from the pidfile and checked against that one process
(it must exist and be a carrot command line); no process table is scanned.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from carrot.exceptions import CarrotError
from carrot.worker.processes import child_environment, manage_command, process_alive


class MissingPid(CarrotError):
    """No carrot process is recorded in the pidfile."""


class PidExists(CarrotError):
    """A live carrot process already owns the pidfile."""


def read_pid(pidfile: Path) -> int | None:
    """Return the pid recorded in ``pidfile``, or None."""
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def is_carrot(pid: int) -> bool:
    """Return True if ``pid`` is alive and (where /proc tells) runs a carrot command."""
    if not process_alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return b"carrot" in cmdline.read_bytes()
        except OSError:
            return True
    return True


def running_pid(pidfile: Path) -> int | None:
    """Return the pid of the carrot process owning ``pidfile``, or None."""
    pid = read_pid(pidfile)
    return pid if pid is not None and is_carrot(pid) else None


def start(pidfile: Path, logfile: Path, worker_args: list[str], *, wait: float = 2.0) -> int:
    """Start ``manage.py carrot`` detached; return its pid. Raise PidExists if running."""
    pid = running_pid(pidfile)
    if pid is not None:
        raise PidExists(
            f"carrot is already running (pid {pid}, pidfile {pidfile}). Use "
            "`manage.py carrot_daemon stop` or `restart`."
        )
    pidfile.unlink(missing_ok=True)  # a stale pidfile of a dead process
    command = manage_command("carrot", "--logfile", str(logfile), *worker_args)
    with open(os.devnull, "rb") as devnull, open(logfile, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603  (our own command line)
            command,
            stdin=devnull,
            stdout=log,
            stderr=log,
            env=child_environment(),
            start_new_session=True,
            close_fds=True,
        )
    pidfile.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pidfile.unlink(missing_ok=True)
            raise CarrotError(
                f"carrot exited at once with code {proc.returncode}; see {logfile} for why."
            )
        time.sleep(0.1)
    return proc.pid


def stop(pidfile: Path, *, timeout: float, hard: bool = False) -> int:
    """Stop the carrot process; graceful (SIGTERM, wait) unless ``hard`` (SIGKILL)."""
    pid = running_pid(pidfile)
    if pid is None:
        stale = pidfile.exists()
        pidfile.unlink(missing_ok=True)
        raise MissingPid(
            f"carrot is not running (removed a stale pidfile {pidfile})."
            if stale
            else f"carrot is not running (no pidfile {pidfile})."
        )
    if hard:
        _kill_group(pid)
    else:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            _kill_group(pid)
    while _alive(pid):
        time.sleep(0.05)
    pidfile.unlink(missing_ok=True)
    return pid


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our child (restart in one process), then probe.
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_group(pid: int) -> None:
    # The daemon starts carrot in its own session, so its group is its pid: this also
    # kills the worker processes of a --processes supervisor.
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
