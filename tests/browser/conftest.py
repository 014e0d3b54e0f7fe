"""The browser tier: Playwright driving Debian's Chromium against a live server.

Each test logs in through the admin login page as a staff superuser (``log_in``), then
drives the monitor served by pytest-django's ``live_server`` against the real database
and RabbitMQ.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session", autouse=True)
def _broker(rabbit_vhost: str) -> str:
    """Every test here needs RabbitMQ: fail the run, saying how to start it, without it."""
    return rabbit_vhost


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_HELP = (
    f"Chromium is not installed at {CHROMIUM}; the browser tests need it. "
    "Install it with `apt-get install -y chromium`."
)
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TIMEOUT = 10_000  # ms, for every auto-waiting assertion
MONITOR = "/ops/carrot/"
USERNAME, PASSWORD = "operator", "correct horse battery staple"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (never downloaded: Debian's package)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(CHROMIUM_HELP, pytrace=False)
    from playwright.sync_api import Error, sync_playwright

    # Playwright's sync API keeps an event loop in this thread; Django's ORM refuses to
    # run where a loop is running unless told it is safe (it is: nothing else uses it).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            try:
                chromium = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            except Error as exc:
                pytest.fail(f"{CHROMIUM_HELP}\nLaunching it failed: {exc}", pytrace=False)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    """A fresh context and page per test, with a base URL on the live server."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT)
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def staff(live_server: Any) -> Any:
    from django.contrib.auth.models import User

    return User.objects.create_superuser(USERNAME, "ops@example.com", PASSWORD)


def log_in(page: Any, next_url: str = MONITOR) -> None:
    """Log in through the admin login page and land on ``next_url``."""
    from playwright.sync_api import expect

    page.goto(f"/admin/login/?next={next_url}")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.locator("#login-form [type=submit]").click()
    page.wait_for_url(re.compile(re.escape(next_url)))
    expect(page.locator("#tabs")).to_be_visible()


def wait_for_htmx(page: Any) -> None:
    """Wait until htmx (served by the monitor itself) has loaded and processed the page."""
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")
