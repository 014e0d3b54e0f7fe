"""``carrot.backends.RabbitMQBackend``: a backend for Django's task framework.

``TASKS = {"default": {"BACKEND": "carrot.backends.RabbitMQBackend"}}`` and Django's own
``@task`` / ``enqueue()`` / ``get_result()`` go through carrot: a MessageLog row and its
outbox entry in the caller's transaction, published with confirms after the commit, run
by carrot's worker with the same guarantees as ``@carrot.task``, shown in the monitor.

- A task is registered in carrot's registry when Django validates it (at decoration), so
  the worker runs it; nothing is imported because a message named it.
- Django's priority (-100..100) maps monotonically onto the queue's RabbitMQ priorities
  (0..``max_priority``): -100 is 0, 0 the middle, 100 the top.
- ``run_after`` (an aware datetime, or a timedelta from now) waits in carrot's delay queues.
- ``queue_name`` must be a queue in ``CARROT['queues']`` (and in ``QUEUES`` if given).
- ``OPTIONS`` takes carrot's retry and time-limit options for every task of the backend.
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import router, transaction
from django.utils import timezone

from carrot.backends import compat
from carrot.backends.running import register
from carrot.conf import get_config
from carrot.exceptions import CarrotError, InvalidTask
from carrot.tasks import RETRY_DEFAULTS, validate_retry_options

# The OPTIONS a backend takes: carrot's retry and time-limit options (see @carrot.task).
OPTION_NAMES = tuple(name for name in RETRY_DEFAULTS if name != "autoretry_for")


class _Unavailable:
    """Stands in for BaseTaskBackend when Django has no task framework."""

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        raise ImproperlyConfigured(compat.UNAVAILABLE)


_Base: Any = compat.BaseTaskBackend if compat.available else _Unavailable


def carrot_priority(priority: int, max_priority: int) -> int:
    """Map Django's priority (-100..100) onto 0..``max_priority``, keeping its order."""
    low, high = compat.TASK_MIN_PRIORITY, compat.TASK_MAX_PRIORITY
    return round((priority - low) * max_priority / (high - low))


def eta_of(run_after: Any) -> datetime | None:
    """Return when a task may run, from Django's ``run_after``."""
    if run_after is None:
        return None
    if isinstance(run_after, timedelta):
        return timezone.now() + run_after
    if timezone.is_naive(run_after):
        return timezone.make_aware(run_after)
    return run_after


def _declared(task: Any) -> Any:
    """Return the Task its module holds for ``task.func`` (what the decorator made), or
    None while it is being decorated."""
    module = sys.modules.get(task.func.__module__)
    found = getattr(module, task.func.__name__, None)
    if isinstance(found, compat.Task) and found.func is task.func:
        return found
    return None


class RabbitMQBackend(_Base):
    """Run Django tasks through carrot: RabbitMQ delivery, a row per task, the monitor."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True
    carrot_backend = True  # how MessageLog.task_result() finds a carrot backend

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        if "QUEUES" not in params:
            self.queues: set[str] = set()  # every carrot queue (Django's default is only "default")
        options = dict(self.options) if isinstance(self.options, dict) else {}
        given = {k: options[k] for k in OPTION_NAMES if k in options}
        self.task_options = {**RETRY_DEFAULTS, **given}
        try:
            validate_retry_options(f"TASKS[{alias!r}]['OPTIONS']", self.task_options, "{key!r}")
        except InvalidTask as exc:
            raise ImproperlyConfigured(str(exc)) from None

    def validate_task(self, task: Any) -> None:
        """Django's checks, then: the queue is a carrot queue. A valid task is registered."""
        if isinstance(task.run_after, timedelta):
            # Django documents a timedelta for run_after, but its own check needs a
            # datetime: check the rest of the task without it.
            super().validate_task(dataclasses.replace(task, run_after=None))
        else:
            super().validate_task(task)
        declared = _declared(task)
        if (
            declared is not None
            and declared.backend != self.alias
            and not getattr(compat.task_backends[declared.backend], "carrot_backend", False)
        ):
            raise compat.InvalidTask(
                f"Task {task.module_path} is decorated for TASKS[{declared.backend!r}], "
                "which is not a carrot backend, so carrot's workers do not run it. "
                f"Decorate it with @task(backend={self.alias!r}) to run it on carrot."
            )
        if settings.configured:
            try:
                get_config().queue(task.queue_name)
            except CarrotError as exc:
                raise compat.InvalidTask(
                    f"Task {task.module_path}: queue_name {task.queue_name!r} is not a carrot "
                    f"queue. {exc}"
                ) from None
        register(task, type(self), self.alias, self.task_options)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Record and publish a call; return its TaskResult (READY)."""
        self.validate_task(task)
        # lazy: Django builds the backend when a task is decorated, maybe while apps load.
        from carrot.backends.results import result_of

        # lazy: as above.
        from carrot.models import MessageLog

        # lazy: as above.
        from carrot.publishing.enqueue import enqueue

        queue = get_config().queue(task.queue_name)
        log = enqueue(
            task.module_path,
            list(args),
            dict(kwargs),
            queue=queue.name,
            priority=carrot_priority(task.priority, queue.max_priority),
            eta=eta_of(task.run_after),
            who=f"{task.name}.enqueue()",
            backend=self.alias,
        )
        result = result_of(log, task, self.alias)
        # "Enqueued" once the row is committed (at once outside a transaction): after a
        # rollback no receiver has seen a task that never existed.
        transaction.on_commit(
            lambda: compat.task_enqueued.send(type(self), task_result=result),
            using=router.db_for_write(MessageLog),
        )
        return result

    def get_result(self, result_id: Any) -> Any:
        """Return the TaskResult of a task this backend enqueued (or any carrot task)."""
        # lazy: as in enqueue().
        from carrot.backends.results import result_by_id

        return result_by_id(str(result_id), self.alias)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        out: list[checks.CheckMessage] = []
        configured = get_config().queue_names
        for name in sorted(self.queues - set(configured)):
            out.append(
                checks.Error(
                    f"TASKS[{self.alias!r}]['QUEUES'] lists {name!r}, which is not a queue in "
                    f"CARROT['queues'] (configured: {', '.join(configured)}).",
                    hint=f"Add {{'name': {name!r}}} to CARROT['queues'] or remove it.",
                    id="carrot.E010",
                )
            )
        for key in sorted(set(self.options) - set(OPTION_NAMES)):
            out.append(
                checks.Warning(
                    f"TASKS[{self.alias!r}]['OPTIONS'] has the key {key!r}, which carrot does "
                    "not read; it is ignored.",
                    hint=f"The options are {', '.join(OPTION_NAMES)}.",
                    id="carrot.W010",
                )
            )
        return out
