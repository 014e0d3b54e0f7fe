"""The dead-letter page in a real browser: a message a worker rejected is listed, deleted
and re-driven through htmx, each after the browser asked."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.browser.conftest import MONITOR, log_in, wait_for_htmx
from tests.harness import BrokerClient, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGE = f"{MONITOR}dead-letters/"
SECRET = "hunter2-sesame"
ADD = "tests.testapp.tasks.add"


def envelope(*args: Any, **kwargs: Any) -> bytes:
    return json.dumps({"args": list(args), "kwargs": kwargs}).encode()


class Dialogs:
    """Answer the page's confirmation dialogs (yes when ``accept``); keep the questions."""

    def __init__(self, page: Any, *, accept: bool) -> None:
        self.accept = accept
        self.asked: list[str] = []
        page.on("dialog", self.handle)

    def handle(self, dialog: Any) -> None:
        self.asked.append(dialog.message)
        if self.accept:
            dialog.accept()
        else:
            dialog.dismiss()


def rejected_rows() -> Any:
    from carrot.models import MessageLog
    from carrot.models.lifecycle import REJECTED_TYPE

    return MessageLog.objects.filter(status="FAILED", exception_type=REJECTED_TYPE)


def test_a_malformed_message_is_listed_and_deleted_after_asking(
    page: Any, staff: Any, worker: Any, broker: BrokerClient
) -> None:
    from playwright.sync_api import expect

    message_id = broker.publish("default", envelope(1, "two", password=SECRET), type="nope.missing")
    wait_until(lambda: broker.count("default.dlq") == 1, 20, message="the dead letter")
    wait_until(lambda: rejected_rows().count() == 1, 20, message="the rejected row")
    dialogs = Dialogs(page, accept=False)
    log_in(page, PAGE)
    wait_for_htmx(page)
    tab = page.locator("#tabs a.tab-dead-letters")
    expect(tab).to_have_attribute("aria-current", "page")
    row = page.locator(f'tr[data-message-id="{message_id}"]')
    expect(row).to_contain_text("nope.missing")
    expect(row).to_contain_text("'nope.missing' is not a registered task")
    expect(row).to_contain_text('"password": "********"')
    expect(row.locator("time")).to_have_count(1)
    expect(row).not_to_contain_text(SECRET)
    redrive = row.get_by_role("button", name="Re-drive")
    expect(redrive).to_be_disabled()
    expect(row.locator(".blocked")).to_contain_text("Cannot re-drive: it would be rejected again")

    row.get_by_role("button", name="Delete").click()  # dismissed: nothing happens
    assert dialogs.asked == ["Delete this dead-lettered nope.missing and its task row?"]
    expect(row).to_be_visible()
    assert broker.count("default.dlq") == 1 and rejected_rows().count() == 1

    dialogs.accept = True
    row.get_by_role("button", name="Delete").click()
    expect(page.locator("#notices")).to_contain_text("Deleted 1 message(s) and 1 rejected task")
    expect(page.locator(f'tr[data-message-id="{message_id}"]')).to_have_count(0)
    expect(page.locator("#dead-letters")).to_contain_text("Nothing was dead-lettered here.")
    assert broker.count("default.dlq") == 0 and not rejected_rows().exists()


def test_a_message_of_a_registered_task_is_redriven_to_its_queue(
    page: Any, staff: Any, broker: BrokerClient
) -> None:
    from playwright.sync_api import expect

    from carrot.models import MessageLog

    broker.channel.queue_declare("default.dlq", durable=True)
    message_id = broker.publish("default.dlq", envelope(2, 3), type=ADD, app_id="carrot")
    dialogs = Dialogs(page, accept=True)
    log_in(page, PAGE)
    wait_for_htmx(page)
    row = page.locator(f'tr[data-message-id="{message_id}"]')
    expect(row).to_contain_text(ADD)
    expect(row).to_contain_text("[2, 3]")
    row.get_by_role("button", name="Re-drive").click()
    expect(page.locator("#notices")).to_contain_text(f"Re-drove {ADD} ({message_id})")
    expect(page.locator(f'tr[data-message-id="{message_id}"]')).to_have_count(0)
    assert dialogs.asked == [f"Re-drive {ADD} to queue default?"]
    assert MessageLog.objects.get(uuid=message_id).status == "PUBLISHED"
    wait_until(lambda: broker.count("default") == 1, 10, message="the re-driven message")
    assert broker.count("default.dlq") == 0
    assert re.search(r"/dead-letters/$", page.url)
