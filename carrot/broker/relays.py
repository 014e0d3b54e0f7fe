"""This process's relays: one per broker, started on first use, forgotten in a forked
child (it must not share its parent's sockets), flushed when the process exits."""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from carrot.broker.relay import Relay
from carrot.conf import BrokerConfig, CarrotConfig


class Relays:
    """One relay per broker for this process."""

    def __init__(self) -> None:
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._relays: dict[Any, Relay] = {}
        self._config: CarrotConfig | None = None

    def get(self, broker: BrokerConfig, config: CarrotConfig) -> Relay:
        """Return the relay for ``broker``.

        When the settings changed (tests), the relays built from the old ones are stopped:
        what they still held is in the outbox.
        """
        with self._lock:
            if config is not self._config:
                for stale in self._relays.values():
                    stale.stop(0.1)
                self._relays, self._config = {}, config
            relay = self._relays.get(broker.key)
            if relay is None:
                relay = self._relays[broker.key] = Relay(broker, config)
            return relay

    def all(self) -> list[Relay]:
        with self._lock:
            return list(self._relays.values())

    def flush(self, timeout: float) -> bool:
        """Wait until every relay has published what it was given; False on timeout."""
        return all([relay.flush(timeout) for relay in self.all()])

    def stop_all(self, timeout: float = 5.0) -> None:
        """Stop every relay after publishing what it holds (tests, shutdown)."""
        for relay in self.all():
            relay.flush(timeout)
            relay.stop(timeout)
        with self._lock:
            self._relays = {}


relays = Relays()


@atexit.register
def _flush_at_exit() -> None:
    # A script that calls delay() and exits would otherwise leave its last messages to
    # the outbox sweeper (published 30 s later by a worker).
    if relays.all():
        relays.flush(5.0)
