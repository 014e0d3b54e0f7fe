"""A running task's log in a real browser: its first lines on the detail page, a later
line without a reload, and the page's polling ending with the task."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import MONITOR, log_in, wait_for_htmx
from tests.harness import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE = 20_000  # ms: a line reaches the page within an interval, a round and a poll


@pytest.mark.slow  # ~12 s of waiting for flushes and polls; the integration tier covers it
def test_a_running_tasks_log_grows_without_a_reload(
    page: Any, staff: Any, worker_factory: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    from carrot.models import MessageLog
    from tests.testapp.tasks import log_until_released

    markers = tmp_path / "markers"
    markers.mkdir()
    worker_factory("--no-scheduler", CARROT_TEST_MARKER_DIR=str(markers)).wait_ready()
    log = log_until_released.delay("browser", lines=2)
    wait_until(
        lambda: MessageLog.objects.get(pk=log.pk).status == MessageLog.IN_PROGRESS,
        15,
        message="the task to start",
    )

    url = f"{MONITOR}task/{log.uuid}/"
    log_in(page, url)
    wait_for_htmx(page)
    page.evaluate("window.__sameDocument = true")
    status = page.locator("#task-detail .detail-actions .status")
    expect(status).to_have_text("In progress")
    lines = page.locator("#task-log .log-message")
    expect(lines).to_have_text(["browser line 1", "browser line 2"], timeout=LIVE)
    expect(page.locator("#task-detail h2", has_text="Log").locator(".badge")).to_have_text("live")

    (markers / "release-browser").touch()
    expect(lines).to_have_text(
        ["browser line 1", "browser line 2", "browser released"], timeout=LIVE
    )
    expect(page.locator("#task-log .level-warning")).to_have_count(1)
    assert page.evaluate("window.__sameDocument") is True  # no reload: the same document
    assert MessageLog.objects.get(pk=log.pk).status == MessageLog.IN_PROGRESS

    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if str(log.uuid) in r.url else None)
    (markers / "finish-browser").touch()
    expect(status).to_have_text("Completed", timeout=LIVE)
    expect(lines).to_have_count(3)
    expect(page.locator("#task-detail h2 .badge")).to_have_count(0)
    seen = len(polls)
    page.wait_for_timeout(4_500)  # two polling periods: none comes any more
    assert len(polls) == seen, polls
    assert re.search(r"seen=IN_PROGRESS", polls[-1]), polls
    assert page.evaluate("window.__sameDocument") is True
