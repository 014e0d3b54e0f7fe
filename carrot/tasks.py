"""The user's API: ``@task`` turns a module-level function into a registered ``Task``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, overload

from django.conf import settings

from carrot.conf import get_config
from carrot.exceptions import InvalidTask, UnknownQueue
from carrot.messages import normalise_arguments
from carrot.registry import registry
from carrot.scheduling.cadence import Cadence
from carrot.scheduling.declaration import Declaration

if TYPE_CHECKING:
    from carrot.models import MessageLog

DEFAULT_QUEUE = "default"


@dataclass(frozen=True, eq=False)
class Task:
    """A registered function with its options: queue, priority, retries, time limit."""

    func: Callable[..., Any]
    name: str
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    retries: int = 0
    retry_backoff: float = 2.0
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    autoretry_for: tuple[type[BaseException], ...] = ()
    time_limit: float | None = None
    # One queued or running call per key at most (publishing/unique.py): the key is the
    # call's arguments (``unique``) or what ``unique_key(*args, **kwargs)`` returns.
    unique: bool = False
    unique_key: Callable[..., str] | None = None
    # Called in the worker once an attempt's final outcome is committed: (row id,
    # succeeded, the error or None). Its errors are logged, never raised.
    on_outcome: Callable[[int, bool, BaseException | None], None] | None = None

    def __post_init__(self) -> None:
        # Look like the wrapped function to introspection and documentation tools.
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            object.__setattr__(self, attr, getattr(self.func, attr, None))
        object.__setattr__(self, "__wrapped__", self.func)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue!r} priority={self.priority}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function inline, in this process."""
        return self.func(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> MessageLog:
        """Publish a call with these arguments; return its MessageLog (PUBLISHED)."""
        return self.apply_async(args=args, kwargs=kwargs)

    def delay_many(
        self, calls: Any, *, queue: str | None = None, priority: int | None = None
    ) -> list[MessageLog]:
        """Publish many calls at once; ``calls`` yields ``(args, kwargs)`` pairs."""
        # lazy: carrot.tasks is imported with the package, before Django has loaded the models.
        from carrot.publishing.enqueue import enqueue_many

        return enqueue_many(
            self.name,
            calls,
            queue=queue or self.queue,
            priority=self.priority if priority is None else priority,
            who=f"{self.func.__name__}.delay_many()",
        )

    def apply_async(
        self,
        args: list[Any] | tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
    ) -> MessageLog:
        """Publish a call with explicit options; return its MessageLog (PUBLISHED).

        ``countdown`` (seconds) or ``eta`` (an aware datetime) delay the first run; the
        message waits in RabbitMQ, not in a worker, so a restart does not lose it.
        """
        # lazy: carrot.tasks is imported with the package, before Django has loaded the models.
        from carrot.publishing.enqueue import enqueue

        return enqueue(
            self.name,
            args,
            kwargs,
            queue=queue or self.queue,
            priority=self.priority if priority is None else priority,
            who=f"{self.func.__name__}.apply_async()",
            eta=resolve_eta(countdown, eta),
        )


def resolve_eta(countdown: Any, eta: Any) -> datetime | None:
    """Return when a call may run, from ``countdown`` seconds or an aware ``eta``."""
    if countdown is not None and eta is not None:
        raise ValueError("Give countdown or eta, not both.")
    if countdown is not None:
        if not isinstance(countdown, int | float) or isinstance(countdown, bool) or countdown < 0:
            raise ValueError(f"countdown must be a number of seconds >= 0, got {countdown!r}.")
        return datetime.now(tz=UTC) + timedelta(seconds=countdown) if countdown else None
    if eta is not None:
        if not isinstance(eta, datetime) or eta.tzinfo is None:
            raise ValueError(f"eta must be an aware datetime, got {eta!r}.")
        return eta.astimezone(UTC)
    return None


def validate_retry_options(
    where: str, options: dict[str, Any], spelling: str = "@task({key}=...)"
) -> None:
    """Raise InvalidTask for a bad retry or time-limit option; ``spelling`` names the
    option in the message as the user wrote it."""

    def bad(key: str, what: str, value: Any) -> InvalidTask:
        name = spelling.format(key=key)
        return InvalidTask(f"{name} for {where} must be {what}, got {value!r}.")

    retries = options["retries"]
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise bad("retries", "an integer >= 0", retries)
    for key in ("retry_backoff", "retry_backoff_max"):
        value = options[key]
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise bad(key, "a number of seconds > 0", value)
    if not isinstance(options["retry_jitter"], bool):
        raise bad("retry_jitter", "True or False", options["retry_jitter"])
    autoretry = options["autoretry_for"]
    if not isinstance(autoretry, tuple) or not all(
        isinstance(e, type) and issubclass(e, BaseException) for e in autoretry
    ):
        raise bad("autoretry_for", "a tuple of exception classes", autoretry)
    limit = options["time_limit"]
    if limit is not None and (
        not isinstance(limit, int | float) or isinstance(limit, bool) or limit <= 0
    ):
        raise bad("time_limit", "a number of seconds > 0", limit)


def _validate_options(func: Any, queue: Any, priority: Any) -> None:
    if not inspect.isfunction(func):
        raise InvalidTask(
            f"@task can only decorate a function, got {func!r}. Methods, classes and other "
            "callables cannot be tasks; call them from a module-level function."
        )
    where = f"{func.__module__}.{func.__qualname__}"
    if "<locals>" in func.__qualname__ or func.__name__ == "<lambda>":
        raise InvalidTask(
            f"@task requires a module-level function, but {where} is defined inside another "
            "function or is a lambda. Move it to the top level of a module so workers can "
            "find it by name."
        )
    if inspect.iscoroutinefunction(func):
        raise InvalidTask(f"{where} is an async function; carrot tasks must be plain functions.")
    if not isinstance(queue, str) or not queue:
        raise InvalidTask(f"@task(queue=...) for {where} must be a queue name, got {queue!r}.")
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise InvalidTask(f"@task(priority=...) for {where} must be an integer, got {priority!r}.")
    max_priority = 255
    if settings.configured:
        try:
            max_priority = get_config().queue(queue).max_priority
        except UnknownQueue as exc:
            raise InvalidTask(f"@task(queue={queue!r}) for {where}: {exc}") from None
    if not 0 <= priority <= max_priority:
        raise InvalidTask(
            f"@task(priority={priority}) for {where} is out of range: queue {queue!r} accepts "
            f"priorities from 0 to {max_priority} (higher runs first)."
        )


def validate_unique_options(where: str, options: dict[str, Any]) -> None:
    """Raise InvalidTask for a bad ``unique`` or ``unique_key`` option."""
    if not isinstance(options["unique"], bool):
        raise InvalidTask(
            f"@task(unique=...) for {where} must be True or False, got {options['unique']!r}."
        )
    key = options["unique_key"]
    if key is not None and not callable(key):
        raise InvalidTask(
            f"@task(unique_key=...) for {where} must be a function of the call's arguments "
            f"that returns a string, got {key!r}."
        )


def make_task(
    func: Callable[..., Any], *, queue: str = DEFAULT_QUEUE, priority: int = 0, **options: Any
) -> Task:
    """Validate ``func`` and the options, and return an unregistered Task."""
    _validate_options(func, queue, priority)
    where = f"{func.__module__}.{func.__qualname__}"
    full = {**RETRY_DEFAULTS, **CONTROL_DEFAULTS, **options}
    validate_retry_options(where, full)
    validate_unique_options(where, full)
    full["unique"] = full["unique"] or full["unique_key"] is not None
    return Task(func=func, name=where, queue=queue, priority=priority, **full)


RETRY_DEFAULTS: dict[str, Any] = {
    "retries": 0,
    "retry_backoff": 2.0,
    "retry_backoff_max": 600.0,
    "retry_jitter": True,
    "autoretry_for": (),
    "time_limit": None,
}
CONTROL_DEFAULTS: dict[str, Any] = {
    "unique": False,
    "unique_key": None,
}


@overload
def task(func: Callable[..., Any], /) -> Task: ...


@overload
def task(
    *,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    retries: int = 0,
    retry_backoff: float = 2.0,
    retry_backoff_max: float = 600.0,
    retry_jitter: bool = True,
    autoretry_for: tuple[type[BaseException], ...] = (),
    time_limit: float | None = None,
    unique: bool = False,
    unique_key: Callable[..., str] | None = None,
) -> Callable[[Callable[..., Any]], Task]: ...


def task(
    func: Callable[..., Any] | None = None,
    /,
    *,
    queue: str = DEFAULT_QUEUE,
    priority: int = 0,
    **options: Any,
) -> Task | Callable[[Callable[..., Any]], Task]:
    """Register a module-level function as a task; use bare or with options.

    ``retries``: attempts after the first when it raises (any Exception, or only
    ``autoretry_for``; ``raise Retry()`` always asks for one). The wait before retry n is
    ``retry_backoff * 2**(n-1)`` seconds, at most ``retry_backoff_max``, randomised
    between half and all of it when ``retry_jitter``. ``time_limit``: seconds after which
    the attempt fails with TimeLimitExceeded. ``unique``: while a call with the same
    arguments is queued or running, ``delay()`` returns its row instead of publishing
    another; ``unique_key`` (a function of the call's arguments returning a string)
    decides which calls are the same instead.
    """
    unknown = set(options) - set(RETRY_DEFAULTS) - set(CONTROL_DEFAULTS)
    if unknown:
        raise InvalidTask(
            f"@task got unknown options {sorted(unknown)}; it takes queue, priority, "
            f"{', '.join(RETRY_DEFAULTS)}, {', '.join(CONTROL_DEFAULTS)}."
        )

    def decorator(f: Callable[..., Any]) -> Task:
        if isinstance(f, Task):
            raise InvalidTask(f"{f.name} is already a task; apply @task once.")
        t = make_task(f, queue=queue, priority=priority, **options)
        registry.register(t)
        return t

    if func is not None:
        return decorator(func)
    return decorator


def periodic(
    *,
    seconds: int | None = None,
    minutes: int | None = None,
    hours: int | None = None,
    days: int | None = None,
    cron: str | None = None,
    timezone: str | None = None,
    args: list[Any] | tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    name: str | None = None,
) -> Callable[[Callable[..., Any]], Task]:
    """Publish a task on a schedule: one of ``seconds=``...``days=`` or ``cron=``.

    On a plain function it also registers the task (with ``queue``/``priority``); stacked
    above ``@task(...)``, ``queue``/``priority`` override the task's for scheduled runs.
    ``name`` (default: the task name) identifies the schedule; use it to declare several
    schedules for one task. ``timezone`` (cron only) defaults to ``settings.TIME_ZONE``.
    """

    def decorator(f: Callable[..., Any]) -> Task:
        if isinstance(f, Task):
            t = f
        else:
            t = task(queue=queue or DEFAULT_QUEUE, priority=priority or 0)(f)
        where = f"@periodic on {t.name}"
        try:
            cadence = Cadence.build(
                seconds=seconds,
                minutes=minutes,
                hours=hours,
                days=days,
                cron=cron,
                timezone=timezone,
            )
        except ValueError as exc:
            raise InvalidTask(f"{where}: {exc}.") from None
        try:
            norm_args, norm_kwargs = normalise_arguments(args, kwargs, who=where)
        except TypeError as exc:
            raise InvalidTask(str(exc)) from None
        if queue is not None or priority is not None:
            _validate_options(
                t.func, queue or t.queue, t.priority if priority is None else priority
            )
        registry.declare(
            Declaration(
                name=name or t.name,
                task=t.name,
                cadence=cadence,
                args=tuple(norm_args),
                kwargs=norm_kwargs,
                queue=queue or "",
                priority=priority,
            )
        )
        return t

    return decorator
