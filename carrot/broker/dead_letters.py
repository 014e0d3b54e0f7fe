"""Reading and settling the messages in a work queue's dead-letter queue (``<name>.dlq``).

RabbitMQ has no way to look at a queue without taking its messages, so browsing takes
them with ``basic.get`` and no ack, and closing the connection puts every one of them
back where it was (a classic queue keeps their order). An action takes messages the same
way until it finds the one it wants, acks exactly that one and returns the rest. While a
browse holds messages, another browse or action does not see them: both are short.

Frames are read through ``TolerantConnection``, so a message whose headers pika cannot
decode is listed (with its defect) instead of breaking the connection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pika.exceptions as pex

from carrot.broker.connection import close_quietly, connect, unavailable
from carrot.broker.consuming import Delivery
from carrot.broker.decoding import TolerantConnection
from carrot.conf import CarrotConfig, QueueConfig

# How far an action looks into a dead-letter queue for its message; a page never shows
# messages beyond it.
SCAN_LIMIT = 1000


@dataclass(frozen=True)
class Death:
    """One entry of RabbitMQ's ``x-death`` header: why and when a queue dead-lettered it."""

    reason: str
    queue: str
    time: datetime | None
    count: int


@dataclass(frozen=True)
class DeadLetter:
    """A message in a dead-letter queue, without pika types.

    ``key`` identifies it between a page view and an action (its id, name, timestamp and
    body hashed: a message without a usable ``message_id`` needs one too); ``delivery`` is
    the message as a worker's gate would see it from the work queue.
    """

    key: str
    position: int  # 1 = the head of the dead-letter queue
    delivery: Delivery
    deaths: tuple[Death, ...]

    @property
    def death(self) -> Death | None:
        """Return the latest dead-lettering (RabbitMQ puts it first)."""
        return self.deaths[0] if self.deaths else None


@dataclass(frozen=True)
class Browsed:
    """What one look at a dead-letter queue found."""

    queue: QueueConfig
    letters: list[DeadLetter]
    start: int  # how many messages before the first one listed were skipped
    waiting: int  # messages in the dead-letter queue (ready, or held by this look)
    exists: bool = True  # False: RabbitMQ has no such queue (nothing was dead-lettered)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _deaths(headers: dict[str, Any]) -> tuple[Death, ...]:
    out = []
    entries = headers.get("x-death")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        when = entry.get("time")
        count = entry.get("count")
        out.append(
            Death(
                reason=_text(entry.get("reason")),
                queue=_text(entry.get("queue")),
                time=when if isinstance(when, datetime) else None,
                count=count if isinstance(count, int) and not isinstance(count, bool) else 0,
            )
        )
    return tuple(out)


def message_key(properties: Any, body: bytes) -> str:
    """Return the key that finds this message again (stable while it is dead-lettered)."""
    identity = repr(
        tuple(
            getattr(properties, name, None)
            for name in ("message_id", "type", "timestamp", "app_id", "content_type")
        )
    )
    return hashlib.sha256(identity.encode("utf-8", "replace") + b"\0" + body).hexdigest()[:32]


def _letter(
    queue: QueueConfig, method: Any, properties: Any, body: bytes, pos: int, keep: int
) -> DeadLetter:
    """Return the message as a DeadLetter. A body longer than ``keep`` (over the size a
    worker accepts, so it can never be re-driven) keeps only its first ``keep`` bytes: a
    page of huge dead letters must not hold them all in memory."""
    key = message_key(properties, body)
    # The work queue it came from and would go back to; not a consumer's delivery.
    delivery = Delivery.received(method, properties, body[:keep], queue=queue.name, generation=0)
    return DeadLetter(key, pos, delivery, _deaths(delivery.headers))


def _connect(queue: QueueConfig, config: CarrotConfig, doing: str) -> Any:
    return connect(
        queue.broker,
        config,
        heartbeat=None,
        name="carrot-dead-letters",
        doing=doing,
        impl=TolerantConnection,
    )


def _depth(connection: Any, name: str) -> int | None:
    """Return the ready messages of a queue, None if it does not exist (passive: a look
    declares nothing)."""
    channel = connection.channel()
    try:
        count = channel.queue_declare(name, passive=True).method.message_count
    except pex.ChannelClosedByBroker as exc:
        if exc.reply_code == 404:
            return None
        raise
    channel.close()
    return int(count)


def browse(
    queues: list[QueueConfig], config: CarrotConfig, *, start: int = 0, limit: int = 100
) -> list[Browsed]:
    """Return up to ``limit`` messages after the first ``start`` of each queue's
    dead-letter queue, all of them left in place. The queues must share one broker.

    Raises BrokerUnavailable when the broker cannot be reached.
    """
    if not queues:
        return []
    start = max(0, min(start, SCAN_LIMIT - limit))
    connection = _connect(queues[0], config, "read the dead-letter queues")
    out = []
    try:
        for queue in queues:
            name = queue.dead_letter_queue
            if _depth(connection, name) is None:
                out.append(Browsed(queue, [], start, 0, exists=False))
                continue
            channel = connection.channel()  # its unacked messages return when it closes
            letters, taken = [], 0
            while taken < start + limit:
                method, properties, body = channel.basic_get(name, auto_ack=False)
                if method is None:
                    break
                taken += 1
                if taken > start:
                    keep = config.max_message_bytes + 1
                    letters.append(_letter(queue, method, properties, body, taken, keep))
            rest = _depth(connection, name) or 0
            channel.close()
            out.append(Browsed(queue, letters, start, taken + rest))
        return out
    except pex.AMQPError as exc:
        raise unavailable(queues[0].broker, exc, "read the dead-letter queues") from exc
    finally:
        close_quietly(connection)


@dataclass
class Held:
    """Messages taken from a dead-letter queue and held unacked until ``holding`` ends;
    ``ack`` removes one for good, the others go back."""

    queue: QueueConfig
    channel: Any
    letters: list[DeadLetter] = field(default_factory=list)
    keep: int = 0  # bytes of a body kept (see _letter)
    scanned: int = 0
    complete: bool = False  # the whole queue was looked at

    def ack(self, letter: DeadLetter) -> None:
        """Remove ``letter`` from the dead-letter queue; raise BrokerUnavailable if the
        broker is gone (the message then stays in the queue)."""
        try:
            self.channel.basic_ack(letter.delivery.tag)
        except pex.AMQPError as exc:
            raise unavailable(
                self.queue.broker, exc, f"remove a message from {self.queue.dead_letter_queue!r}"
            ) from exc


@contextmanager
def holding(
    queue: QueueConfig,
    config: CarrotConfig,
    wanted: Callable[[DeadLetter], bool],
    *,
    first: bool = True,
    scan: int = SCAN_LIMIT,
) -> Iterator[Held]:
    """Take messages from the dead-letter queue until ``wanted`` picked one (or every one,
    without ``first``) within ``scan`` messages; hold them while the block runs.

    Whatever the block does not ack goes back to the queue when it ends. Raises
    BrokerUnavailable when the broker cannot be reached.
    """
    doing = f"read {queue.dead_letter_queue!r}"
    connection = _connect(queue, config, doing)
    try:
        try:
            channel = connection.channel()
            held = Held(queue, channel, keep=config.max_message_bytes + 1)
            if _depth(connection, queue.dead_letter_queue) is None:
                held.complete = True
            else:
                _scan(held, wanted, first, scan)
        except pex.AMQPError as exc:
            raise unavailable(queue.broker, exc, doing) from exc
        yield held
    finally:
        close_quietly(connection)  # the broker returns the unacked messages


def _scan(held: Held, wanted: Callable[[DeadLetter], bool], first: bool, scan: int) -> None:
    name = held.queue.dead_letter_queue
    while held.scanned < scan:
        method, properties, body = held.channel.basic_get(name, auto_ack=False)
        if method is None:
            held.complete = True
            return
        held.scanned += 1
        letter = _letter(held.queue, method, properties, body, held.scanned, held.keep)
        if wanted(letter):
            held.letters.append(letter)
            if first:
                return
