"""A message on its way out, and how its sender learns what became of it.

``Outgoing`` is what every publisher in carrot hands to the relay: a task's row being
published (``carrot.models.handover``) or a delivery the worker sends on to a delay queue.
Its ``sink`` hears, on the relay's I/O thread, which messages RabbitMQ confirmed and
which it refused; a ``Receipt`` lets one caller wait for its own message.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import pika

from carrot.broker.topology import Route, route
from carrot.conf import QueueConfig
from carrot.messages import APP_ID, CONTENT_TYPE


class Sink(Protocol):
    """Told what became of messages; called on the relay's I/O thread, so it must not block."""

    def confirmed(self, items: list[Outgoing]) -> None: ...

    def refused(self, items: list[tuple[Outgoing, str]]) -> None: ...


class Receipt:
    """Wait for one message's confirm (``refused`` is None) or refusal (the reason)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.refused: str | None = None

    def settle(self, refused: str | None) -> None:
        self.refused = refused
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """Return True once the broker answered, False if ``timeout`` passed first."""
        return self._event.wait(timeout)


@dataclass(eq=False)
class Outgoing:
    """One persistent message for the relay. ``ref`` is the sink's own handle on it."""

    message_id: str
    task: str
    body: bytes
    priority: int
    queue: QueueConfig
    exchange: str = ""
    routing_key: str = ""
    headers: dict[str, Any] | None = None
    delay: float | None = None  # seconds before it may run; see topology.route
    ref: Any = None
    sink: Sink | None = None
    receipt: Receipt | None = None
    sent: float = 0.0  # time.monotonic() when the relay published it (confirm latency)
    route: Route = field(init=False)

    def __post_init__(self) -> None:
        self.route = route(
            self.queue, exchange=self.exchange, routing_key=self.routing_key, delay=self.delay
        )


def properties(item: Outgoing) -> pika.BasicProperties:
    """Return the AMQP properties of a carrot message (the one place they are built)."""
    return pika.BasicProperties(
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


def notify(confirmed: list[Outgoing], refused: list[tuple[Outgoing, str]]) -> None:
    """Tell each message's receipt, then each sink once, what became of the messages."""
    for item in confirmed:
        if item.receipt is not None:
            item.receipt.settle(None)
    for item, reason in refused:
        if item.receipt is not None:
            item.receipt.settle(reason)
    sinks: dict[int, tuple[Sink, list[Outgoing], list[tuple[Outgoing, str]]]] = {}
    for item in confirmed:
        if item.sink is not None:
            sinks.setdefault(id(item.sink), (item.sink, [], []))[1].append(item)
    for item, reason in refused:
        if item.sink is not None:
            sinks.setdefault(id(item.sink), (item.sink, [], []))[2].append((item, reason))
    for sink, ok, bad in sinks.values():
        if ok:
            sink.confirmed(ok)
        if bad:
            sink.refused(bad)
