"""A broker in the settings: an AMQP URL, or the seed's dict of parts."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote, urlsplit

from carrot.conf.fields import is_int
from carrot.conf.types import BrokerConfig


def parse_broker(value: Any) -> BrokerConfig:
    """Parse a broker given as an AMQP URL or as the seed's dict; raise ValueError if invalid."""
    if isinstance(value, str):
        return _broker_from_url(value)
    if isinstance(value, dict):
        return _broker_from_dict(value)
    raise ValueError(f"expected an AMQP URL string or a dict, got {type(value).__name__}")


def _broker_from_dict(value: dict[str, Any]) -> BrokerConfig:
    unknown = set(value) - {"host", "port", "name", "username", "password", "secure"}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    secure = bool(value.get("secure", False))
    host = value.get("host", "localhost")
    port = value.get("port", 5671 if secure else 5672)
    if not isinstance(host, str) or not host:
        raise ValueError(f"'host' must be a non-empty string, got {host!r}")
    if not is_int(port) or not 0 < port < 65536:
        raise ValueError(f"'port' must be a port number, got {port!r}")
    vhost = value.get("name") or "/"
    user = value.get("username", "guest")
    password = value.get("password", "guest")
    url = "{}://{}:{}@{}:{}/{}".format(
        "amqps" if secure else "amqp",
        quote(str(user), safe=""),
        quote(str(password), safe=""),
        host,
        port,
        quote(vhost, safe=""),
    )
    return BrokerConfig(url, host, port, vhost, str(user), str(password), secure)


def _broker_from_url(url: str) -> BrokerConfig:
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"expected a URL starting with amqp:// or amqps://, got {url!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid port in {url!r}") from exc
    secure = parts.scheme == "amqps"
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return BrokerConfig(
        url=url,
        host=parts.hostname or "localhost",
        port=port or (5671 if secure else 5672),
        vhost=vhost,
        username=unquote(parts.username) if parts.username else "guest",
        password=unquote(parts.password) if parts.password else "guest",
        secure=secure,
    )
