"""django-carrot: a decorator-driven task queue for Django on RabbitMQ."""

from carrot.current import CurrentCall, current_call
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
from carrot.version import __version__

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "CarrotConfigError",
    "CarrotError",
    "CurrentCall",
    "InvalidTask",
    "MessageTooLarge",
    "PublishError",
    "Retry",
    "Task",
    "TaskNotRegistered",
    "TimeLimitExceeded",
    "__version__",
    "current_call",
    "periodic",
    "task",
]
