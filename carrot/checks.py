"""System checks for the CARROT setting, with stable ids (carrot.E0xx / carrot.W0xx)."""

from __future__ import annotations

import importlib.util
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import router
from django.utils.module_loading import import_string

from carrot.backends import compat
from carrot.conf import get_problems, parse
from carrot.models import MessageLog
from carrot.observability import metrics
from carrot.worker.consumer import QueueConsumer


@checks.register("carrot")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Report every problem in CARROT."""
    out: list[checks.CheckMessage] = []
    for problem in get_problems():
        cls = checks.Warning if problem.warning else checks.Error
        out.append(cls(problem.msg, hint=problem.hint, id=problem.id))
    return out


@checks.register("carrot")
def check_importable(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Check that task modules, consumer classes and monitor decorators can be imported."""
    config, _ = parse(getattr(settings, "CARROT", None))
    out: list[checks.CheckMessage] = []
    for index, module in enumerate(config.task_modules):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            out.append(
                checks.Error(
                    f"CARROT['task_modules'][{index}] is misconfigured: the module {module!r} "
                    "cannot be imported.",
                    hint="Fix the dotted path or remove it from the list.",
                    id="carrot.E005",
                )
            )
    for queue in config.queues:
        try:
            cls = import_string(queue.consumer_class)
        except ImportError:
            cls = None
        if not (isinstance(cls, type) and issubclass(cls, QueueConsumer)):
            out.append(
                checks.Error(
                    f"CARROT['queues'] entry {queue.name!r} is misconfigured: 'consumer_class' "
                    f"{queue.consumer_class!r} is not an importable subclass of "
                    "carrot.consumer.Consumer.",
                    id="carrot.E009",
                )
            )
    for index, path in enumerate(config.monitor_authentication or ()):
        try:
            decorator = import_string(path)
        except ImportError:
            decorator = None
        if not callable(decorator):
            out.append(
                checks.Error(
                    f"CARROT['monitor_authentication'][{index}] is misconfigured: {path!r} is "
                    "not an importable decorator.",
                    id="carrot.E006",
                )
            )
    return out


def carrot_aliases() -> list[str]:
    """Return the TASKS aliases whose BACKEND is one of carrot's."""
    configured = getattr(settings, "TASKS", None)
    if not isinstance(configured, dict):
        return []
    return [
        alias
        for alias, params in configured.items()
        if isinstance(params, dict) and str(params.get("BACKEND", "")).startswith("carrot.")
    ]


@checks.register("carrot")
def check_task_backends(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Check that a carrot backend in TASKS has Django's task framework to serve."""
    aliases = carrot_aliases()
    if not aliases:
        return []
    where = ", ".join(f"TASKS[{alias!r}]" for alias in aliases)
    if not compat.available:
        return [checks.Error(f"{where}: {compat.UNAVAILABLE}", id="carrot.E011")]
    if compat.SOURCE == "django_tasks" and not apps.is_installed("django_tasks"):
        return [
            checks.Warning(
                f"{where} uses the django-tasks backport, which is not in INSTALLED_APPS: "
                "its system checks (including carrot's checks of the backend) and its task "
                "logging do not run.",
                hint="Add 'django_tasks' to INSTALLED_APPS.",
                id="carrot.W011",
            )
        ]
    return []


SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}


@checks.register("carrot")
def check_sqlite(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Warn when carrot's rows live in SQLite configured for one writer at a time (from
    the settings: nothing connects to the database)."""
    alias = router.db_for_write(MessageLog)
    return sqlite_warnings(alias, settings.DATABASES.get(alias, {}))


def sqlite_warnings(alias: str, database: dict[str, Any]) -> list[checks.CheckMessage]:
    """Return carrot.W012 for a SQLite database without WAL or IMMEDIATE transactions."""
    if "sqlite3" not in str(database.get("ENGINE", "")):
        return []
    options = database.get("OPTIONS") or {}
    init = str(options.get("init_command", "")).replace(" ", "").lower()
    missing = []
    if "journal_mode=wal" not in init:
        missing.append("WAL (journal_mode=WAL in init_command)")
    if str(options.get("transaction_mode", "")).upper() != "IMMEDIATE":
        missing.append("transaction_mode='IMMEDIATE'")
    if not missing:
        return []
    return [
        checks.Warning(
            f"DATABASES[{alias!r}] is SQLite without {' and '.join(missing)}: a worker's "
            "threads and your web process write at once, and without these SQLite makes "
            "them wait for each other, so tasks drain slowly and writes fail with "
            "'database is locked'.",
            hint=f"Set DATABASES[{alias!r}]['OPTIONS'] = {SQLITE_OPTIONS!r} (Django 5.1+). "
            "If the database file is put in WAL mode another way, silence carrot.W012.",
            id="carrot.W012",
        )
    ]


@checks.register("carrot")
def check_metrics(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Return carrot.W013 when metrics are configured and prometheus-client is missing."""
    config, _ = parse(getattr(settings, "CARROT", None))
    wanted = config.metrics.port is not None or config.metrics.token is not None
    if not wanted or metrics.available():
        return []
    return [
        checks.Warning(
            "CARROT['metrics'] is set, but the prometheus-client package is not installed: "
            "workers started with a metrics port exit, and the monitor's /metrics answers 501.",
            hint=metrics.INSTALL_HINT,
            id="carrot.W013",
        )
    ]
