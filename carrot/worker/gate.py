"""The gate: what a delivery must be before anything else looks at it.

Size, the properties carrot needs, the content type, a registered task name and a body
that decodes within limits. A delivery that fails is dead-lettered and recorded; nothing
is imported or run because a message named it (``registry`` is the only lookup).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from carrot.broker.consuming import Delivery
from carrot.broker.outgoing import Outgoing
from carrot.conf import QueueConfig
from carrot.exceptions import MessageDecodeError
from carrot.messages import CONTENT_TYPE, ETA_HEADER, decode_body
from carrot.registry import registry
from carrot.tasks import Task

# Headers RabbitMQ adds to a dead-lettered message; a delayed copy does not carry them.
_BROKER_HEADERS = ("x-death", "x-first-death", "x-last-death")


@dataclass(frozen=True)
class Admitted:
    """A delivery that passed the gate: its task and decoded arguments."""

    delivery: Delivery
    task: Task
    args: list[Any]
    kwargs: dict[str, Any]

    @property
    def message_id(self) -> str:
        return str(self.delivery.message_id)


def refusal(delivery: Delivery, max_bytes: int) -> str | None:
    """Return why the delivery's envelope is unacceptable, or None."""
    if delivery.defect:
        return delivery.defect
    if len(delivery.body) > max_bytes:
        return (
            f"message body is {len(delivery.body)} bytes, over the limit of {max_bytes} "
            "(CARROT['max_message_bytes'])"
        )
    missing = [
        prop
        for prop, value in (("message_id", delivery.message_id), ("type", delivery.type))
        if not value
    ]
    if missing:
        return f"the message has no {' or '.join(missing)} property"
    try:
        uuid.UUID(str(delivery.message_id))
    except ValueError:
        return f"message_id {delivery.message_id!r} is not a UUID"
    if delivery.content_type != CONTENT_TYPE:
        return f"content_type is {delivery.content_type!r}; carrot accepts only {CONTENT_TYPE}"
    return None


def admit(delivery: Delivery, task_name: str | None, max_bytes: int) -> Admitted | str:
    """Return the admitted delivery, or the reason it must be dead-lettered.

    ``task_name`` is what the consumer's ``get_task_type`` read from the message.
    """
    reason = refusal(delivery, max_bytes)
    if reason:
        return reason
    task = registry.get(task_name or "")
    if task is None:
        return f"{task_name or ''!r} is not a registered task"
    try:
        args, kwargs = decode_body(delivery.body, max_bytes=max_bytes)
    except MessageDecodeError as exc:
        return str(exc)
    return Admitted(delivery, task, args, kwargs)


def seconds_until_due(delivery: Delivery) -> float:
    """Return how long until the delivery may run (its ETA header), 0 if it may now."""
    eta = delivery.headers.get(ETA_HEADER)
    if not isinstance(eta, int | float) or isinstance(eta, bool):
        return 0.0
    return eta / 1000 - time.time()


def delayed_copy(delivery: Delivery, seconds: float, queue: QueueConfig, sink: Any) -> Outgoing:
    """Return a copy of a delivery for a delay queue, due in ``seconds`` (or at the ETA it
    already carries); ``sink`` hears of RabbitMQ's confirm or refusal."""
    headers = {k: v for k, v in delivery.headers.items() if not k.startswith(_BROKER_HEADERS)}
    if ETA_HEADER not in headers or seconds_until_due(delivery) <= 0.5:
        headers[ETA_HEADER] = int((time.time() + seconds) * 1000)
    return Outgoing(
        message_id=str(delivery.message_id),
        task=str(delivery.type),
        body=delivery.body,
        priority=delivery.priority or 0,
        queue=queue,
        headers=headers,
        delay=seconds,
        ref=delivery,
        sink=sink,
    )
