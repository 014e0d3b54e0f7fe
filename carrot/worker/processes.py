"""Processes: running carrot's own commands in new ones (daemon, supervisor), and
telling whether one is alive."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def manage_command(*args: str) -> list[str]:
    """Return a command line that runs ``manage.py <args>`` like the current process.

    Started as ``python manage.py ...`` it reuses that manage.py; started as
    ``python -m django ...`` or ``django-admin`` it uses ``-m django``, which finds the
    project through DJANGO_SETTINGS_MODULE and PYTHONPATH (see ``child_environment``).
    """
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "manage.py" and script.is_file():
        return [sys.executable, str(script.resolve()), *args]
    return [sys.executable, "-m", "django", *args]


def child_environment(**extra: str) -> dict[str, str]:
    """Return this process's environment plus its import path, for a child command."""
    env = dict(os.environ)
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([os.getcwd(), *paths]))
    env.update(extra)
    return env


def process_alive(pid: int) -> bool:
    """Return True if a process with ``pid`` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True
