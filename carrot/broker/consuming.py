"""Consuming: one connection per queue, used from its own I/O thread."""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pika.exceptions as pex

from carrot.broker.connection import close_quietly, connect, describe, unavailable
from carrot.broker.decoding import TolerantConnection
from carrot.broker.topology import declare_queue
from carrot.conf import CarrotConfig, QueueConfig
from carrot.exceptions import BrokerUnavailable, QueueMismatch

logger = logging.getLogger(__name__)


class Settle(enum.Enum):
    """What to tell the broker about a delivery."""

    ACK = "ack"  # done: forget it
    REQUEUE = "requeue"  # back to the queue, for this or another consumer
    REJECT = "reject"  # to the dead-letter queue, never to run


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
    defect: str | None = None  # why its properties could not all be decoded (decoding)

    @property
    def task(self) -> str | None:
        return self.type

    @classmethod
    def received(
        cls, method: Any, properties: Any, body: bytes, *, queue: str, generation: int
    ) -> Delivery:
        """Return what pika delivered (a consumer's message or a basic.get) as a Delivery."""
        headers = properties.headers if isinstance(properties.headers, dict) else {}
        return cls(
            tag=method.delivery_tag,
            generation=generation,
            queue=queue,
            redelivered=bool(method.redelivered),
            body=body,
            message_id=properties.message_id,
            type=properties.type,
            content_type=properties.content_type,
            app_id=properties.app_id,
            priority=properties.priority,
            headers=dict(headers),
            timestamp=properties.timestamp,
            defect=getattr(properties, "carrot_defect", None),
        )


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
        self._unsettled: set[int] = set()  # delivered tags not yet settled (I/O thread)
        self._stopped = False  # cancel() was called: never consume again

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
            impl=TolerantConnection,
        )
        try:
            channel = connection.channel()
            declare_queue(channel, self.queue)
            channel.add_on_cancel_callback(self._on_cancel)
            with self._lock:
                self.generation += 1
                self._connection, self._channel = connection, channel
                self._cancelled_by_broker = False
                self._unsettled = set()
            self._consumer_tag = None
            if self.prefetch > 0:  # 0: paused (set_prefetch) until a window opens again
                channel.basic_qos(prefetch_count=self.prefetch)
                self._consumer_tag = channel.basic_consume(
                    self.queue.name, self._on_message, auto_ack=False
                )
        except QueueMismatch:
            close_quietly(connection)
            raise
        except (pex.AMQPError, OSError) as exc:
            close_quietly(connection)
            raise unavailable(self.queue.broker, exc, f"consume from {self.queue.name!r}") from exc

    def _on_cancel(self, _frame: Any) -> None:
        self._cancelled_by_broker = True

    def _on_message(self, _channel: Any, method: Any, properties: Any, body: bytes) -> None:
        delivery = Delivery.received(
            method, properties, body, queue=self.queue.name, generation=self.generation
        )
        self._unsettled.add(method.delivery_tag)
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
                + (f": {describe(reason)}" if reason else "")
            )
        if self._cancelled_by_broker:
            raise BrokerUnavailable(
                f"RabbitMQ cancelled the consumer of {self.queue.name!r} (was the queue deleted?)"
            )

    def _settle_many(self, generation: int, items: list[tuple[int, Settle]]) -> None:
        # Runs on the I/O thread.
        if generation != self.generation or not self.is_open:
            logger.info(
                "Dropping the settlement of %d deliveries from a previous connection to %r; "
                "the broker will redeliver them",
                len(items),
                self.queue.name,
            )
            return
        acks = []
        for tag, action in items:
            self._unsettled.discard(tag)
            if action is Settle.ACK:
                acks.append(tag)
            elif action is Settle.REQUEUE:
                self._channel.basic_nack(tag, requeue=True)
            else:
                self._channel.basic_reject(tag, requeue=False)
        if not acks:
            return
        # One ack with multiple=True covers every tag below the oldest delivery still
        # being worked on; tags above it are acked one by one (none waits for a slow task).
        floor = min(self._unsettled) if self._unsettled else None
        below = [t for t in acks if floor is None or t < floor]
        if below:
            self._channel.basic_ack(max(below), multiple=True)
        for tag in sorted(t for t in acks if floor is not None and t > floor):
            self._channel.basic_ack(tag)

    def settle_many(self, items: list[tuple[Delivery, Settle]]) -> None:
        """Ack, requeue or dead-letter deliveries (thread-safe).

        The whole batch is handed to the I/O thread at once. Settlements for deliveries
        of an older connection are dropped: those messages are redelivered.
        """
        with self._lock:
            connection, generation = self._connection, self.generation
        current = [(d.tag, action) for d, action in items if d.generation == generation]
        if not current or connection is None:
            return
        try:
            connection.add_callback_threadsafe(partial(self._settle_many, generation, current))
        except (pex.AMQPError, AttributeError):
            # The connection is closed: the broker requeues the messages by itself.
            pass

    def set_prefetch(self, count: int) -> None:
        """Change how many unsettled messages the broker may hand this worker (thread-safe);
        0 pauses the consumer until a later call opens it again.

        RabbitMQ applies ``basic.qos`` only to consumers started after it (the per-channel
        variant is deprecated and refused by RabbitMQ 4.3), so the queue is consumed anew
        with the new limit and the old consumer cancelled. Deliveries the old consumer
        already handed over stay valid; pika returns to the queue any that were still on
        the wire. A reconnect consumes with the latest value.
        """
        self.prefetch = count
        if count:
            logger.debug("The prefetch of %r is now %d", self.queue.name, count)
        else:
            logger.debug("Paused consuming %r: every task thread runs a long task", self.queue.name)
        with self._lock:
            connection, generation = self._connection, self.generation
        if connection is None:
            return
        try:
            connection.add_callback_threadsafe(partial(self._reconsume, generation, count))
        except (pex.AMQPError, AttributeError):
            pass  # closed: the next connection uses the new value

    def _reconsume(self, generation: int, count: int) -> None:
        # Runs on the I/O thread.
        if generation != self.generation or not self.is_open or self._stopped:
            return
        old = self._consumer_tag
        self._consumer_tag = None
        try:
            if count > 0:
                self._channel.basic_qos(prefetch_count=count)
                self._consumer_tag = self._channel.basic_consume(
                    self.queue.name, self._on_message, auto_ack=False
                )
            if old is not None:
                self._channel.basic_cancel(old)
        except (pex.AMQPError, OSError) as exc:
            # The channel is gone: process() notices and the worker reconnects.
            logger.info("Could not change the prefetch of %r: %s", self.queue.name, exc)

    def cancel(self) -> None:
        """Stop receiving new deliveries; prefetched ones go back to the queue (I/O thread)."""
        self._stopped = True
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
