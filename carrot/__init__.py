"""django-carrot: a decorator-driven task queue for Django on RabbitMQ."""

from carrot.exceptions import (
    BrokerError,
    BrokerUnavailable,
    CarrotConfigError,
    CarrotError,
    InvalidTask,
    MessageTooLarge,
    PublishError,
    Retry,
    TaskNotRegistered,
    TimeLimitExceeded,
)
from carrot.tasks import Task, periodic, task

__version__ = "2.0.0.dev0"

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "CarrotConfigError",
    "CarrotError",
    "InvalidTask",
    "MessageTooLarge",
    "PublishError",
    "Retry",
    "Task",
    "TaskNotRegistered",
    "TimeLimitExceeded",
    "periodic",
    "task",
]
