"""The parsed CARROT setting: frozen dataclasses, built by ``carrot.conf.parsing``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import quote

from carrot.exceptions import UnknownQueue

DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_QUEUE = "default"
DEFAULT_CONSUMER_CLASS = "carrot.consumer.Consumer"
# Suffixes of the queues carrot derives from a configured queue; a configured name may not
# end with one, or two queues could collide.
DERIVED_SUFFIXES = (".dlq", ".delay")


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
class MetricsConfig:
    """Prometheus metrics (``CARROT['metrics']``); see carrot.observability."""

    port: int | None = None  # the worker serves /metrics here; None: it does not
    address: str = "127.0.0.1"
    token: str | None = field(default=None, repr=False)  # the monitor's /metrics, without login


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
    cancel_grace: float = 10.0  # seconds a cancelled running task may finish by itself
    task_log_level: int = 10
    task_log_max_records: int = 1000
    completed_retention: timedelta | None = timedelta(days=3)
    scheduler: SchedulerConfig = SchedulerConfig()
    metrics: MetricsConfig = MetricsConfig()
    tracing: bool = True  # OpenTelemetry spans, when opentelemetry-api is installed

    @property
    def queue_names(self) -> tuple[str, ...]:
        return tuple(q.name for q in self.queues)

    def queue(self, name: str) -> QueueConfig:
        """Return the configuration of queue ``name``; raise UnknownQueue if there is none."""
        for q in self.queues:
            if q.name == name:
                return q
        raise UnknownQueue(name, self.queue_names)

    def brokers(self) -> list[BrokerConfig]:
        """Return each broker the queues use, once."""
        seen: dict[tuple[str, int, str, str], BrokerConfig] = {}
        for q in self.queues:
            seen.setdefault(q.broker.key, q.broker)
        return list(seen.values())


@dataclass(frozen=True)
class Problem:
    """Something wrong with the CARROT setting, reported by checks.py under ``id``."""

    id: str
    msg: str
    hint: str | None = None
    warning: bool = False
