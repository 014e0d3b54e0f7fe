"""The integration tier: the real broker (a vhost of its own), real databases, real workers."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _broker(rabbit_vhost: str) -> str:
    """Every test here needs RabbitMQ: fail the run, saying how to start it, without it."""
    return rabbit_vhost
