"""The errors django-carrot raises: one tree rooted at CarrotError."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class CarrotError(Exception):
    """Root of every error django-carrot raises on purpose."""


class CarrotConfigError(CarrotError, ImproperlyConfigured):
    """The CARROT setting is invalid."""


class InvalidTask(CarrotError, ValueError):
    """A task definition (decorator arguments, function) is invalid."""


class TaskNotRegistered(CarrotError, LookupError):
    """A task name does not name a registered task."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"{name!r} is not a registered task. Decorate the function with @carrot.task in a "
            "module named tasks.py inside an installed app, or list its module in "
            "CARROT['task_modules']."
        )


class UnknownQueue(CarrotConfigError):
    """A queue name is not configured in CARROT['queues']."""

    def __init__(self, name: str, known: list[str] | tuple[str, ...]) -> None:
        self.name = name
        super().__init__(
            f"Queue {name!r} is not configured. Configured queues: {', '.join(known)}. "
            f"Add {{'name': {name!r}}} to CARROT['queues']."
        )


class MessageTooLarge(CarrotError, ValueError):
    """An encoded message is larger than CARROT['max_message_bytes']."""


class MessageDecodeError(CarrotError):
    """A message taken from the broker cannot be accepted; it is dead-lettered."""


class BrokerError(CarrotError):
    """Talking to RabbitMQ failed."""


class BrokerUnavailable(BrokerError):
    """RabbitMQ cannot be reached, or the connection to it was lost or blocked."""


class PublishError(BrokerError):
    """RabbitMQ refused a message (unroutable, negatively confirmed)."""


class PublishUncertain(BrokerError):
    """The connection broke after a message was sent and before RabbitMQ confirmed it.

    Whether the broker kept it is unknown; carrot keeps the row in the outbox so it is
    published again if no worker ran it (a worker skips a copy whose task already ran).
    """


class QueueMismatch(BrokerError):
    """A queue exists on the broker with arguments that differ from what carrot declares."""


class NotRequeueable(CarrotError):
    """A MessageLog cannot be requeued in its current state."""


class NotCancellable(CarrotError):
    """A MessageLog cannot be cancelled: it already finished (or is gone)."""


class TaskCancelled(CarrotError):  # noqa: N818  (what happened, as the monitor shows it)
    """The task was cancelled: before it ran, or while it ran (raised in its thread after
    the grace period, or by the task itself once it sees ``cancel_requested``)."""


class Retry(CarrotError):  # noqa: N818  (a signal, like StopIteration, not an error name)
    """Raise inside a task to run it again later (within its ``retries``).

    ``countdown`` (seconds) overrides the task's backoff; ``exc`` is recorded as the
    reason for this attempt.
    """

    def __init__(self, countdown: float | None = None, exc: BaseException | None = None) -> None:
        self.countdown = countdown
        self.exc = exc
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else "retry requested"
        super().__init__(reason)


class TimeLimitExceeded(CarrotError):  # noqa: N818  (the phrase users will search for)
    """A task ran longer than its ``time_limit``."""


class MessageRejected(CarrotError):
    """The worker refused a message before running anything; it was dead-lettered.

    Recorded (as the error type of the row), never raised at users.
    """


class TaskInterrupted(CarrotError):  # noqa: N818  (what happened, as the monitor shows it)
    """A task's attempts kept ending without an outcome (its worker died each time).

    Recorded (as the error type of the row), never raised at users.
    """


class MessagePurged(CarrotError):  # noqa: N818
    """An operator purged the task's message from its queue before it ran.

    Recorded (as the error type of the row), never raised at users.
    """
