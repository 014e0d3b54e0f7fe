"""What operators ask of a queue: how deep it is, and to empty it."""

from __future__ import annotations

import pika.exceptions as pex

from carrot.broker.connection import close_quietly, connect, unavailable
from carrot.broker.topology import declare_queue
from carrot.conf import CarrotConfig, QueueConfig


def queue_depths(queue: QueueConfig, config: CarrotConfig) -> dict[str, tuple[int, int]]:
    """Return {queue name: (messages ready, consumers)} for a queue and its dead letters."""
    connection = connect(
        queue.broker, config, heartbeat=None, name="carrot-status", doing="read queue depths"
    )
    out: dict[str, tuple[int, int]] = {}
    try:
        for name in (queue.name, queue.dead_letter_queue):
            channel = connection.channel()
            try:
                result = channel.queue_declare(name, passive=True)
                out[name] = (result.method.message_count, result.method.consumer_count)
                channel.close()
            except pex.ChannelClosedByBroker:
                out[name] = (0, 0)
    finally:
        close_quietly(connection)
    return out


def purge_queue(queue: QueueConfig, config: CarrotConfig) -> int:
    """Remove every ready message from a work queue; return how many were removed."""
    connection = connect(
        queue.broker, config, heartbeat=None, name="carrot-purge", doing="purge a queue"
    )
    try:
        channel = connection.channel()
        declare_queue(channel, queue)
        result = channel.queue_purge(queue.name)
        return int(result.method.message_count)
    except pex.AMQPError as exc:
        raise unavailable(queue.broker, exc, f"purge queue {queue.name!r}") from exc
    finally:
        close_quietly(connection)
