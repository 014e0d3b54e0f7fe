"""Connections, topology and queue maintenance: the shared pika plumbing."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions as pex

from carrot.conf import BrokerConfig, CarrotConfig, QueueConfig
from carrot.exceptions import BrokerUnavailable, QueueMismatch

logger = logging.getLogger(__name__)


START_HINT = (
    "Start RabbitMQ with `rabbitmq-server -detached` (or `sudo systemctl start "
    "rabbitmq-server`), or point CARROT['default_broker'] at a running broker."
)


def _describe(exc: BaseException) -> str:
    """Return a short human description of a pika exception."""
    if isinstance(exc, pex.ProbableAuthenticationError | pex.AuthenticationError):
        return (
            "the broker refused the username or password "
            "(note: 'guest' may only connect from localhost)"
        )
    if isinstance(exc, pex.ProbableAccessDeniedError):
        return "the virtual host does not exist or the user may not use it"
    inner = getattr(exc, "exception", None)  # pika's connector errors wrap the socket error
    if isinstance(inner, BaseException):
        return _describe(inner)
    attempts = getattr(exc, "exceptions", None)  # AMQPConnectionWorkflowFailed
    if attempts and isinstance(attempts[-1], BaseException):
        return _describe(attempts[-1])
    if isinstance(exc, pex.AMQPConnectionError) and exc.args:
        inner = exc.args[0]
        if isinstance(inner, BaseException):
            return _describe(inner)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc})"
    if isinstance(exc, pex.ConnectionClosedByBroker):
        return f"the broker closed the connection ({exc.reply_code} {exc.reply_text})"
    if isinstance(exc, pex.ChannelClosedByBroker):
        return f"the broker closed the channel ({exc.reply_code} {exc.reply_text})"
    if isinstance(exc, pex.StreamLostError):
        return "the connection was lost"
    text = str(exc) or type(exc).__name__
    return text


def unavailable(broker: BrokerConfig, exc: BaseException, doing: str) -> BrokerUnavailable:
    """Return a BrokerUnavailable that says what failed, where, and how to fix it."""
    reason = _describe(exc)
    hint = START_HINT if "refused" in reason or "timed out" in reason.lower() else ""
    message = f"Cannot {doing}: RabbitMQ at {broker.display_url} is unavailable ({reason})."
    return BrokerUnavailable(f"{message} {hint}".strip())


def connection_parameters(
    broker: BrokerConfig, config: CarrotConfig, *, heartbeat: int | None, name: str
) -> pika.URLParameters:
    """Return pika parameters with carrot's timeouts, unless the URL sets them itself."""
    params = pika.URLParameters(broker.url)
    query = parse_qs(urlsplit(broker.url).query)
    if "heartbeat" not in query and heartbeat is not None:
        params.heartbeat = heartbeat
    if "blocked_connection_timeout" not in query:
        # Without it a publish during a memory or disk alarm blocks forever.
        params.blocked_connection_timeout = config.publish_timeout
    if "socket_timeout" not in query:
        params.socket_timeout = config.connect_timeout
    if "stack_timeout" not in query:
        params.stack_timeout = config.connect_timeout * 2
    if "connection_attempts" not in query:
        params.connection_attempts = 1
    params.client_properties = {
        "product": "django-carrot",
        "connection_name": f"{name} pid={os.getpid()}",
    }
    return params


def connect(
    broker: BrokerConfig, config: CarrotConfig, *, heartbeat: int | None, name: str, doing: str
) -> pika.BlockingConnection:
    """Open a blocking connection; raise BrokerUnavailable with the reason."""
    try:
        return pika.BlockingConnection(
            connection_parameters(broker, config, heartbeat=heartbeat, name=name)
        )
    except (pex.AMQPError, OSError) as exc:
        raise unavailable(broker, exc, doing) from exc


def queue_arguments(queue: QueueConfig) -> dict[str, Any]:
    """Return the arguments every carrot work queue is declared with."""
    return {
        "x-max-priority": queue.max_priority,
        # Rejected messages go to "<name>.dlq" through the default exchange.
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue.dead_letter_queue,
    }


def declare_queue(channel: Any, queue: QueueConfig) -> None:
    """Declare the work queue and its dead-letter queue (durable); raise QueueMismatch."""
    try:
        channel.queue_declare(queue.dead_letter_queue, durable=True)
        channel.queue_declare(queue.name, durable=True, arguments=queue_arguments(queue))
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


# Delays wait in "<queue>.delay.<n>s" queues whose TTL dead-letters back to the work queue.
# A delay uses the largest bucket that fits and the worker sends a message that arrives
# early on to the next bucket, so no message is ever held unacked by a worker and a
# restart loses nothing. Each bucket queue holds one TTL, so messages expire in order.
MAX_DELAY_BUCKET = 2**21  # seconds, about 24 days per hop


def delay_bucket(seconds: float) -> int:
    """Return the largest power-of-two number of seconds not above ``seconds`` (min 1)."""
    bucket = 1
    while bucket * 2 <= seconds and bucket < MAX_DELAY_BUCKET:
        bucket *= 2
    return bucket


def delay_queue_name(queue: QueueConfig, bucket: int) -> str:
    return f"{queue.name}.delay.{bucket}s"


def declare_delay_queue(channel: Any, queue: QueueConfig, bucket: int) -> str:
    """Declare the delay bucket queue for ``queue`` and return its name."""
    name = delay_queue_name(queue, bucket)
    channel.queue_declare(
        name,
        durable=True,
        arguments={
            "x-message-ttl": bucket * 1000,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue.name,
        },
    )
    return name


def check_connection(broker: BrokerConfig, config: CarrotConfig) -> None:
    """Connect and disconnect once; raise BrokerUnavailable if that fails."""
    connection = connect(broker, config, heartbeat=None, name="carrot-check", doing="connect")
    try:
        connection.close()
    except pex.AMQPError:
        pass


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
        try:
            connection.close()
        except pex.AMQPError:
            pass
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
        try:
            connection.close()
        except pex.AMQPError:
            pass
