"""What the relay has declared on its channel, and the targets RabbitMQ refused.

A refused declaration (a queue declared with other arguments, a queue the user may not
configure, an exchange that does not exist) refuses the messages for that target with the
broker's reason for ``RETRY_AFTER`` seconds, then the declaration is tried again, so a
queue an operator fixes is used again without a restart.
"""

from __future__ import annotations

import threading
import time
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
        self._declared: set[str] = set()
        self._refused: dict[str, tuple[str, float]] = {}  # key -> (why, when)
        self._lock = threading.Lock()

    def new_channel(self) -> None:
        """A new channel has declared nothing yet."""
        self._declared.clear()

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

    def refusal(self, route: Route) -> str | None:
        """Return why messages on ``route`` are refused now, or None."""
        now = time.monotonic()
        with self._lock:
            for declaration in route.declarations:
                refused = self._refused.get(declaration.key)
                if refused is not None and now - refused[1] < self.RETRY_AFTER:
                    return refused[0]
        return None
