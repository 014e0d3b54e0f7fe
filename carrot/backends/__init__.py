"""A backend for Django's task framework: ``carrot.backends.RabbitMQBackend``.

``RabbitMQBackend`` is loaded on first use, so that ``carrot.backends.compat`` (which the
models use) can be imported without the backend and what it imports.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RabbitMQBackend"]


def __getattr__(name: str) -> Any:
    if name == "RabbitMQBackend":
        # lazy: the backend imports the publishing pipeline, which imports the models.
        from carrot.backends.rabbitmq import RabbitMQBackend

        return RabbitMQBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
