"""The seed's helpers, kept working over the new modules.

New code should use ``@task`` and ``my_task.delay()``; these serve code written for
django-carrot 1.x.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.utils.decorators import method_decorator
from django.utils.module_loading import import_string

from carrot.conf import get_config
from carrot.exceptions import TaskNotRegistered
from carrot.objects import Message, VirtualHost
from carrot.registry import registry
from carrot.tasks import Task

__all__ = [
    "create_class_view",
    "create_function_view",
    "create_message",
    "create_scheduled_task",
    "decorate_class_view",
    "decorate_function_view",
    "get_host_from_name",
    "get_mixin",
    "publish_message",
    "validate_task",
]


def get_host_from_name(name: str | None) -> VirtualHost:
    """Return the virtual host of queue ``name`` (the default broker when ``name`` is empty)."""
    config = get_config()
    broker = config.queue(name).broker if name else config.default_broker
    return VirtualHost(url=broker.url)


def validate_task(task: str | Callable[..., Any]) -> str:
    """Return the registered name of ``task`` (a Task, a function or a dotted path).

    Raises TaskNotRegistered unless it names a registered task or a function of a module
    listed in CARROT['task_modules']; nothing is imported to check.
    """
    if isinstance(task, Task):
        name = task.name
    elif isinstance(task, str):
        name = task
    elif callable(task):
        name = f"{getattr(task, '__module__', '')}.{getattr(task, '__qualname__', repr(task))}"
    else:
        raise TaskNotRegistered(repr(task))
    if name not in registry:
        raise TaskNotRegistered(name)
    return name


def _default_queue(task: str | Callable[..., Any]) -> str:
    name = validate_task(task)
    return registry[name].queue


def create_message(
    task: str | Callable[..., Any],
    priority: int = 0,
    task_args: Sequence[Any] = (),
    queue: str | None = None,
    exchange: str = "",
    routing_key: str | None = None,
    task_kwargs: dict[str, Any] | None = None,
) -> Message:
    """Return an unpublished Message for ``task``."""
    name = validate_task(task)
    queue = queue or _default_queue(name)
    return Message(
        task=name,
        virtual_host=get_host_from_name(queue),
        queue=queue,
        routing_key=routing_key,
        exchange=exchange,
        priority=priority,
        task_args=tuple(task_args),
        task_kwargs=task_kwargs,
    )


def publish_message(
    task: str | Callable[..., Any],
    *task_args: Any,
    priority: int = 0,
    queue: str | None = None,
    exchange: str = "",
    routing_key: str | None = None,
    **task_kwargs: Any,
) -> Any:
    """Publish a call of ``task``; return its MessageLog."""
    message = create_message(
        task,
        priority=priority,
        task_args=task_args,
        queue=queue,
        exchange=exchange,
        routing_key=routing_key,
        task_kwargs=task_kwargs,
    )
    return message.publish()


def create_scheduled_task(
    task: str | Callable[..., Any],
    interval: dict[str, int],
    queue: str | None = None,
    **kwargs: Any,
) -> Any:
    """Create (or update) a ScheduledTask that publishes ``task`` every ``interval``."""
    # lazy: like the seed's, this module is importable before Django has loaded the models.
    from carrot.scheduling.edits import create_scheduled_task as create

    return create(validate_task(task), interval, queue=queue, **kwargs)


def get_mixin(decorator: Callable[..., Any]) -> type:
    """Return a mixin class that applies ``decorator`` to a class-based view's dispatch."""

    class Mixin:
        @method_decorator(decorator)
        def dispatch(self, *args: Any, **kwargs: Any) -> Any:
            return super().dispatch(*args, **kwargs)  # type: ignore[misc]

    return Mixin


def create_class_view(view: type, decorator: Callable[..., Any]) -> type:
    """Return ``view`` with ``decorator`` applied to its dispatch method."""
    return type(view.__name__, (get_mixin(decorator), view), {})


def create_function_view(view: Callable[..., Any], decorator: Callable[..., Any]) -> Any:
    """Return ``view`` wrapped in ``decorator``."""
    return decorator(view)


def decorate_class_view(view_class: type, decorators: Sequence[str] | None = None) -> type:
    """Apply the decorators named by dotted paths (from settings) to a class-based view."""
    for path in decorators or []:
        view_class = create_class_view(view_class, import_string(path))
    return view_class


def decorate_function_view(
    view: Callable[..., Any], decorators: Sequence[str] | None = None
) -> Any:
    """Apply the decorators named by dotted paths (from settings) to a function view."""
    for path in decorators or []:
        view = create_function_view(view, import_string(path))
    return view
