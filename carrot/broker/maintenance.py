"""What operators ask of queues: can carrot declare them, how deep are they, empty one."""

from __future__ import annotations

import pika.exceptions as pex

from carrot.broker.connection import close_quietly, connect, unavailable
from carrot.broker.topology import declare_queue
from carrot.conf import CarrotConfig, QueueConfig
from carrot.exceptions import BrokerError, QueueMismatch


def queue_problems(config: CarrotConfig) -> list[str]:
    """Declare every configured queue as carrot does; return what RabbitMQ refused.

    A queue that exists with other arguments, or that the user may not configure, cannot
    take carrot's messages: its tasks fail "Not published", and a worker cannot consume it.
    """
    problems = []
    for broker in config.brokers():
        try:
            connection = connect(
                broker, config, heartbeat=None, name="carrot-health", doing="check"
            )
        except BrokerError as exc:
            problems.append(str(exc))
            continue
        try:
            for queue in (q for q in config.queues if q.broker.key == broker.key):
                try:
                    declare_queue(connection.channel(), queue)  # a refusal closes the channel
                except QueueMismatch as exc:
                    problems.append(f"queue {queue.name!r}: {exc}")
                except pex.AMQPError as exc:
                    problems.append(f"queue {queue.name!r}: {exc}")
        finally:
            close_quietly(connection)
    return problems


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


def drain_queue(queue: QueueConfig, config: CarrotConfig) -> list[str | None]:
    """Remove the messages waiting in a work queue now; return their message ids.

    Unlike a purge, which only counts, this tells which tasks lost their message, so
    exactly those can be marked. Messages published while it runs are left alone, and so
    are messages in the queue's delay queues (they are not waiting in it yet).
    """
    connection = connect(
        queue.broker, config, heartbeat=None, name="carrot-purge", doing="purge a queue"
    )
    removed: list[str | None] = []
    try:
        channel = connection.channel()
        declare_queue(channel, queue)
        waiting = channel.queue_declare(queue.name, passive=True).method.message_count
        if not waiting:
            return removed
        channel.basic_qos(prefetch_count=min(waiting, 1000))
        for method, properties, _body in channel.consume(queue.name, inactivity_timeout=1):
            if method is None:  # nothing more arrived within a second
                break
            removed.append(getattr(properties, "message_id", None))
            if len(removed) >= waiting or len(removed) % 500 == 0:
                channel.basic_ack(method.delivery_tag, multiple=True)
            if len(removed) >= waiting:
                break
        channel.cancel()  # unacked deliveries, if any, go back to the queue
        return removed
    except pex.AMQPError as exc:
        raise unavailable(queue.broker, exc, f"purge queue {queue.name!r}") from exc
    finally:
        close_quietly(connection)
