"""The seed's objects (``Message``, ``VirtualHost``, serializers), over the new modules.

Prefer ``my_task.delay()``; these keep code written for django-carrot 1.x working.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from carrot.broker.connection import connect
from carrot.broker.topology import declare_queue
from carrot.conf import BrokerConfig, QueueConfig, get_config, parse_broker
from carrot.messages import APP_ID, CONTENT_TYPE, decode_body
from carrot.registry import registry

__all__ = ["BaseMessageSerializer", "DefaultMessageSerializer", "Message", "VirtualHost"]


class VirtualHost:
    """A RabbitMQ virtual host, given as a URL or as parts."""

    def __init__(
        self,
        url: str | None = None,
        host: str = "localhost",
        name: str = "%2f",
        port: int = 5672,
        username: str = "guest",
        password: str = "guest",  # noqa: S107  (RabbitMQ's default user, as in the seed)
        secure: bool = False,
    ) -> None:
        if url is None:
            url = "{}://{}:{}@{}:{}/{}".format(
                "amqps" if secure else "amqp",
                quote(username, safe=""),
                quote(password, safe=""),
                host,
                port,
                name,
            )
        self.broker: BrokerConfig = parse_broker(url)
        self.url = url
        self.host = self.broker.host
        self.port = self.broker.port
        self.name = self.broker.vhost
        self.username = self.broker.username
        self.password = self.broker.password
        self.secure = self.broker.secure

    def __str__(self) -> str:
        return self.broker.display_url

    @property
    def blocking_connection(self) -> Any:
        """Connect to the virtual host and return the (pika) blocking connection."""
        return connect(self.broker, get_config(), heartbeat=None, name="carrot", doing="connect")


class BaseMessageSerializer:
    """Turn a Message into the body and properties sent to RabbitMQ, and back."""

    type_header = "type"

    def __init__(self, message: Message | None = None) -> None:
        self.message = message

    def body(self) -> dict[str, Any]:
        """Return the message body: ``{"args": [...], "kwargs": {...}}``."""
        assert self.message is not None
        return {"args": list(self.message.task_args), "kwargs": dict(self.message.task_kwargs)}

    def properties(self) -> dict[str, Any]:
        """Return the message properties."""
        assert self.message is not None
        return {
            "content_type": CONTENT_TYPE,
            "priority": self.message.priority,
            "message_id": str(self.message.uuid) if self.message.uuid else None,
            "type": self.message.task,
            "app_id": APP_ID,
        }

    def publish_kwargs(self) -> dict[str, Any]:
        """Return the exchange, routing key and body."""
        assert self.message is not None
        return {
            "exchange": self.message.exchange,
            "routing_key": self.message.routing_key,
            "body": json.dumps(self.body()),
        }

    def serialize_arguments(self, body: str | bytes) -> tuple[list[Any], dict[str, Any]]:
        """Return the (args, kwargs) in a JSON message body."""
        raw = body.encode() if isinstance(body, str) else body
        return decode_body(raw, max_bytes=get_config().max_message_bytes)

    def get_task(self, properties: Any, body: Any) -> Any:
        """Return the registered task a message names (never imported by name)."""
        return registry[getattr(properties, self.type_header)]


class DefaultMessageSerializer(BaseMessageSerializer):
    """The serializer carrot uses."""


class Message:
    """A task call to publish; ``publish()`` records and sends it."""

    def __init__(
        self,
        task: str,
        virtual_host: VirtualHost | None = None,
        queue: str = "default",
        routing_key: str | None = None,
        exchange: str = "",
        priority: int = 0,
        task_args: tuple[Any, ...] | list[Any] = (),
        task_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.task = task
        self.virtual_host = virtual_host
        self.queue = queue or "default"
        self.routing_key = routing_key or self.queue
        self.exchange = exchange or ""
        self.priority = priority
        self.task_args = tuple(task_args)
        self.task_kwargs = dict(task_kwargs or {})
        self.uuid: Any = None
        self.serializer = DefaultMessageSerializer(self)

    def _queue_config(self) -> QueueConfig:
        queue = get_config().queue(self.queue)
        if self.virtual_host is not None and self.virtual_host.broker != queue.broker:
            return replace(queue, broker=self.virtual_host.broker)
        return queue

    @property
    def connection_channel(self) -> tuple[Any, Any]:
        """Declare the queue and return (connection, channel) of the virtual host."""
        queue = self._queue_config()
        connection = connect(
            queue.broker, get_config(), heartbeat=None, name="carrot", doing="open a channel"
        )
        channel = connection.channel()
        declare_queue(channel, queue)
        return connection, channel

    def publish(self, pika_log_level: int | None = None) -> Any:
        """Record a MessageLog and publish; return the MessageLog."""
        # lazy: like the seed's, this module is importable before Django has loaded the models.
        from carrot.publishing.enqueue import enqueue

        log = enqueue(
            self.task,
            list(self.task_args),
            self.task_kwargs,
            queue=self.queue,
            priority=self.priority,
            exchange=self.exchange,
            routing_key=self.routing_key,
            who=f"Message({self.task!r}).publish()",
            queue_config=self._queue_config(),
        )
        self.uuid = log.uuid
        return log
