"""django-carrot: a decorator-driven task queue for Django on RabbitMQ."""

from carrot.current import CurrentCall, current_call, current_task
from carrot.exceptions import (
    BrokerError,
    BrokerUnavailable,
    CarrotConfigError,
    CarrotError,
    InvalidTask,
    MessageTooLarge,
    NotCancellable,
    PublishError,
    Retry,
    TaskCancelled,
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
    "NotCancellable",
    "PublishError",
    "Retry",
    "Task",
    "TaskCancelled",
    "TaskNotRegistered",
    "TimeLimitExceeded",
    "__version__",
    "current_call",
    "current_task",
    "periodic",
    "task",
]
