"""RabbitMQ through pika: the only module that imports pika.

Everything above this module sees carrot's own types (``Delivery``) and errors
(``BrokerUnavailable``, ``PublishError``, ``QueueMismatch``); pika exceptions are translated
here. pika connections belong to one thread: publishers keep one connection per thread,
and each consumer owns its connection and is handed acks through
``add_callback_threadsafe``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions as pex

from carrot.conf import BrokerConfig, CarrotConfig, QueueConfig
from carrot.exceptions import BrokerUnavailable, PublishError, PublishUncertain, QueueMismatch
from carrot.messages import APP_ID, CONTENT_TYPE

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


# --------------------------------------------------------------------------- publishing


@dataclass
class _PublisherState:
    connection: Any
    channel: Any
    declared: set[str] = field(default_factory=set)
    last_used: float = field(default_factory=time.monotonic)


class Publisher:
    """Publish with confirms over one reused connection per thread and broker."""

    # Past this idle time, poll the connection first so a connection the broker closed
    # while idle is noticed before the publish rather than by it.
    IDLE_CHECK_SECONDS = 1.0

    def __init__(self) -> None:
        self._local = threading.local()
        os.register_at_fork(after_in_child=self._forget_all)

    def _forget_all(self) -> None:
        # A forked child must not touch its parent's sockets.
        self._local = threading.local()

    def _states(self) -> dict[tuple[Any, ...], _PublisherState]:
        states = getattr(self._local, "states", None)
        if states is None:
            states = self._local.states = {}
        return states

    def _state(
        self, broker: BrokerConfig, config: CarrotConfig, task: str
    ) -> tuple[_PublisherState, bool]:
        states = self._states()
        state = states.get(broker.key)
        if state is not None and state.connection.is_open and state.channel.is_open:
            return state, True
        if state is not None:
            self._drop(broker)
        connection = connect(
            broker,
            config,
            heartbeat=config.heartbeat,
            name="carrot-publisher",
            doing=f"publish {task}",
        )
        try:
            channel = connection.channel()
            channel.confirm_delivery()
        except pex.AMQPError as exc:
            raise unavailable(broker, exc, f"publish {task}") from exc
        state = states[broker.key] = _PublisherState(connection, channel)
        return state, False

    def _drop(self, broker: BrokerConfig) -> None:
        state = self._states().pop(broker.key, None)
        if state is not None and state.connection.is_open:
            try:
                state.connection.close()
            except (pex.AMQPError, OSError):
                pass

    def close(self) -> None:
        """Close this thread's publisher connections."""
        for state in list(self._states().values()):
            if state.connection.is_open:
                try:
                    state.connection.close()
                except (pex.AMQPError, OSError):
                    pass
        self._states().clear()

    def publish(
        self,
        queue: QueueConfig,
        config: CarrotConfig,
        *,
        body: bytes,
        message_id: str,
        task: str,
        priority: int,
        exchange: str = "",
        routing_key: str | None = None,
        headers: dict[str, Any] | None = None,
        delay: float | None = None,
    ) -> None:
        """Publish one persistent message and wait for the broker's confirm.

        With ``delay`` (seconds) the message goes to the queue's delay bucket first.
        Raises BrokerUnavailable (cannot connect, connection lost, blocked by an alarm) or
        PublishError (unroutable, refused). Returns only once the broker has the message.
        """
        broker = queue.broker
        routing_key = queue.name if routing_key is None else routing_key
        bucket = delay_bucket(delay) if delay is not None and delay >= 0.5 else None
        if bucket is not None:
            exchange, routing_key = "", delay_queue_name(queue, bucket)
        properties = pika.BasicProperties(
            content_type=CONTENT_TYPE,
            content_encoding="utf-8",
            delivery_mode=pika.DeliveryMode.Persistent,
            priority=priority,
            message_id=message_id,
            type=task,
            app_id=APP_ID,
            timestamp=int(time.time()),
            headers=headers or None,
        )
        for attempt in (1, 2):
            state, reused = self._state(broker, config, task)
            try:
                # Nothing is sent in this block: a failure here is safe to retry once.
                if time.monotonic() - state.last_used > self.IDLE_CHECK_SECONDS:
                    state.connection.process_data_events(0)
                if not exchange and routing_key not in state.declared:
                    declare_queue(state.channel, queue)
                    if bucket is not None:
                        declare_delay_queue(state.channel, queue, bucket)
                    state.declared.add(routing_key)
            except (pex.ChannelClosedByBroker, QueueMismatch):
                self._drop(broker)
                raise
            except (pex.AMQPError, OSError) as exc:
                self._drop(broker)
                # A reused connection may have died while idle.
                if reused and attempt == 1:
                    continue
                raise unavailable(broker, exc, f"publish {task}") from exc
            try:
                state.channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
            except pex.UnroutableError as exc:
                raise PublishError(
                    f"RabbitMQ could not route the message for {task} (exchange {exchange!r}, "
                    f"routing key {routing_key!r}): no queue is bound to receive it."
                ) from exc
            except pex.NackError as exc:
                raise PublishError(
                    f"RabbitMQ refused the message for {task} (negative publisher confirm)."
                ) from exc
            except pex.ConnectionBlockedTimeout as exc:
                self._drop(broker)
                raise BrokerUnavailable(
                    f"Cannot publish {task}: RabbitMQ at {broker.display_url} blocked publishing "
                    f"for {config.publish_timeout:g}s, which means a memory or disk alarm is "
                    "active on the broker. Free memory or disk on the RabbitMQ host."
                ) from exc
            except pex.ChannelClosedByBroker as exc:
                self._drop(broker)
                if exc.reply_code == 404:
                    raise PublishError(
                        f"Cannot publish {task}: the exchange {exchange!r} does not exist "
                        f"on {broker.display_url}."
                    ) from exc
                raise PublishError(f"Cannot publish {task}: {_describe(exc)}.") from exc
            except (pex.AMQPError, OSError) as exc:
                self._drop(broker)
                raise PublishUncertain(
                    f"The connection to RabbitMQ at {broker.display_url} broke while {task} "
                    f"was being published ({_describe(exc)}); whether the broker kept it is "
                    "unknown."
                ) from exc
            state.last_used = time.monotonic()
            return


publisher = Publisher()


# --------------------------------------------------------------------------- consuming


@dataclass(frozen=True)
class Delivery:
    """A message handed to a consumer, without pika types.

    The attribute names follow pika's BasicProperties, so seed-style hooks that read
    ``properties.message_id`` or ``properties.type`` keep working.
    """

    tag: int
    generation: int
    queue: str
    redelivered: bool
    body: bytes
    message_id: str | None
    type: str | None
    content_type: str | None
    app_id: str | None
    priority: int | None
    headers: dict[str, Any]
    timestamp: int | None = None  # seconds since the epoch, set by the publisher

    @property
    def task(self) -> str | None:
        return self.type


class ConsumerChannel:
    """One consumer connection on one queue; used only from its own I/O thread.

    ``ack``/``reject`` may be called from any thread: they are handed to the I/O thread.
    Each (re)connection is a new *generation*; an ack for a delivery of an older
    generation is dropped, because its tag means nothing (or something else) on the new
    channel and acking it would close the channel. That message is redelivered instead.
    """

    def __init__(
        self,
        queue: QueueConfig,
        config: CarrotConfig,
        on_delivery: Callable[[Delivery], None],
        *,
        prefetch: int,
        name: str,
    ) -> None:
        self.queue = queue
        self.config = config
        self.on_delivery = on_delivery
        self.prefetch = prefetch
        self.name = name
        self.generation = 0
        self._connection: Any = None
        self._channel: Any = None
        self._consumer_tag: str | None = None
        self._cancelled_by_broker = False
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return bool(
            self._connection is not None and self._connection.is_open and self._channel.is_open
        )

    def open(self) -> None:
        """Connect, declare the queues, set the prefetch and start consuming."""
        connection = connect(
            self.queue.broker,
            self.config,
            heartbeat=self.config.heartbeat,
            name=self.name,
            doing=f"consume from {self.queue.name!r}",
        )
        try:
            channel = connection.channel()
            declare_queue(channel, self.queue)
            channel.basic_qos(prefetch_count=self.prefetch)
            channel.add_on_cancel_callback(self._on_cancel)
            with self._lock:
                self.generation += 1
                self._connection, self._channel = connection, channel
                self._cancelled_by_broker = False
            self._consumer_tag = channel.basic_consume(
                self.queue.name, self._on_message, auto_ack=False
            )
        except QueueMismatch:
            connection.close()
            raise
        except (pex.AMQPError, OSError) as exc:
            try:
                connection.close()
            except (pex.AMQPError, OSError):
                pass
            raise unavailable(self.queue.broker, exc, f"consume from {self.queue.name!r}") from exc

    def _on_cancel(self, _frame: Any) -> None:
        self._cancelled_by_broker = True

    def _on_message(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        delivery = Delivery(
            tag=method.delivery_tag,
            generation=self.generation,
            queue=self.queue.name,
            redelivered=bool(method.redelivered),
            body=body,
            message_id=properties.message_id,
            type=properties.type,
            content_type=properties.content_type,
            app_id=properties.app_id,
            priority=properties.priority,
            headers=dict(properties.headers or {}),
            timestamp=properties.timestamp,
        )
        self.on_delivery(delivery)

    def process(self, time_limit: float) -> None:
        """Run I/O (deliveries, heartbeats, acks) for up to ``time_limit`` seconds.

        Raises BrokerUnavailable when the connection or channel is gone, or the broker
        cancelled the consumer: a consumer never idles on a dead channel.
        """
        try:
            self._connection.process_data_events(time_limit=time_limit)
        except (pex.AMQPError, OSError) as exc:
            raise unavailable(self.queue.broker, exc, f"consume from {self.queue.name!r}") from exc
        if not self._channel.is_open:
            reason = getattr(self._channel, "_closing_reason", None)
            raise BrokerUnavailable(
                f"The channel consuming {self.queue.name!r} was closed"
                + (f": {_describe(reason)}" if reason else "")
            )
        if self._cancelled_by_broker:
            raise BrokerUnavailable(
                f"RabbitMQ cancelled the consumer of {self.queue.name!r} (was the queue deleted?)"
            )

    def _settle(self, generation: int, tag: int, action: str) -> None:
        # Runs on the I/O thread.
        if generation != self.generation or not self.is_open:
            logger.info(
                "Dropping the %s of a delivery from a previous connection to %r; the broker "
                "will redeliver it",
                action,
                self.queue.name,
            )
            return
        if action == "ack":
            self._channel.basic_ack(tag)
        elif action == "requeue":
            self._channel.basic_nack(tag, requeue=True)
        else:
            self._channel.basic_reject(tag, requeue=False)

    def _threadsafe(self, delivery: Delivery, action: str) -> None:
        with self._lock:
            connection = self._connection
            if delivery.generation != self.generation or connection is None:
                return
        try:
            connection.add_callback_threadsafe(
                partial(self._settle, delivery.generation, delivery.tag, action)
            )
        except (pex.AMQPError, AttributeError):
            # The connection is closed: the broker requeues the message by itself.
            pass

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge a delivery (thread-safe)."""
        self._threadsafe(delivery, "ack")

    def requeue(self, delivery: Delivery) -> None:
        """Return a delivery to the queue (thread-safe)."""
        self._threadsafe(delivery, "requeue")

    def dead_letter(self, delivery: Delivery) -> None:
        """Reject a delivery without requeue, so it lands in the dead-letter queue."""
        self._threadsafe(delivery, "reject")

    def cancel(self) -> None:
        """Stop receiving new deliveries; prefetched ones go back to the queue (I/O thread)."""
        if self._consumer_tag and self.is_open:
            try:
                self._channel.basic_cancel(self._consumer_tag)
            except (pex.AMQPError, OSError):
                pass
        self._consumer_tag = None

    def close(self) -> None:
        """Close the connection (I/O thread); unacked deliveries are requeued by the broker."""
        with self._lock:
            connection, self._connection = self._connection, None
            self.generation += 1
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (pex.AMQPError, OSError):
                pass
