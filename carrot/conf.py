"""The only reader of ``settings.CARROT``: parse it once into frozen dataclasses.

``get_config()`` is cached and the cache is cleared when the setting changes (tests use
``override_settings``). ``parse()`` never raises: it returns the problems it found, which
``checks.py`` reports with stable ids and ``get_config()`` raises as ``CarrotConfigError``.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from carrot.exceptions import CarrotConfigError, UnknownQueue

DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_QUEUE = "default"
DEFAULT_CONSUMER_CLASS = "carrot.consumer.Consumer"
# Suffixes of the queues carrot derives from a configured queue; a configured name may not
# end with one, or two queues could collide.
DERIVED_SUFFIXES = (".dlq", ".delay")

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
    "task_log_level",
    "task_log_max_records",
    "completed_retention",
    "scheduler",
}
QUEUE_KEYS = {
    "name",
    "host",
    "concurrency",
    "consumable",
    "consumer_class",
    "max_priority",
    "prefetch",
}
SCHEDULER_KEYS = {"enabled", "max_sleep", "cleanup_batch_size"}


@dataclass(frozen=True)
class BrokerConfig:
    """Where one RabbitMQ virtual host lives."""

    url: str
    host: str
    port: int
    vhost: str
    username: str
    password: str = field(repr=False)
    secure: bool

    @property
    def display_url(self) -> str:
        """Return the URL with the password masked, safe for logs and pages."""
        scheme = "amqps" if self.secure else "amqp"
        vhost = "" if self.vhost == "/" else quote(self.vhost, safe="")
        return f"{scheme}://{quote(self.username, safe='')}:***@{self.host}:{self.port}/{vhost}"

    @property
    def key(self) -> tuple[str, int, str, str]:
        """Return what identifies a connection target (for sharing connections)."""
        return (self.host, self.port, self.vhost, self.username)


@dataclass(frozen=True)
class QueueConfig:
    """One configured queue."""

    name: str
    broker: BrokerConfig
    concurrency: int = 1
    consumable: bool = True
    consumer_class: str = DEFAULT_CONSUMER_CLASS
    max_priority: int = 10
    prefetch: int | None = None  # None: the concurrency

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dlq"


@dataclass(frozen=True)
class SchedulerConfig:
    enabled: bool = True
    max_sleep: float = 5.0
    cleanup_batch_size: int = 1000


@dataclass(frozen=True)
class CarrotConfig:
    """The parsed CARROT setting."""

    default_broker: BrokerConfig
    queues: tuple[QueueConfig, ...]
    task_modules: tuple[str, ...] = ()
    monitor_authentication: tuple[str, ...] | None = None
    monitor_public: bool = False
    max_message_bytes: int = 1024 * 1024
    heartbeat: int = 60
    connect_timeout: float = 5.0
    publish_timeout: float = 10.0
    max_interruptions: int = 3
    shutdown_timeout: float = 60.0
    task_log_level: int = 10
    task_log_max_records: int = 1000
    completed_retention: timedelta | None = timedelta(days=3)
    scheduler: SchedulerConfig = SchedulerConfig()

    @property
    def queue_names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.queues)

    def queue(self, name: str) -> QueueConfig:
        """Return the configuration of queue ``name``; raise UnknownQueue if there is none."""
        for q in self.queues:
            if q.name == name:
                return q
        raise UnknownQueue(name, self.queue_names)


@dataclass(frozen=True)
class Problem:
    """Something wrong with the CARROT setting, reported by checks.py under ``id``."""

    id: str
    msg: str
    hint: str | None = None
    warning: bool = False


def parse_broker(value: Any) -> BrokerConfig:
    """Parse a broker given as an AMQP URL or as the seed's dict; raise ValueError if invalid."""
    if isinstance(value, str):
        return _broker_from_url(value)
    if isinstance(value, dict):
        unknown = set(value) - {"host", "port", "name", "username", "password", "secure"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        secure = bool(value.get("secure", False))
        host = value.get("host", "localhost")
        port = value.get("port", 5671 if secure else 5672)
        if not isinstance(host, str) or not host:
            raise ValueError(f"'host' must be a non-empty string, got {host!r}")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise ValueError(f"'port' must be a port number, got {port!r}")
        vhost = value.get("name") or "/"
        user = value.get("username", "guest")
        password = value.get("password", "guest")
        url = "{}://{}:{}@{}:{}/{}".format(
            "amqps" if secure else "amqp",
            quote(str(user), safe=""),
            quote(str(password), safe=""),
            host,
            port,
            quote(vhost, safe=""),
        )
        return BrokerConfig(url, host, port, vhost, str(user), str(password), secure)
    raise ValueError(f"expected an AMQP URL string or a dict, got {type(value).__name__}")


def _broker_from_url(url: str) -> BrokerConfig:
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"expected a URL starting with amqp:// or amqps://, got {url!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid port in {url!r}") from exc
    secure = parts.scheme == "amqps"
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return BrokerConfig(
        url=url,
        host=parts.hostname or "localhost",
        port=port or (5671 if secure else 5672),
        vhost=vhost,
        username=unquote(parts.username) if parts.username else "guest",
        password=unquote(parts.password) if parts.password else "guest",
        secure=secure,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(
    raw: dict[str, Any], key: str, default: Any, problems: list[Problem], *, minimum: float
) -> Any:
    value = raw.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < minimum:
        problems.append(
            Problem(
                "carrot.E008",
                f"CARROT[{key!r}] is misconfigured: expected a number >= {minimum}, got {value!r}.",
            )
        )
        return default
    return value


def _parse_queue(
    index: int, item: Any, default_broker: BrokerConfig, problems: list[Problem]
) -> QueueConfig | None:
    where = f"CARROT['queues'][{index}]"
    if not isinstance(item, dict):
        problems.append(
            Problem("carrot.E003", f"{where} is misconfigured: expected a dict, got {item!r}.")
        )
        return None
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(
            Problem(
                "carrot.E003",
                f"{where} is misconfigured: expected a non-empty string 'name', got {name!r}.",
            )
        )
        return None
    if any(name.endswith(s) or f"{s}." in name for s in DERIVED_SUFFIXES):
        problems.append(
            Problem(
                "carrot.E003",
                f"{where} is misconfigured: the name {name!r} collides with the queues carrot "
                f"derives from a queue (suffixes {', '.join(DERIVED_SUFFIXES)}).",
                hint="Choose a name without those suffixes.",
            )
        )
        return None
    for key in sorted(set(item) - QUEUE_KEYS):
        problems.append(
            Problem(
                "carrot.W002",
                f"{where} has an unknown key {key!r}; it is ignored.",
                hint=f"Known keys: {', '.join(sorted(QUEUE_KEYS))}.",
                warning=True,
            )
        )
    broker = default_broker
    if "host" in item:
        try:
            broker = parse_broker(item["host"])
        except ValueError as exc:
            problems.append(
                Problem("carrot.E003", f"{where} is misconfigured: 'host' is invalid: {exc}.")
            )
    concurrency = item.get("concurrency", 1)
    if not _is_int(concurrency) or concurrency < 1:
        problems.append(
            Problem(
                "carrot.E003",
                f"{where} is misconfigured: expected 'concurrency' to be an integer >= 1, "
                f"got {concurrency!r}.",
            )
        )
        concurrency = 1
    consumable = item.get("consumable", True)
    if not isinstance(consumable, bool):
        problems.append(
            Problem(
                "carrot.E003",
                f"{where} is misconfigured: expected 'consumable' to be True or False, "
                f"got {consumable!r}.",
            )
        )
        consumable = True
    consumer_class = item.get("consumer_class", DEFAULT_CONSUMER_CLASS)
    if not isinstance(consumer_class, str) or "." not in consumer_class:
        problems.append(
            Problem(
                "carrot.E003",
                f"{where} is misconfigured: expected 'consumer_class' to be a dotted path, "
                f"got {consumer_class!r}.",
            )
        )
        consumer_class = DEFAULT_CONSUMER_CLASS
    max_priority = item.get("max_priority", 10)
    if not _is_int(max_priority) or not 1 <= max_priority <= 255:
        problems.append(
            Problem(
                "carrot.E003",
                f"{where} is misconfigured: expected 'max_priority' to be an integer from 1 "
                f"to 255, got {max_priority!r}.",
            )
        )
        max_priority = 10
    prefetch = item.get("prefetch")
    if prefetch is not None and (not _is_int(prefetch) or prefetch < concurrency):
        problems.append(
            Problem(
                "carrot.E003",
                f"{where} is misconfigured: expected 'prefetch' to be an integer >= its "
                f"concurrency ({concurrency}), got {prefetch!r}.",
            )
        )
        prefetch = None
    return QueueConfig(
        name=name,
        broker=broker,
        concurrency=concurrency,
        consumable=consumable,
        consumer_class=consumer_class,
        max_priority=max_priority,
        prefetch=prefetch,
    )


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
    for key in sorted(set(raw) - KNOWN_KEYS):
        close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
        problems.append(
            Problem(
                "carrot.W001",
                f"CARROT has an unknown key {key!r}; it is ignored.",
                hint=f"Did you mean {close[0]!r}?" if close else None,
                warning=True,
            )
        )

    try:
        default_broker = parse_broker(raw.get("default_broker", DEFAULT_BROKER_URL))
    except ValueError as exc:
        problems.append(
            Problem("carrot.E002", f"CARROT['default_broker'] is misconfigured: {exc}.")
        )
        default_broker = parse_broker(DEFAULT_BROKER_URL)

    queues: list[QueueConfig] = []
    raw_queues = raw.get("queues", [])
    if not isinstance(raw_queues, list | tuple):
        problems.append(
            Problem(
                "carrot.E003",
                f"CARROT['queues'] is misconfigured: expected a list, got {raw_queues!r}.",
            )
        )
        raw_queues = []
    for index, item in enumerate(raw_queues):
        queue = _parse_queue(index, item, default_broker, problems)
        if queue is None:
            continue
        if any(q.name == queue.name for q in queues):
            problems.append(
                Problem(
                    "carrot.E003",
                    f"CARROT['queues'][{index}] is misconfigured: the name {queue.name!r} is "
                    "used twice.",
                )
            )
            continue
        queues.append(queue)
    if not any(q.name == DEFAULT_QUEUE for q in queues):
        queues.insert(0, QueueConfig(name=DEFAULT_QUEUE, broker=default_broker))

    task_modules = raw.get("task_modules", [])
    if not isinstance(task_modules, list | tuple) or not all(
        isinstance(m, str) and m for m in task_modules
    ):
        problems.append(
            Problem(
                "carrot.E004",
                "CARROT['task_modules'] is misconfigured: expected a list of dotted module "
                f"paths, got {task_modules!r}.",
            )
        )
        task_modules = []

    monitor_public = raw.get("monitor_public", False)
    if not isinstance(monitor_public, bool):
        problems.append(
            Problem(
                "carrot.E006",
                "CARROT['monitor_public'] is misconfigured: expected True or False, "
                f"got {monitor_public!r}.",
            )
        )
        monitor_public = False
    auth = raw.get("monitor_authentication")
    if auth is not None:
        if not isinstance(auth, list | tuple) or not all(isinstance(d, str) and d for d in auth):
            problems.append(
                Problem(
                    "carrot.E006",
                    "CARROT['monitor_authentication'] is misconfigured: expected a list of "
                    f"dotted paths to view decorators, got {auth!r}.",
                )
            )
            auth = None
        elif not auth and not monitor_public:
            problems.append(
                Problem(
                    "carrot.E007",
                    "CARROT['monitor_authentication'] is empty, which would make the monitor "
                    "public.",
                    hint="Remove the key to keep the default (staff login required), list the "
                    "decorators to apply, or set CARROT['monitor_public'] = True to make the "
                    "monitor public on purpose.",
                )
            )
            auth = None
        else:
            auth = tuple(auth)

    task_log_level = raw.get("task_log_level", "DEBUG")
    levels = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
    if isinstance(task_log_level, str) and task_log_level.upper() in levels:
        task_log_level = levels[task_log_level.upper()]
    elif not _is_int(task_log_level):
        problems.append(
            Problem(
                "carrot.E008",
                "CARROT['task_log_level'] is misconfigured: expected a level name such as "
                f"'INFO', got {task_log_level!r}.",
            )
        )
        task_log_level = 10

    retention = raw.get("completed_retention", timedelta(days=3))
    if _is_int(retention) or isinstance(retention, float):
        retention = timedelta(seconds=retention)
    if retention is not None and (not isinstance(retention, timedelta) or retention <= timedelta()):
        problems.append(
            Problem(
                "carrot.E008",
                "CARROT['completed_retention'] is misconfigured: expected a positive timedelta "
                f"or number of seconds, or None to keep completed tasks, got {retention!r}.",
            )
        )
        retention = timedelta(days=3)

    raw_scheduler = raw.get("scheduler", {})
    if not isinstance(raw_scheduler, dict):
        problems.append(
            Problem(
                "carrot.E008",
                f"CARROT['scheduler'] is misconfigured: expected a dict, got {raw_scheduler!r}.",
            )
        )
        raw_scheduler = {}
    for key in sorted(set(raw_scheduler) - SCHEDULER_KEYS):
        problems.append(
            Problem(
                "carrot.W001",
                f"CARROT['scheduler'] has an unknown key {key!r}; it is ignored.",
                hint=f"Known keys: {', '.join(sorted(SCHEDULER_KEYS))}.",
                warning=True,
            )
        )
    scheduler = SchedulerConfig(
        enabled=bool(raw_scheduler.get("enabled", True)),
        max_sleep=_number(raw_scheduler, "max_sleep", 5.0, problems, minimum=0.1),
        cleanup_batch_size=int(
            _number(raw_scheduler, "cleanup_batch_size", 1000, problems, minimum=1)
        ),
    )

    config = CarrotConfig(
        default_broker=default_broker,
        queues=tuple(queues),
        task_modules=tuple(task_modules),
        monitor_authentication=auth,
        monitor_public=monitor_public,
        max_message_bytes=int(
            _number(raw, "max_message_bytes", 1024 * 1024, problems, minimum=1024)
        ),
        heartbeat=int(_number(raw, "heartbeat", 60, problems, minimum=0)),
        connect_timeout=float(_number(raw, "connect_timeout", 5.0, problems, minimum=0.1)),
        publish_timeout=float(_number(raw, "publish_timeout", 10.0, problems, minimum=0.1)),
        max_interruptions=int(_number(raw, "max_interruptions", 3, problems, minimum=0)),
        shutdown_timeout=float(_number(raw, "shutdown_timeout", 60.0, problems, minimum=0)),
        task_log_level=task_log_level,
        task_log_max_records=int(_number(raw, "task_log_max_records", 1000, problems, minimum=0)),
        completed_retention=retention,
        scheduler=scheduler,
    )
    return config, problems


@functools.cache
def _cached() -> tuple[CarrotConfig, tuple[Problem, ...]]:
    config, problems = parse(getattr(settings, "CARROT", None))
    return config, tuple(problems)


def get_config() -> CarrotConfig:
    """Return the parsed CARROT setting; raise CarrotConfigError if it has errors."""
    config, problems = _cached()
    errors = [p for p in problems if not p.warning]
    if errors:
        first = errors[0]
        raise CarrotConfigError(f"{first.msg} {first.hint or ''}".strip())
    return config


def get_problems() -> tuple[Problem, ...]:
    """Return every problem found in the CARROT setting."""
    return _cached()[1]


@receiver(setting_changed)
def _clear_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == "CARROT":
        _cached.cache_clear()
