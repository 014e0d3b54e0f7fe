"""Publishing with confirms over one reused connection per thread."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions as pex

from carrot.broker.connection import (
    _describe,
    connect,
    declare_delay_queue,
    declare_queue,
    delay_bucket,
    delay_queue_name,
    unavailable,
)
from carrot.conf import BrokerConfig, CarrotConfig, QueueConfig
from carrot.exceptions import BrokerUnavailable, PublishError, PublishUncertain, QueueMismatch
from carrot.messages import APP_ID, CONTENT_TYPE

logger = logging.getLogger(__name__)


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
            except QueueMismatch:
                self._drop(broker)
                raise
            except pex.ChannelClosedByBroker as exc:  # e.g. 403: the user may not declare it
                self._drop(broker)
                raise PublishError(f"Cannot publish {task}: {_describe(exc)}.") from exc
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
