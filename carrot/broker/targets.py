"""What the relay has declared on its channel, is declaring, and the targets RabbitMQ
refused.

A refused declaration (a queue declared with other arguments, a queue the user may not
configure, an exchange that does not exist) refuses the messages for that target with the
broker's reason for ``RETRY_AFTER`` seconds, then the declaration is tried again, so a
queue an operator fixes is used again without a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from carrot.broker.connection import describe
from carrot.broker.topology import Declaration, Route
from carrot.conf import BrokerConfig


def refusal_of(declaration: Declaration, reason: Any, broker: BrokerConfig) -> str:
    """Say why messages cannot be published to a target the broker refused to declare."""
    code = getattr(reason, "reply_code", None)
    if declaration.exchange and code == 404:
        return f"the exchange {declaration.name!r} does not exist on {broker.display_url}"
    if code == 406:
        return (
            f"queue {declaration.name!r} exists on {broker.display_url} with other arguments "
            f"than carrot declares ({reason.reply_text}); drain and delete it "
            f"(`rabbitmqctl delete_queue {declaration.name}`) or make CARROT['queues'] match it"
        )
    return f"RabbitMQ refused to declare {declaration.key} ({describe(reason)})"


class Targets:
    """Declarations done on the current channel (I/O thread) and recent refusals (any)."""

    RETRY_AFTER = 30.0  # seconds

    def __init__(self, broker: BrokerConfig) -> None:
        self.broker = broker
        self.declaring: Declaration | None = None  # its failure closes the channel
        self._declared: set[str] = set()
        self._refused: dict[str, tuple[str, float]] = {}  # key -> (why, when)
        self._lock = threading.Lock()

    def new_channel(self) -> None:
        """A new channel has declared nothing yet."""
        self._declared.clear()
        self.declaring = None

    def declare(self, channel: Any, declaration: Declaration, then: Callable[[], None]) -> None:
        """Declare on the relay's channel (its I/O thread), one at a time, then call
        ``then``. A refusal closes the channel instead (see ``Relay._on_channel_closed``)."""
        if self.declaring is not None:
            return  # its callback goes on

        def done(_frame: Any) -> None:
            self.declaring = None
            self.declared(declaration)
            then()

        self.declaring = declaration
        if declaration.exchange:
            channel.exchange_declare(declaration.name, passive=True, callback=done)
        else:
            channel.queue_declare(
                declaration.name, durable=True, arguments=declaration.arguments, callback=done
            )

    def prime(self, channel: Any, todo: list[Declaration], then: Callable[[], None]) -> None:
        """Declare ``todo`` in turn (skipping targets refused moments ago), then call
        ``then``."""
        while todo and self.refused_recently(todo[0]):
            todo = todo[1:]
        if not todo:
            then()
        elif channel is not None and channel.is_open:
            self.declare(channel, todo[0], then=lambda: self.prime(channel, todo[1:], then))

    def missing(self, route: Route) -> list[Declaration]:
        return [d for d in route.declarations if d.key not in self._declared]

    def declared(self, declaration: Declaration) -> None:
        self._declared.add(declaration.key)
        with self._lock:
            self._refused.pop(declaration.key, None)

    def refused(self, declaration: Declaration, reason: Any) -> str:
        """Remember that the broker refused ``declaration``; return why, in words."""
        why = refusal_of(declaration, reason, self.broker)
        with self._lock:
            self._refused[declaration.key] = (why, time.monotonic())
        return why

    def refused_recently(self, declaration: Declaration) -> bool:
        with self._lock:
            refused = self._refused.get(declaration.key)
        return refused is not None and time.monotonic() - refused[1] < self.RETRY_AFTER

    def refusal(self, route: Route) -> str | None:
        """Return why messages on ``route`` are refused now, or None."""
        now = time.monotonic()
        with self._lock:
            for declaration in route.declarations:
                refused = self._refused.get(declaration.key)
                if refused is not None and now - refused[1] < self.RETRY_AFTER:
                    return refused[0]
        return None
