"""A task call made ready to publish: validated, normalised to JSON, encoded, and its
MessageLog built (not saved).

Bad input fails here, in the caller, before anything is written or sent: an unregistered
task, an unknown queue, a priority out of range, arguments that are not JSON, a message
over the size limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from carrot.conf import QueueConfig, get_config
from carrot.exceptions import TaskNotRegistered
from carrot.masking import search_text
from carrot.messages import encode_body, normalise_arguments
from carrot.models import MessageLog
from carrot.publishing.unique import key_of
from carrot.registry import registry


@dataclass
class Prepared:
    """A validated, encoded task call and its (unsaved) MessageLog."""

    log: MessageLog
    body: bytes
    queue: QueueConfig


def check_priority(priority: Any, queue: QueueConfig) -> int:
    """Return ``priority`` if ``queue`` accepts it; raise ValueError saying the range."""
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ValueError(f"priority must be an integer, got {priority!r}.")
    if not 0 <= priority <= queue.max_priority:
        raise ValueError(
            f"priority {priority} is out of range: queue {queue.name!r} accepts priorities "
            f"from 0 to {queue.max_priority} (higher runs first)."
        )
    return priority


def prepare(
    task_name: str,
    args: Any = None,
    kwargs: Any = None,
    *,
    queue: str,
    priority: int = 0,
    exchange: str = "",
    routing_key: str | None = None,
    who: str = "enqueue()",
    queue_config: QueueConfig | None = None,
    **fields: Any,
) -> Prepared:
    """Validate and encode a call of ``task_name``; return it with an unsaved MessageLog.

    Raises TaskNotRegistered, UnknownQueue, ValueError (priority), TypeError (arguments
    that are not JSON, a ``unique_key`` that returns no string) and MessageTooLarge.
    ``fields`` are further MessageLog columns (``eta``, ``schedule``, ``scheduled_for``).
    """
    task = registry.get(task_name)
    if task is None:
        raise TaskNotRegistered(task_name)
    config = get_config()
    queue_config = queue_config or config.queue(queue)
    priority = check_priority(priority, queue_config)
    norm_args, norm_kwargs = normalise_arguments(args, kwargs, who=who)
    body = encode_body(norm_args, norm_kwargs, max_bytes=config.max_message_bytes)
    log = MessageLog(
        task=task_name,
        queue=queue_config.name,
        exchange=exchange or "",
        routing_key=queue_config.name if routing_key is None else routing_key,
        priority=priority,
        task_args=norm_args,
        task_kwargs=norm_kwargs,
        search_text=search_text(norm_args, norm_kwargs),
        publish_time=timezone.now(),
        unique_key=key_of(task, norm_args, norm_kwargs),
        **fields,
    )
    return Prepared(log, body, queue_config)
