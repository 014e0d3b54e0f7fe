"""The monitor in a real browser: Debian's Chromium driven by Playwright's sync API.

Each test logs in through the admin login page as a staff superuser, then drives the
monitor served by pytest-django's ``live_server`` against the real database and RabbitMQ.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import timezone

from tests.browser.conftest import MONITOR, TIMEOUT, log_in, wait_for_htmx
from tests.harness import BrokerClient, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

XSS_IMG = '<img src=x onerror="window.__xss=1">'
XSS_SCRIPT = "<script>window.__xss=1</script>"


def failed_log(**fields: Any) -> Any:
    from carrot.models import MessageLog

    values: dict[str, Any] = {
        "task": "tests.testapp.tasks.add",
        "queue": "default",
        "status": MessageLog.FAILED,
        "task_args": [1, 2],
        "exception": "ValueError: boom",
        "traceback": 'Traceback (most recent call last):\n  File "x.py"\nValueError: boom',
        "publish_time": timezone.now(),
        "start_time": timezone.now(),
        "failure_time": timezone.now(),
        "attempts": 1,
    }
    values.update(fields)
    return MessageLog.objects.create(**values)


# ------------------------------------------------------------------ tests


TABS = [
    ("Overview", "Overview", "/"),
    ("Queued", "Queued tasks", "/tasks/queued/"),
    ("In progress", "In progress tasks", "/tasks/in-progress/"),
    ("Failed", "Failed tasks", "/tasks/failed/"),
    ("Completed", "Completed tasks", "/tasks/completed/"),
    ("Scheduled", "Scheduled tasks", "/schedules/"),
    ("Statistics", "Task statistics", "/statistics/"),
    ("Dead letters", "Dead letters", "/dead-letters/"),
]


def test_tabs_navigate_and_mark_the_current_one(page: Any, staff: Any) -> None:
    from playwright.sync_api import expect

    log_in(page)
    expect(page).to_have_url(re.compile(r"/ops/carrot/$"))
    for label, heading, path in TABS:
        tab = page.locator("#tabs a.tab", has_text=re.compile(rf"^\s*{re.escape(label)}\b"))
        expect(tab).to_have_count(1)
        tab.click()
        expect(page).to_have_url(re.compile(re.escape(MONITOR.rstrip("/") + path) + "$"))
        expect(page.locator("main h1")).to_have_text(heading)
        current = page.locator('#tabs [aria-current="page"]')
        expect(current).to_have_count(1)
        expect(current).to_contain_text(label)
        expect(current).to_have_attribute("href", re.compile(re.escape(path) + "$"))


def test_published_task_appears_without_reload(page: Any, staff: Any, broker: BrokerClient) -> None:
    from playwright.sync_api import expect

    from carrot.models import MessageLog
    from tests.testapp.tasks import add

    log_in(page, f"{MONITOR}tasks/queued/")
    wait_for_htmx(page)
    count = page.locator('#tabs [data-count="queued"]')
    expect(count).to_have_text("0")
    expect(page.locator("#task-table tr.empty")).to_be_visible()
    page.evaluate("window.__noReload = 1")

    log = add.delay(2, 3)
    assert MessageLog.objects.get(pk=log.pk).status == MessageLog.PUBLISHED

    row = page.locator(f"#row-{log.uuid}")
    expect(row).to_be_visible()
    expect(row).to_contain_text("tests.testapp.tasks.add")
    expect(row).to_contain_text("[2, 3]")
    assert page.evaluate("window.__noReload") == 1, "the page reloaded instead of swapping"
    expect(count).to_have_text("1")
    assert page.evaluate("window.__noReload") == 1


def test_requeue_failed_task_from_detail_page(page: Any, staff: Any, broker: BrokerClient) -> None:
    from playwright.sync_api import expect

    from carrot.models import MessageLog

    log = failed_log()
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    log_in(page, f"{MONITOR}task/{log.uuid}/")
    wait_for_htmx(page)
    status = page.locator("#task-detail .detail-actions .status")
    expect(status).to_have_text("Failed")
    expect(page.locator("#task-detail pre.exception")).to_have_text("ValueError: boom")
    assert broker.count("default") == 0

    page.get_by_role("button", name="Requeue").click()

    expect(status).to_have_text("Published")
    expect(page.locator("#notices")).to_contain_text("Requeued tests.testapp.tasks.add.")
    expect(page.get_by_role("button", name="Requeue")).to_have_count(0)
    assert dialogs == ["Requeue tests.testapp.tasks.add?"]
    log.refresh_from_db()
    assert log.status == MessageLog.PUBLISHED
    assert log.exception == "" and log.failure_time is None
    wait_until(lambda: broker.count("default") == 1, 10, message="the requeued message")


def test_create_schedule_and_run_it_now(page: Any, staff: Any, broker: BrokerClient) -> None:
    from playwright.sync_api import expect

    from carrot.models import MessageLog, ScheduledTask

    name = "browser schedule"
    log_in(page, f"{MONITOR}schedules/new/")
    wait_for_htmx(page)
    expect(page.locator("main h1")).to_have_text("New schedule")
    page.fill("#id_task_name", name)
    page.select_option("#id_task", "tests.testapp.tasks.record")
    page.check('input[name="kind"][value="interval"]')
    page.fill("#id_interval_count", "1")
    page.select_option("#id_interval_type", "hours")
    page.fill("#id_task_kwargs", '{"key": "from-browser"}')
    preview = page.locator("#preview")
    expect(preview).to_contain_text("Next runs")
    expect(preview.locator("li")).to_have_count(5)

    page.get_by_role("button", name="Create schedule").click()

    expect(page).to_have_url(re.compile(r"/ops/carrot/schedules/$"))
    expect(page.locator("#notices")).to_contain_text(f"Created schedule '{name}'.")
    row = ScheduledTask.objects.get(task_name=name)
    assert row.task == "tests.testapp.tasks.record"
    assert (row.interval_type, row.interval_count, row.cron) == ("hours", 1, "")
    assert row.task_kwargs == {"key": "from-browser"}
    assert row.active
    line = page.locator(f"#schedule-{row.pk}")
    expect(line).to_contain_text(name)
    expect(line).to_contain_text('{"key": ')
    wait_for_htmx(page)

    line.get_by_role("button", name="Run now").click()

    expect(page.locator("#notices")).to_contain_text("Published tests.testapp.tasks.record now")
    log = wait_until(
        lambda: MessageLog.objects.filter(schedule=row).first(), 10, message="the run's row"
    )
    assert log.status == MessageLog.PUBLISHED
    assert log.task == "tests.testapp.tasks.record"
    assert log.task_kwargs == {"key": "from-browser"}
    expect(page.locator("#notices")).to_contain_text(str(log.uuid))
    expect(page.locator(f"#schedule-{row.pk}")).to_contain_text("Published")
    wait_until(lambda: broker.count("default") == 1, 10, message="the published message")


def test_invalid_json_shows_a_form_error(page: Any, staff: Any) -> None:
    from playwright.sync_api import expect

    from carrot.models import ScheduledTask

    log_in(page, f"{MONITOR}schedules/new/")
    page.fill("#id_task_name", "bad json")
    page.select_option("#id_task", "tests.testapp.tasks.record")
    page.fill("#id_interval_count", "1")
    page.select_option("#id_interval_type", "hours")
    page.fill("#id_task_kwargs", "{a: 1}")

    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Create schedule").click()

    assert posted.value.status == 200, f"the form answered {posted.value.status}"
    field = page.locator(".field", has=page.locator("#id_task_kwargs"))
    expect(field).to_have_class(re.compile(r"\bhas-error\b"))
    expect(field.locator("p.error")).to_have_text(re.compile(r"^Not valid JSON: .+\(line 1,"))
    expect(page.locator("p.error")).to_have_count(1)
    expect(page.locator("#id_task_kwargs")).to_have_value("{a: 1}")
    expect(page.locator("#id_task_name")).to_have_value("bad json")
    assert not ScheduledTask.objects.exists()


def test_no_request_leaves_the_origin(page: Any, staff: Any, live_server: Any) -> None:
    from playwright.sync_api import expect

    from carrot.models import ScheduledTask

    log = failed_log()
    ScheduledTask.objects.create(
        task_name="origin check",
        task="tests.testapp.tasks.record",
        interval_type="hours",
        interval_count=1,
        task_kwargs={"key": "k"},
        source=ScheduledTask.SOURCE_USER,
    )
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))

    log_in(page)
    for slug in ("queued", "in-progress", "failed", "completed"):
        page.goto(f"{MONITOR}tasks/{slug}/")
        wait_for_htmx(page)
    page.goto(f"{MONITOR}task/{log.uuid}/")
    wait_for_htmx(page)
    expect(page.locator("#task-detail")).to_be_visible()
    page.goto(f"{MONITOR}schedules/")
    wait_for_htmx(page)
    expect(page.locator("#schedule-table")).to_contain_text("origin check")
    page.goto(f"{MONITOR}schedules/new/")
    wait_for_htmx(page)
    expect(page.locator("#preview")).to_contain_text("Next runs")  # an htmx request went out

    # The stylesheet and htmx really loaded from the monitor (not just were requested).
    assert page.evaluate(
        """() => [...document.styleSheets].some(
            (s) => s.href && s.href.endsWith('/carrot.css') && s.cssRules.length > 0)"""
    )
    assert page.evaluate("typeof window.htmx.ajax") == "function"
    assert any("/assets/" in u and u.endswith("/htmx.min.js") for u in urls), urls
    assert any("/assets/" in u and u.endswith("/carrot.css") for u in urls), urls
    assert any("/schedules/preview/" in u for u in urls), urls
    foreign = [u for u in urls if not u.startswith(live_server.url + "/")]
    assert not foreign, f"requests left {live_server.url}: {foreign}"


def test_xss_payloads_stay_inert(page: Any, staff: Any) -> None:
    from playwright.sync_api import expect

    payloads = f"{XSS_IMG} {XSS_SCRIPT}"
    log = failed_log(
        task_args=[XSS_IMG],
        task_kwargs={"html": XSS_IMG, "script": XSS_SCRIPT, XSS_IMG: "as a key"},
        exception=f"ValueError: {payloads}",
        traceback=f"Traceback (most recent call last):\n  {payloads}\nValueError: {payloads}",
        log=[
            {
                "time": timezone.now().isoformat(),
                "level": "WARNING",
                "levelno": 30,
                "message": f"warning {payloads}",
            },
            {
                "time": timezone.now().isoformat(),
                "level": "DEBUG",
                "levelno": 10,
                "message": f"debug {payloads}",
            },
        ],
    )
    dialogs: list[str] = []

    def record(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)

    log_in(page, f"{MONITOR}tasks/failed/")
    wait_for_htmx(page)
    row = page.locator(f"#row-{log.uuid}")
    expect(row).to_contain_text(XSS_IMG)  # shown as text, not parsed as markup
    expect(row.locator(".exception-line")).to_contain_text(XSS_SCRIPT)
    # The same rows again through htmx's swap (it runs <script> in swapped HTML).
    with page.expect_response(
        lambda r: "/tasks/failed/" in r.url and r.request.headers.get("hx-request") == "true",
        timeout=TIMEOUT,
    ):
        pass
    expect(page.locator(f"#row-{log.uuid}")).to_contain_text(XSS_IMG)
    assert page.locator("#task-table img, #task-table script").count() == 0

    page.locator(f"#row-{log.uuid} a.task-link").click()
    expect(page).to_have_url(re.compile(rf"/task/{log.uuid}/$"))
    wait_for_htmx(page)
    detail = page.locator("#task-detail")
    expect(detail.locator("pre.exception")).to_contain_text(XSS_IMG)
    expect(detail.locator("pre.traceback")).to_contain_text(XSS_SCRIPT)
    expect(detail.locator("table.kv")).to_contain_text(XSS_SCRIPT)
    expect(detail.locator("#task-log")).to_contain_text(f"warning {XSS_IMG}")
    # Swap the log in at DEBUG through htmx, so a payload arrives in a fragment too.
    page.select_option("#log-level", "DEBUG")
    expect(detail.locator("#task-log")).to_contain_text(f"debug {XSS_IMG}")
    assert page.locator("#task-detail img, #task-detail script").count() == 0

    assert page.evaluate("typeof window.__xss") == "undefined"
    assert dialogs == []


def test_bulk_actions_ask_first_and_cancel_changes_nothing(page: Any, staff: Any) -> None:
    """Before: the bulk buttons carried hx-confirm but the form issued the request, so htmx
    never asked: Cancel was impossible and every row went."""
    from playwright.sync_api import expect

    from carrot.models import MessageLog

    logs = [failed_log(task_args=[n, n]) for n in range(3)]
    answers: list[bool] = []
    dialogs: list[str] = []

    def answer(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept() if answers.pop(0) else dialog.dismiss()

    page.on("dialog", answer)
    log_in(page, f"{MONITOR}tasks/failed/")
    wait_for_htmx(page)
    page.locator(f"#sel-{logs[0].uuid}").check()
    delete_selected = page.get_by_role("button", name="Delete selected")

    answers.append(False)  # Cancel
    delete_selected.click()
    expect(page.locator(f"#row-{logs[0].uuid}")).to_be_visible()
    assert dialogs == ["Delete the selected tasks?"]
    assert MessageLog.objects.count() == 3

    answers.append(True)  # OK
    delete_selected.click()
    expect(page.locator(f"#row-{logs[0].uuid}")).to_have_count(0)
    assert dialogs == ["Delete the selected tasks?"] * 2
    assert MessageLog.objects.count() == 2

    delete_all = page.get_by_role("button", name="Delete all")
    answers.append(False)
    delete_all.click()  # the browser asks the server how many, then asks the operator
    for _ in range(100):  # Playwright handles the dialog while it waits, not in a sleep
        if len(dialogs) == 3:
            break
        page.wait_for_timeout(100)
    assert dialogs[2] == "Delete all 2 failed tasks?"
    expect(page.locator(f"#row-{logs[1].uuid}")).to_be_visible()
    assert MessageLog.objects.count() == 2

    answers.append(True)
    delete_all.click()
    expect(page.locator("#task-table tr.empty")).to_be_visible()
    assert dialogs[3] == "Delete all 2 failed tasks?"
    assert not MessageLog.objects.exists()
