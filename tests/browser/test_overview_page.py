"""The overview and statistics pages in Chromium, with a real worker behind them."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.browser.conftest import MONITOR, log_in, wait_for_htmx
from tests.harness import BrokerClient

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_overview_shows_the_worker_and_the_chart_moves_without_reload(
    page: Any, staff: Any, broker: BrokerClient, worker: Any
) -> None:
    from playwright.sync_api import expect

    from tests.testapp.tasks import add, fail

    log_in(page)  # the monitor's landing page is the overview
    expect(page.locator("main h1")).to_have_text("Overview")
    expect(page.locator('#tabs [aria-current="page"]')).to_contain_text("Overview")
    wait_for_htmx(page)
    row = page.locator(f'tr[data-worker*=":{worker.pid}:"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("default × 2")
    expect(page.locator('[data-total="completed"]')).to_have_text("0 completed")
    page.evaluate("window.__noReload = 1")

    for i in range(3):
        add.delay(i, 1)
    fail.delay("on purpose")

    # The fragment polls every 5 s: the chart's totals and one bar follow.
    expect(page.locator('[data-total="completed"]')).to_have_text("3 completed", timeout=20_000)
    expect(page.locator('[data-total="failed"]')).to_have_text("1 failed")
    # The bars say the same, minute by minute (the tasks may straddle a minute).
    titles = page.locator("svg.chart .minute title").all_text_contents()
    assert len(titles) == 60
    counted = [re.search(r"(\d+) completed, (\d+) failed", t).groups() for t in titles]
    assert [sum(int(c[i]) for c in counted) for i in (0, 1)] == [3, 1]
    assert page.locator("svg.chart rect.bar-completed").count() >= 1
    assert page.evaluate("window.__noReload") == 1, "the page reloaded instead of swapping"
    queue = page.locator('tr[data-queue="default"]')
    expect(queue.locator("[data-consumers]")).to_have_text("1")


def test_statistics_sort_and_window_links(page: Any, staff: Any) -> None:
    from playwright.sync_api import expect

    from carrot.models import MessageLog

    now = timezone.now()
    for task, runs, seconds in (("tests.fast", 3, 0.01), ("tests.slow", 1, 4.0)):
        for _ in range(runs):
            MessageLog.objects.create(
                task=task,
                status=MessageLog.COMPLETED,
                start_time=now - timedelta(minutes=5, seconds=seconds),
                completion_time=now - timedelta(minutes=5),
            )
    log_in(page, f"{MONITOR}statistics/")
    expect(page.locator("main h1")).to_have_text("Task statistics")
    names = page.locator("table.stats tbody tr")
    expect(names.first).to_have_attribute("data-task", "tests.fast")  # most runs first

    page.locator("table.stats th a", has_text="Max").click()
    expect(page.locator('table.stats th[aria-sort="descending"]')).to_contain_text("Max")
    expect(names.first).to_have_attribute("data-task", "tests.slow")
    expect(page).to_have_url(re.compile(r"sort=max"))

    page.locator(".stats-windows a", has_text="1 hour").click()
    expect(page).to_have_url(re.compile(r"window=1h.*sort=max|sort=max.*window=1h"))
    expect(page.locator("#stats-title")).to_contain_text("Last 1 hour: 4 runs")


@pytest.mark.parametrize("width", [1280, 390])
def test_overview_fits_the_screen(page: Any, staff: Any, width: int) -> None:
    from playwright.sync_api import expect

    page.set_viewport_size({"width": width, "height": 800})
    log_in(page)
    expect(page.locator("svg.chart")).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width}px"
