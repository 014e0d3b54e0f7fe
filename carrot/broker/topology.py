"""What carrot declares on RabbitMQ and where each message goes.

Work queues are durable with ``x-max-priority`` and a dead-letter queue ``<name>.dlq``.
Delays wait in ``<queue>.delay.<n>s`` queues whose TTL dead-letters back to the work
queue: a delay uses the largest power-of-two bucket that fits, and a worker sends a
message that arrives early on to the next bucket, so no message is ever held unacked by
a worker and a restart loses nothing. Each bucket queue holds one TTL, so messages expire
in order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pika.exceptions as pex

from carrot.conf import QueueConfig
from carrot.exceptions import QueueMismatch

MAX_DELAY_BUCKET = 2**21  # seconds, about 24 days per hop
# Shorter delays are not worth a hop through a delay queue: the message goes straight on.
MIN_DELAY = 0.5


def queue_arguments(queue: QueueConfig) -> dict[str, Any]:
    """Return the arguments every carrot work queue is declared with."""
    return {
        "x-max-priority": queue.max_priority,
        # Rejected messages go to "<name>.dlq" through the default exchange.
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue.dead_letter_queue,
    }


def delay_bucket(seconds: float) -> int:
    """Return the largest power-of-two number of seconds not above ``seconds`` (min 1)."""
    bucket = 1
    while bucket * 2 <= seconds and bucket < MAX_DELAY_BUCKET:
        bucket *= 2
    return bucket


def delay_queue_name(queue: QueueConfig, bucket: int) -> str:
    return f"{queue.name}.delay.{bucket}s"


def delay_queue_arguments(queue: QueueConfig, bucket: int) -> dict[str, Any]:
    """Return the arguments of a delay bucket: its TTL dead-letters to the work queue."""
    return {
        "x-message-ttl": bucket * 1000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue.name,
    }


@dataclass(frozen=True)
class Declaration:
    """One thing to make sure of before publishing: a durable queue, or an exchange that
    must already exist (checked passively)."""

    name: str
    arguments: dict[str, Any] | None = None
    exchange: bool = False

    @property
    def key(self) -> str:
        return f"exchange {self.name}" if self.exchange else f"queue {self.name}"


def queue_declarations(queue: QueueConfig) -> tuple[Declaration, ...]:
    """Return the declarations of a work queue and its dead-letter queue."""
    return (
        Declaration(queue.dead_letter_queue),
        Declaration(queue.name, queue_arguments(queue)),
    )


@dataclass(frozen=True)
class Route:
    """Where one message is published, and what must be declared first."""

    exchange: str
    routing_key: str
    declarations: tuple[Declaration, ...]


def route(
    queue: QueueConfig, *, exchange: str = "", routing_key: str = "", delay: float | None = None
) -> Route:
    """Return where a message for ``queue`` goes.

    A delay of ``MIN_DELAY`` or more goes to the queue's delay bucket (and from there to the
    work queue, whatever exchange was asked for). A custom exchange gets the routing key
    as given and must exist. Otherwise the default exchange delivers to the queue named
    by the routing key (the work queue when it is empty).
    """
    bucket = delay_bucket(delay) if delay is not None and delay >= MIN_DELAY else None
    return _route(queue, exchange, routing_key, bucket)


@functools.lru_cache(maxsize=256)
def _route(queue: QueueConfig, exchange: str, routing_key: str, bucket: int | None) -> Route:
    if bucket is not None:
        name = delay_queue_name(queue, bucket)
        return Route(
            "",
            name,
            (*queue_declarations(queue), Declaration(name, delay_queue_arguments(queue, bucket))),
        )
    if exchange:
        return Route(exchange, routing_key, (Declaration(exchange, exchange=True),))
    key = routing_key or queue.name
    return Route("", key, queue_declarations(queue) if key == queue.name else ())


def declare_queue(channel: Any, queue: QueueConfig) -> None:
    """Declare a work queue and its dead-letter queue on a blocking channel.

    Raises QueueMismatch, with the fix, when the queue exists with other arguments.
    """
    try:
        for declaration in queue_declarations(queue):
            channel.queue_declare(declaration.name, durable=True, arguments=declaration.arguments)
    except pex.ChannelClosedByBroker as exc:
        if exc.reply_code == 406:
            raise QueueMismatch(
                f"Queue {queue.name!r} already exists on {queue.broker.display_url} with other "
                f"arguments than carrot declares ({exc.reply_text}). It was probably created "
                "by an older django-carrot or by hand. Drain it and delete it "
                f"(`rabbitmqctl delete_queue {queue.name}`) so carrot can declare it with a "
                "dead-letter queue, or set its 'max_priority' in CARROT['queues'] to match."
            ) from exc
        raise
