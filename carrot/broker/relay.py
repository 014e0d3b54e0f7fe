"""The relay: one background thread per broker that publishes with pipelined confirms.

``delay()`` commits a MessageLog row and its outbox entry, hands the message to the relay
and returns; the relay publishes it on an asynchronous pika connection, many messages in
flight at once, and reports each broker confirm (or refusal) through callbacks, which
delete the outbox entry (or mark the row FAILED). Messages not confirmed when the
connection breaks are published again after the reconnect: the worker skips a copy whose
task already ran, and the outbox sweeper covers a process that dies meanwhile.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import takewhile
from typing import Any

import pika
import pika.exceptions as pex
from pika import spec

from carrot.broker.connection import (
    _describe,
    connection_parameters,
    delay_bucket,
    delay_queue_name,
    queue_arguments,
)
from carrot.conf import BrokerConfig, CarrotConfig, QueueConfig
from carrot.exceptions import BrokerUnavailable
from carrot.messages import APP_ID, CONTENT_TYPE

logger = logging.getLogger(__name__)


@dataclass
class Outgoing:
    """One message for the relay, identified by its MessageLog primary key."""

    log_id: int
    message_id: str
    task: str
    body: bytes
    priority: int
    queue: QueueConfig
    headers: dict[str, Any] | None = None
    delay: float | None = None

    def target(self) -> tuple[str, int | None]:
        """Return the routing key (the queue or its delay bucket) and the bucket."""
        if self.delay is not None and self.delay >= 0.5:
            bucket = delay_bucket(self.delay)
            return delay_queue_name(self.queue, bucket), bucket
        return self.queue.name, None


Confirmed = Callable[[list[int]], None]
Refused = Callable[[list[tuple[int, str]]], None]


class Relay:
    """Publish messages handed over by any thread, from one I/O thread of its own."""

    def __init__(
        self,
        broker: BrokerConfig,
        config: CarrotConfig,
        *,
        on_confirmed: Confirmed,
        on_refused: Refused,
    ) -> None:
        self.broker = broker
        self.config = config
        self.on_confirmed = on_confirmed
        self.on_refused = on_refused
        self._lock = threading.Lock()
        self._pending: deque[Outgoing] = deque()
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._settled = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._reached_ready = False  # the current connection got to confirm mode
        self._connection: Any = None
        self._channel: Any = None
        # Owned by the I/O thread:
        self._unconfirmed: dict[int, Outgoing] = {}
        self._flush_scheduled = False
        self._returned: set[str] = set()
        self._declared: set[str] = set()
        self._declaring: set[str] = set()
        self._tag = 0
        self.blocked = False
        self.down_since: float | None = None
        self.last_error = ""
        self._last_attempt = 0.0  # when the last connection attempt ended
        self._attempts_done = 0

    # ------------------------------------------------------------------ any thread

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._run, name=f"carrot-relay-{self.broker.host}", daemon=True
                )
                self._thread.start()

    def ensure_ready(self, timeout: float) -> None:
        """Raise BrokerUnavailable unless the relay can publish now (connecting if needed)."""
        self.start()
        if self.blocked:
            raise BrokerUnavailable(
                f"Cannot publish: RabbitMQ at {self.broker.display_url} is blocking publishers "
                "(a memory or disk alarm is active on the broker). Free memory or disk on the "
                "RabbitMQ host."
            )
        if self._ready.is_set():
            return
        seen = self._attempts_done
        if self.down_since is None:
            self._wait_for_attempt(seen, timeout)  # the first connection is in progress
        elif time.monotonic() - self._last_attempt >= 1.0:
            # Down for a while: try again now rather than wait out the reconnect backoff,
            # so a broker that just came back is used at once.
            self._wake.set()
            self._wait_for_attempt(seen, timeout)
        # Otherwise the last attempt failed moments ago: fail fast.
        if not self._ready.is_set():
            raise BrokerUnavailable(
                f"Cannot publish: RabbitMQ at {self.broker.display_url} is unavailable "
                f"({self.last_error or 'not connected'})."
                + (
                    " Start RabbitMQ with `rabbitmq-server -detached` (or `sudo systemctl "
                    "start rabbitmq-server`)."
                    if "refused" in self.last_error
                    else ""
                )
            )

    def _wait_for_attempt(self, seen: int, timeout: float) -> None:
        """Wait until the relay is ready or a connection attempt after ``seen`` ended."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.01):
            if self._attempts_done != seen or time.monotonic() > deadline:
                return

    def submit(self, items: list[Outgoing]) -> None:
        """Queue messages for publishing (returns at once)."""
        with self._lock:
            self._pending.extend(items)
            # One wake-up per burst: while a flush is scheduled, it will see these too.
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        self._poke()

    def flush(self, timeout: float) -> bool:
        """Wait until every submitted message was confirmed or refused; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._settled:
            while self._pending or self._unconfirmed:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not (self._thread and self._thread.is_alive()):
                    return False
                self._settled.wait(min(remaining, 0.1))
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection and end the thread (messages not yet sent stay in the outbox)."""
        self._stopping = True
        connection = self._connection
        if connection is not None:
            try:
                connection.ioloop.add_callback_threadsafe(self._close)
            except (pex.AMQPError, RuntimeError, AttributeError):
                pass
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _close(self) -> None:
        connection = self._connection
        if connection is None:
            return
        if connection.is_open:
            connection.close()  # _on_close stops the ioloop
        else:
            connection.ioloop.stop()

    def _poke(self) -> None:
        connection = self._connection
        if connection is not None:
            try:
                connection.ioloop.add_callback_threadsafe(self._flush)
            except (pex.AMQPError, RuntimeError, AttributeError):
                pass  # closing: the next connection flushes

    # ------------------------------------------------------------------ I/O thread

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping:
            self._reached_ready = False
            parameters = connection_parameters(
                self.broker,
                self.config,
                heartbeat=self.config.heartbeat,
                name=f"carrot-relay pid={os.getpid()}",
            )
            self._connection = pika.SelectConnection(
                parameters,
                on_open_callback=self._on_open,
                on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_close,
            )
            self._connection.add_on_connection_blocked_callback(self._on_blocked)
            self._connection.add_on_connection_unblocked_callback(self._on_unblocked)
            self._connection.ioloop.start()
            self._connection = None
            if self._stopping:
                break
            if self._reached_ready:
                backoff = 0.5  # this connection worked: the next outage starts over
            self._wake.wait(backoff)  # set by ensure_ready() to retry at once
            self._wake.clear()
            backoff = min(backoff * 2, 10.0)

    def _on_open(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_open_error(self, connection: Any, error: BaseException) -> None:
        self._mark_down(error)
        connection.ioloop.stop()

    def _on_close(self, connection: Any, reason: BaseException) -> None:
        self._mark_down(reason)
        self._channel = None
        with self._lock:
            # Unconfirmed messages may or may not have reached the broker: send them
            # again on the next connection (a worker skips a duplicate id).
            self._pending.extendleft(reversed(list(self._unconfirmed.values())))
            self._settled.notify_all()
        self._unconfirmed.clear()
        self._returned.clear()
        connection.ioloop.stop()

    def _mark_down(self, error: BaseException) -> None:
        self._last_attempt = time.monotonic()
        self._attempts_done += 1
        self._ready.clear()
        self.blocked = False
        if self.down_since is None:
            self.down_since = time.monotonic()
        if not self._stopping:
            self.last_error = _describe(error)
            logger.warning("Relay to %s is down: %s", self.broker.display_url, self.last_error)

    def _on_blocked(self, _connection: Any, _frame: Any) -> None:
        self.blocked = True
        logger.warning(
            "RabbitMQ at %s is blocking publishers (memory or disk alarm)", self.broker.display_url
        )

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        self.blocked = False
        self._flush()  # what waited during the alarm goes out now, not with the next delay()

    def _on_channel(self, channel: Any) -> None:
        self._channel = channel
        self._declared.clear()
        self._declaring.clear()
        self._tag = 0
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame: Any) -> None:
        self._reached_ready = True
        self._last_attempt = time.monotonic()
        self._attempts_done += 1
        self.down_since = None
        self.last_error = ""
        self._ready.set()
        self._flush()

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        # A channel error (e.g. a queue declared with other arguments): drop the
        # connection; its messages stay pending and the outbox keeps them safe.
        if self._stopping or getattr(reason, "reply_code", None) == 200:
            return  # a normal close
        self.last_error = _describe(reason)
        logger.error("Relay channel to %s closed: %s", self.broker.display_url, self.last_error)
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    def _flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False
        channel = self._channel
        if channel is None or not channel.is_open or self.blocked:
            return
        while True:
            with self._lock:
                if not self._pending:
                    return
                item = self._pending.popleft()
            routing_key, bucket = item.target()
            if routing_key not in self._declared:
                with self._lock:
                    self._pending.appendleft(item)
                self._declare(routing_key, item.queue, bucket)
                return
            self._tag += 1
            self._unconfirmed[self._tag] = item
            properties = pika.BasicProperties(
                content_type=CONTENT_TYPE,
                content_encoding="utf-8",
                delivery_mode=pika.DeliveryMode.Persistent,
                priority=item.priority,
                message_id=item.message_id,
                type=item.task,
                app_id=APP_ID,
                timestamp=int(time.time()),
                headers=item.headers or None,
            )
            channel.basic_publish("", routing_key, item.body, properties, mandatory=True)

    def _declare(self, routing_key: str, queue: QueueConfig, bucket: int | None) -> None:
        if routing_key in self._declaring:
            return
        self._declaring.add(routing_key)
        channel = self._channel
        steps: list[tuple[str, dict[str, Any] | None]] = [
            (queue.dead_letter_queue, None),
            (queue.name, queue_arguments(queue)),
        ]
        if bucket is not None:
            steps.append(
                (
                    routing_key,
                    {
                        "x-message-ttl": bucket * 1000,
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": queue.name,
                    },
                )
            )

        def next_step(_frame: Any = None) -> None:
            if not steps:
                self._declaring.discard(routing_key)
                self._declared.add(routing_key)
                self._flush()
                return
            name, arguments = steps.pop(0)
            channel.queue_declare(name, durable=True, arguments=arguments, callback=next_step)

        next_step()

    def _on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        self._returned.add(properties.message_id)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if method.multiple:
            # Tags rise in insertion order: stop at the first one past the confirm.
            tags = list(takewhile(lambda t: t <= method.delivery_tag, self._unconfirmed))
        else:
            tags = [method.delivery_tag]
        confirmed: list[int] = []
        refused: list[tuple[int, str]] = []
        for tag in tags:
            item = self._unconfirmed.pop(tag, None)
            if item is None:
                continue
            if item.message_id in self._returned:
                self._returned.discard(item.message_id)
                refused.append(
                    (
                        item.log_id,
                        f"RabbitMQ could not route the message for "
                        f"{item.task}: no queue is bound to receive it.",
                    )
                )
            elif isinstance(method, spec.Basic.Ack):
                confirmed.append(item.log_id)
            else:
                refused.append(
                    (
                        item.log_id,
                        f"RabbitMQ refused the message for {item.task} "
                        "(negative publisher confirm).",
                    )
                )
        if confirmed:
            self.on_confirmed(confirmed)
        if refused:
            self.on_refused(refused)
        with self._lock:
            self._settled.notify_all()
