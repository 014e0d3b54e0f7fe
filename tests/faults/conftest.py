"""The faults tier: private RabbitMQ nodes and databases that tests stop, block and break."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _broker(rabbit_vhost: str) -> str:
    """Every test here needs RabbitMQ: fail the run, saying how to start it, without it."""
    return rabbit_vhost
