"""Connections: parameters, connecting, and pika errors described in plain words."""

from __future__ import annotations

import os
import socket
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions as pex

from carrot.conf import BrokerConfig, CarrotConfig
from carrot.exceptions import BrokerUnavailable

START_HINT = (
    "Start RabbitMQ with `rabbitmq-server -detached` (or `sudo systemctl start "
    "rabbitmq-server`), or point CARROT['default_broker'] at a running broker."
)


def describe(exc: BaseException) -> str:
    """Return a short human description of a pika exception."""
    if isinstance(exc, pex.ProbableAuthenticationError | pex.AuthenticationError):
        return (
            "the broker refused the username or password "
            "(note: 'guest' may only connect from localhost)"
        )
    if isinstance(exc, pex.ProbableAccessDeniedError):
        return "the virtual host does not exist or the user may not use it"
    inner = getattr(exc, "exception", None)  # pika's connector errors wrap the socket error
    if isinstance(inner, BaseException):
        return describe(inner)
    attempts = getattr(exc, "exceptions", None)  # AMQPConnectionWorkflowFailed
    if attempts and isinstance(attempts[-1], BaseException):
        return describe(attempts[-1])
    if isinstance(exc, pex.AMQPConnectionError) and exc.args:
        inner = exc.args[0]
        if isinstance(inner, BaseException):
            return describe(inner)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc})"
    if isinstance(exc, pex.ConnectionClosedByBroker):
        return f"the broker closed the connection ({exc.reply_code} {exc.reply_text})"
    if isinstance(exc, pex.ChannelClosedByBroker):
        return f"the broker closed the channel ({exc.reply_code} {exc.reply_text})"
    if isinstance(exc, pex.StreamLostError):
        return "the connection was lost"
    text = str(exc) or type(exc).__name__
    return text


def blocked_message(broker: BrokerConfig) -> str:
    return (
        f"Cannot publish: RabbitMQ at {broker.display_url} is blocking publishers (a memory "
        "or disk alarm is active on the broker). Free memory or disk on the RabbitMQ host."
    )


def unavailable(broker: BrokerConfig, exc: BaseException | str, doing: str) -> BrokerUnavailable:
    """Return a BrokerUnavailable that says what failed, where, and how to fix it."""
    reason = exc if isinstance(exc, str) else describe(exc)
    hint = START_HINT if "refused" in reason or "timed out" in reason.lower() else ""
    message = f"Cannot {doing}: RabbitMQ at {broker.display_url} is unavailable ({reason})."
    return BrokerUnavailable(f"{message} {hint}".strip())


def connection_parameters(
    broker: BrokerConfig, config: CarrotConfig, *, heartbeat: int | None, name: str
) -> pika.URLParameters:
    """Return pika parameters with carrot's timeouts, unless the URL sets them itself."""
    params = pika.URLParameters(broker.url)
    query = parse_qs(urlsplit(broker.url).query)
    if "heartbeat" not in query and heartbeat is not None:
        params.heartbeat = heartbeat
    if "blocked_connection_timeout" not in query:
        # Without it a publish during a memory or disk alarm blocks forever.
        params.blocked_connection_timeout = config.publish_timeout
    if "socket_timeout" not in query:
        params.socket_timeout = config.connect_timeout
    if "stack_timeout" not in query:
        params.stack_timeout = config.connect_timeout * 2
    if "connection_attempts" not in query:
        params.connection_attempts = 1
    params.client_properties = {
        "product": "django-carrot",
        "connection_name": f"{name} pid={os.getpid()}",
    }
    return params


def connect(
    broker: BrokerConfig,
    config: CarrotConfig,
    *,
    heartbeat: int | None,
    name: str,
    doing: str,
    impl: type[pika.SelectConnection] | None = None,
) -> pika.BlockingConnection:
    """Open a blocking connection; raise BrokerUnavailable with the reason.

    ``impl`` replaces pika's SelectConnection underneath (a consumer's reads frames
    through ``decoding.TolerantConnection``).
    """
    try:
        return pika.BlockingConnection(
            connection_parameters(broker, config, heartbeat=heartbeat, name=name),
            _impl_class=impl,
        )
    except (pex.AMQPError, OSError) as exc:
        raise unavailable(broker, exc, doing) from exc


def check_connection(broker: BrokerConfig, config: CarrotConfig) -> None:
    """Connect and disconnect once; raise BrokerUnavailable if that fails."""
    close_quietly(connect(broker, config, heartbeat=None, name="carrot-check", doing="connect"))


def close_quietly(connection: pika.BlockingConnection) -> None:
    """Close a blocking connection, ignoring a connection that is already gone."""
    if connection.is_open:
        try:
            connection.close()
        except (pex.AMQPError, OSError):
            pass
