"""Parse a CARROT setting value into a ``CarrotConfig`` and the problems found in it.

``parse()`` never raises: every invalid value is replaced by its default and reported as a
``Problem`` with a stable id, which ``carrot.checks`` shows and ``get_config()`` raises.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from carrot.conf.brokers import parse_broker
from carrot.conf.fields import is_int, number, unknown_keys
from carrot.conf.queues import parse_queues
from carrot.conf.types import (
    DEFAULT_BROKER_URL,
    BrokerConfig,
    CarrotConfig,
    MetricsConfig,
    Problem,
    SchedulerConfig,
)

KNOWN_KEYS = {
    "default_broker",
    "queues",
    "task_modules",
    "monitor_authentication",
    "monitor_public",
    "max_message_bytes",
    "heartbeat",
    "connect_timeout",
    "publish_timeout",
    "max_interruptions",
    "shutdown_timeout",
    "cancel_grace",
    "task_log_level",
    "task_log_max_records",
    "completed_retention",
    "scheduler",
    "metrics",
    "tracing",
}
METRICS_KEYS = {"port", "address", "token"}
SCHEDULER_KEYS = {"enabled", "max_sleep", "cleanup_batch_size"}
LOG_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


# ------------------------------------------------------------------ the other keys


def _parse_task_modules(raw: dict[str, Any], problems: list[Problem]) -> tuple[str, ...]:
    modules = raw.get("task_modules", [])
    if isinstance(modules, list | tuple) and all(isinstance(m, str) and m for m in modules):
        return tuple(modules)
    problems.append(
        Problem(
            "carrot.E004",
            "CARROT['task_modules'] is misconfigured: expected a list of dotted module "
            f"paths, got {modules!r}.",
        )
    )
    return ()


def _parse_monitor_access(
    raw: dict[str, Any], problems: list[Problem]
) -> tuple[tuple[str, ...] | None, bool]:
    public = raw.get("monitor_public", False)
    if not isinstance(public, bool):
        problems.append(
            Problem(
                "carrot.E006",
                "CARROT['monitor_public'] is misconfigured: expected True or False, "
                f"got {public!r}.",
            )
        )
        public = False
    auth = raw.get("monitor_authentication")
    if auth is None:
        return None, public
    if not isinstance(auth, list | tuple) or not all(isinstance(d, str) and d for d in auth):
        problems.append(
            Problem(
                "carrot.E006",
                "CARROT['monitor_authentication'] is misconfigured: expected a list of "
                f"dotted paths to view decorators, got {auth!r}.",
            )
        )
        return None, public
    if not auth and not public:
        problems.append(
            Problem(
                "carrot.E007",
                "CARROT['monitor_authentication'] is empty, which would make the monitor public.",
                hint="Remove the key to keep the default (staff login required), list the "
                "decorators to apply, or set CARROT['monitor_public'] = True to make the "
                "monitor public on purpose.",
            )
        )
        return None, public
    return tuple(auth), public


def _parse_log_level(raw: dict[str, Any], problems: list[Problem]) -> int:
    level = raw.get("task_log_level", "DEBUG")
    if isinstance(level, str) and level.upper() in LOG_LEVELS:
        return LOG_LEVELS[level.upper()]
    if is_int(level):
        return int(level)
    problems.append(
        Problem(
            "carrot.E008",
            "CARROT['task_log_level'] is misconfigured: expected a level name such as "
            f"'INFO', got {level!r}.",
        )
    )
    return 10


def _parse_retention(raw: dict[str, Any], problems: list[Problem]) -> timedelta | None:
    retention = raw.get("completed_retention", timedelta(days=3))
    if is_int(retention) or isinstance(retention, float):
        retention = timedelta(seconds=retention)
    if retention is None or (isinstance(retention, timedelta) and retention > timedelta()):
        return retention
    problems.append(
        Problem(
            "carrot.E008",
            "CARROT['completed_retention'] is misconfigured: expected a positive timedelta "
            f"or number of seconds, or None to keep completed tasks, got {retention!r}.",
        )
    )
    return timedelta(days=3)


def _parse_scheduler(raw: dict[str, Any], problems: list[Problem]) -> SchedulerConfig:
    section = raw.get("scheduler", {})
    if not isinstance(section, dict):
        problems.append(
            Problem(
                "carrot.E008",
                f"CARROT['scheduler'] is misconfigured: expected a dict, got {section!r}.",
            )
        )
        section = {}
    unknown_keys(section, SCHEDULER_KEYS, "CARROT['scheduler']", problems, close=False)
    return SchedulerConfig(
        enabled=bool(section.get("enabled", True)),
        max_sleep=number(section, "max_sleep", 5.0, problems, minimum=0.1),
        cleanup_batch_size=int(number(section, "cleanup_batch_size", 1000, problems, minimum=1)),
    )


def _parse_metrics(raw: dict[str, Any], problems: list[Problem]) -> MetricsConfig:
    section = raw.get("metrics", {})
    if not isinstance(section, dict):
        problems.append(
            Problem(
                "carrot.E012",
                f"CARROT['metrics'] is misconfigured: expected a dict, got {section!r}.",
                hint="e.g. {'port': 9191, 'address': '0.0.0.0', 'token': '...'}",
            )
        )
        return MetricsConfig()
    unknown_keys(section, METRICS_KEYS, "CARROT['metrics']", problems, close=False)
    port = section.get("port")
    if port is not None and not (is_int(port) and 1 <= port <= 65535):
        problems.append(
            Problem(
                "carrot.E012",
                f"CARROT['metrics']['port'] is misconfigured: expected a port number "
                f"(1-65535) or None, got {port!r}.",
            )
        )
        port = None
    address = section.get("address", "127.0.0.1")
    if not isinstance(address, str) or not address:
        problems.append(
            Problem(
                "carrot.E012",
                f"CARROT['metrics']['address'] is misconfigured: expected an address to "
                f"listen on, such as '0.0.0.0', got {address!r}.",
            )
        )
        address = "127.0.0.1"
    token = section.get("token")
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        problems.append(
            Problem(
                "carrot.E012",
                "CARROT['metrics']['token'] is misconfigured: expected a string of at least "
                "16 characters (it lets a scraper read the monitor's metrics without a login).",
                hint="Make one: python -c 'import secrets; print(secrets.token_urlsafe())'",
            )
        )
        token = None
    return MetricsConfig(port=port, address=address, token=token)


def _parse_default_broker(raw: dict[str, Any], problems: list[Problem]) -> BrokerConfig:
    try:
        return parse_broker(raw.get("default_broker", DEFAULT_BROKER_URL))
    except ValueError as exc:
        problems.append(
            Problem("carrot.E002", f"CARROT['default_broker'] is misconfigured: {exc}.")
        )
        return parse_broker(DEFAULT_BROKER_URL)


def parse(raw: Any) -> tuple[CarrotConfig, list[Problem]]:
    """Parse a CARROT setting value; return the config (defaults where invalid) and problems."""
    problems: list[Problem] = []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(
            Problem("carrot.E001", f"CARROT is misconfigured: expected a dict, got {raw!r}.")
        )
        raw = {}
    unknown_keys(raw, KNOWN_KEYS, "CARROT", problems, close=True)
    default_broker = _parse_default_broker(raw, problems)
    auth, public = _parse_monitor_access(raw, problems)

    def top(key: str, default: float, minimum: float) -> Any:
        return number(raw, key, default, problems, minimum=minimum)

    config = CarrotConfig(
        default_broker=default_broker,
        queues=parse_queues(raw, default_broker, problems),
        task_modules=_parse_task_modules(raw, problems),
        monitor_authentication=auth,
        monitor_public=public,
        max_message_bytes=int(top("max_message_bytes", 1024 * 1024, 1024)),
        heartbeat=int(top("heartbeat", 60, 0)),
        connect_timeout=float(top("connect_timeout", 5.0, 0.1)),
        publish_timeout=float(top("publish_timeout", 10.0, 0.1)),
        max_interruptions=int(top("max_interruptions", 3, 0)),
        shutdown_timeout=float(top("shutdown_timeout", 60.0, 0)),
        cancel_grace=float(top("cancel_grace", 10.0, 0)),
        task_log_level=_parse_log_level(raw, problems),
        task_log_max_records=int(top("task_log_max_records", 1000, 0)),
        completed_retention=_parse_retention(raw, problems),
        scheduler=_parse_scheduler(raw, problems),
        metrics=_parse_metrics(raw, problems),
        tracing=bool(raw.get("tracing", True)),
    )
    return config, problems
