"""The browser tier: Playwright driving Debian's Chromium against a live server."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def _broker(rabbit_vhost: str) -> str:
    """Every test here needs RabbitMQ: fail the run, saying how to start it, without it."""
    return rabbit_vhost
