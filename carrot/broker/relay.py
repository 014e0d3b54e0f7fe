"""The relay: the one publisher. A thread per broker and process publishes with pipelined
publisher confirms on an asynchronous pika connection.

Senders hand over ``Outgoing`` messages from any thread and return at once; the relay
declares what each message's route needs, publishes persistent messages (``mandatory``,
so an unroutable one is refused, not dropped) and tells each message's sink which were
confirmed and which refused. A message not confirmed when the connection breaks is
published again after the reconnect (a worker skips a copy whose task already ran).

Faults stay with the messages that cause them: a target RabbitMQ refuses to declare
refuses its own messages (``targets``) and the others keep publishing; a channel the
broker closes while messages were in flight is reopened, and those messages are then
published one at a time until the one that closes it again is found and refused.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from itertools import takewhile
from typing import Any

import pika
import pika.exceptions as pex
from pika import spec

from carrot.broker.connection import blocked_message, connection_parameters, describe, unavailable
from carrot.broker.outgoing import Outgoing, notify, properties
from carrot.broker.targets import Targets
from carrot.broker.topology import Route, queue_declarations
from carrot.conf import BrokerConfig, CarrotConfig
from carrot.exceptions import BrokerUnavailable, PublishError
from carrot.observability import metrics

logger = logging.getLogger(__name__)


class Relay:
    """Publish messages handed over by any thread, from one I/O thread of its own."""

    def __init__(self, broker: BrokerConfig, config: CarrotConfig) -> None:
        self.broker = broker
        self.config = config
        self._lock = threading.Lock()
        self._pending: deque[Outgoing] = deque()
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._settled = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._flush_scheduled = False
        self._connection: Any = None
        self._channel: Any = None
        self.targets = Targets(broker)
        # Owned by the I/O thread:
        self._reached_ready = False
        self._connected_before = False  # a later connection is a reconnect (metrics)
        self._label = f"{broker.host}:{broker.port}"  # the metrics' broker label
        self._unconfirmed: dict[int, Outgoing] = {}
        self._returned: set[str] = set()
        self._probe = 0  # messages still to publish one at a time (see the docstring)
        self._tag = 0
        self.blocked = False
        self.down_since: float | None = None
        self.last_error = ""
        self._last_attempt = 0.0  # when the last connection attempt ended
        self._attempts_done = 0

    # ------------------------------------------------------------------ any thread

    @property
    def is_ready(self) -> bool:
        """Return True while connected, in confirm mode and not blocked."""
        return self._ready.is_set() and not self.blocked

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._run, name=f"carrot-relay-{self.broker.host}", daemon=True
                )
                self._thread.start()

    def ensure_ready(self, timeout: float, routes: tuple[Route, ...] = ()) -> None:
        """Raise unless the relay can publish now (connecting if needed).

        BrokerUnavailable: not connected, or blocked by an alarm. PublishError: the broker
        refused one of ``routes`` moments ago.
        """
        self.start()
        if self.blocked:
            raise BrokerUnavailable(blocked_message(self.broker))
        if not self._ready.is_set():
            self._connect_now(timeout)
        if not self._ready.is_set():
            raise unavailable(self.broker, self.last_error or "not connected", "publish")
        for route in routes:
            reason = self.targets.refusal(route)
            if reason is not None:
                raise PublishError(f"Cannot publish: {reason}.")

    def _connect_now(self, timeout: float) -> None:
        seen = self._attempts_done
        if self.down_since is None:
            self._wait_for_attempt(seen, timeout)  # the first connection is in progress
        elif time.monotonic() - self._last_attempt >= 1.0:
            # Down for a while: try again now rather than wait out the reconnect backoff,
            # so a broker that just came back is used at once.
            self._wake.set()
            self._wait_for_attempt(seen, timeout)
        # Otherwise the last attempt failed moments ago: fail fast.

    def _wait_for_attempt(self, seen: int, timeout: float) -> None:
        """Wait until the relay is ready or a connection attempt after ``seen`` ended."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.01):
            if self._attempts_done != seen or time.monotonic() > deadline:
                return

    def submit(self, items: list[Outgoing]) -> None:
        """Queue messages for publishing (returns at once)."""
        self.start()
        with self._lock:
            self._pending.extend(items)
            if metrics.enabled():
                metrics.relay_state(self._label, len(self._pending) + len(self._unconfirmed))
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
        """Close the connection and end the thread (what is not sent stays in the outbox)."""
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

    # ------------------------------------------------------------------ connection

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
                on_open_callback=self._open_channel,
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

    def _on_open_error(self, connection: Any, error: BaseException) -> None:
        self._mark_down(error)
        connection.ioloop.stop()

    def _on_close(self, connection: Any, reason: BaseException) -> None:
        self._mark_down(reason)
        self._channel = None
        self._requeue_unconfirmed()
        connection.ioloop.stop()

    def _requeue_unconfirmed(self) -> int:
        # Unconfirmed messages may or may not have reached the broker: send them again
        # (a worker skips a duplicate id).
        count = len(self._unconfirmed)
        with self._lock:
            self._pending.extendleft(reversed(list(self._unconfirmed.values())))
            self._settled.notify_all()
        self._unconfirmed.clear()
        self._returned.clear()
        return count

    def _mark_down(self, error: BaseException) -> None:
        self._last_attempt = time.monotonic()
        self._attempts_done += 1
        self._ready.clear()
        self.blocked = False
        if self.down_since is None:
            self.down_since = time.monotonic()
        if not self._stopping:
            self.last_error = describe(error)
            logger.warning("Relay to %s is down: %s", self.broker.display_url, self.last_error)

    def _on_blocked(self, _connection: Any, _frame: Any) -> None:
        self.blocked = True
        logger.warning(
            "RabbitMQ at %s is blocking publishers (memory or disk alarm)", self.broker.display_url
        )

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        self.blocked = False
        self._flush()  # what waited during the alarm goes out now, not with the next delay()

    # ------------------------------------------------------------------ channel

    def _open_channel(self, connection: Any) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: Any) -> None:
        self._channel = channel
        self.targets.new_channel()
        self._tag = 0
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame: Any) -> None:
        # Every configured queue of this broker is declared before anything is published,
        # so a queue RabbitMQ refuses is known (and logged) at once, not at its first use.
        startup = [
            declaration
            for queue in self.config.queues
            if queue.broker.key == self.broker.key
            for declaration in queue_declarations(queue)
        ]
        self.targets.prime(self._channel, startup, then=self._become_ready)

    def _become_ready(self) -> None:
        if self._connected_before:
            metrics.reconnected("publisher")
        self._connected_before = True
        self._reached_ready = True
        self._last_attempt = time.monotonic()
        self._attempts_done += 1
        self.down_since = None
        self.last_error = ""
        self._ready.set()
        self._flush()

    def _on_channel_closed(self, _channel: Any, reason: BaseException) -> None:
        self._channel = None
        connection = self._connection
        if self._stopping or connection is None or not connection.is_open:
            return  # the connection is closing: _on_close takes over
        declaring, self.targets.declaring = self.targets.declaring, None
        if declaring is not None:
            why = self.targets.refused(declaring, reason)
            logger.error("Relay to %s: %s", self.broker.display_url, why)
            self._requeue_unconfirmed()
            self._refuse_pending(lambda item: declaring in item.route.declarations, why)
        else:
            why = describe(reason)
            in_flight = self._requeue_unconfirmed()
            if self._probe and in_flight == 1:
                # Published alone, and the channel closed again: this message is the cause.
                with self._lock:
                    culprit = self._pending.popleft()
                self._probe -= 1
                self._settle([], [(culprit, f"RabbitMQ refused the message ({why})")])
            else:
                self._probe = max(in_flight, 1)
            logger.error("Relay channel to %s closed: %s", self.broker.display_url, why)
        self._open_channel(connection)

    # ------------------------------------------------------------------ publishing

    def _flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False
        channel = self._channel
        while channel is not None and channel.is_open and not self.blocked:
            if self._probe and self._unconfirmed:
                return  # one message at a time until the culprit is found
            with self._lock:
                if not self._pending:
                    return
                item = self._pending.popleft()
            reason = self.targets.refusal(item.route)
            if reason is not None:
                self._settle([], [(item, reason)])
                continue
            missing = self.targets.missing(item.route)
            if missing:
                with self._lock:
                    self._pending.appendleft(item)
                self.targets.declare(channel, missing[0], then=self._flush)
                return
            self._tag += 1
            self._unconfirmed[self._tag] = item
            route = item.route
            item.sent = time.monotonic()
            channel.basic_publish(
                route.exchange, route.routing_key, item.body, properties(item), mandatory=True
            )

    def _refuse_pending(self, matches: Any, reason: str) -> None:
        with self._lock:
            refused = [item for item in self._pending if matches(item)]
            self._pending = deque(item for item in self._pending if not matches(item))
        self._settle([], [(item, reason) for item in refused])

    def _on_return(self, _channel: Any, _method: Any, properties: Any, _body: bytes) -> None:
        self._returned.add(properties.message_id)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if method.multiple:
            # Tags rise in insertion order: stop at the first one past the confirm.
            tags = list(takewhile(lambda t: t <= method.delivery_tag, self._unconfirmed))
        else:
            tags = [method.delivery_tag]
        confirmed: list[Outgoing] = []
        refused: list[tuple[Outgoing, str]] = []
        for tag in tags:
            item = self._unconfirmed.pop(tag, None)
            if item is None:
                continue
            if self._probe:
                self._probe -= 1
            if item.message_id in self._returned:
                self._returned.discard(item.message_id)
                refused.append(
                    (
                        item,
                        f"RabbitMQ could not route the message for {item.task} (exchange "
                        f"{item.route.exchange!r}, routing key {item.route.routing_key!r}): "
                        "no queue is bound to receive it",
                    )
                )
            elif isinstance(method, spec.Basic.Ack):
                confirmed.append(item)
            else:
                refused.append(
                    (item, f"RabbitMQ refused the message for {item.task} (negative confirm)")
                )
        self._settle(confirmed, refused)
        if metrics.enabled():
            now = time.monotonic()
            metrics.confirmed(now - item.sent for item in confirmed)
        if self._probe or not self._unconfirmed:
            self._flush()
        if metrics.enabled():
            metrics.relay_state(self._label, len(self._pending) + len(self._unconfirmed))

    def _settle(self, confirmed: list[Outgoing], refused: list[tuple[Outgoing, str]]) -> None:
        """Tell receipts and sinks what became of messages (on the I/O thread)."""
        try:
            notify(confirmed, refused)
        except Exception:  # a sink's bug must not stop the publisher for everyone
            logger.exception("A relay sink raised; its messages stay in the outbox")
        with self._lock:
            self._settled.notify_all()
