"""Regenerate the monitor screenshots in docs/screenshots/.

Run from the repository root::

    .venv/bin/python docs/screenshots.py

It runs the example project (``example_project/``) on a temporary SQLite database and a
dedicated RabbitMQ virtual host (``carrot-docs``, created with ``rabbitmqctl`` and deleted
at the end), starts a real worker and ``runserver``, publishes the demo tasks, and drives
Debian's Chromium (``/usr/bin/chromium``) with Playwright to take the screenshots. It needs
RabbitMQ on 127.0.0.1:5672 (guest/guest) and permission to run ``rabbitmqctl``.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
EXAMPLE = ROOT / "example_project"
OUT = DOCS / "screenshots"
SETTINGS = "screenshot_settings"  # docs/screenshot_settings.py
VHOST = "carrot-docs"
BROKER = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
USERNAME = PASSWORD = "admin"  # noqa: S105 (a throwaway demo database)
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000


STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:5.1f}s] {message}", flush=True)


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise RuntimeError(f"Timed out after {timeout:.0f}s waiting for {what}.")
        time.sleep(0.25)


# ------------------------------------------------------------------ RabbitMQ and processes


def rabbitmqctl(*args: str, check: bool = True) -> None:
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}")


def create_vhost() -> None:
    if shutil.which("rabbitmqctl") is None:
        sys.exit("rabbitmqctl is not on PATH; this script needs a local RabbitMQ.")
    rabbitmqctl("delete_vhost", VHOST, check=False)  # left over from an interrupted run
    rabbitmqctl("add_vhost", VHOST)
    rabbitmqctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """The subprocesses this script starts (worker, runserver), each in its own session."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def manage(self, *args: str) -> str:
        """Run a management command to completion and return its output."""
        result = subprocess.run(
            [sys.executable, "-m", "django", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr}")
        return result.stdout

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with open(self.logdir / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "django", *args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.running[name] = proc
        return proc

    def output(self, name: str) -> str:
        path = self.logdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def check_alive(self, name: str) -> None:
        proc = self.running[name]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.output(name)}")

    def stop(self, name: str, *, signals: int = 1) -> None:
        """Send SIGTERM (``signals`` times, a second one means "now"), then SIGKILL."""
        proc = self.running.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        for _ in range(signals):
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name, signals=2)


# ------------------------------------------------------------------ sample data


def prepare_database() -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    User.objects.create_superuser(USERNAME, "admin@example.com", PASSWORD)


def create_schedules(procs: Processes) -> None:
    """The declared heartbeat (synced from code) plus two schedules made by a person."""
    from carrot.models import ScheduledTask
    from carrot.scheduling.cadence import Cadence, next_run
    from carrot.utilities import create_scheduled_task

    log(procs.manage("carrot_schedules", "--sync").strip().replace("\n", "; "))
    now = datetime.now(tz=UTC)
    nightly = ScheduledTask(
        task_name="nightly sums",
        task="demo.tasks.add",
        cron="0 3 * * *",
        timezone="Europe/Berlin",
        task_args=[1, 2],
    )
    nightly.next_run_at = next_run(Cadence.of(nightly), now)
    nightly.save()
    # An interval schedule through the 1.x helper, paused to show the switch turned off.
    reports = create_scheduled_task("demo.tasks.report", {"hours": 6}, user_id=7)
    ScheduledTask.objects.filter(pk=reports.pk).update(active=False)


def wait_for_consumers() -> None:
    """Wait until every configured queue has a consumer (asked of rabbitmqctl)."""
    from carrot.conf import get_config

    names = set(get_config().queue_names)

    def consuming() -> bool:
        result = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "-p", VHOST, "name", "consumers"],
            capture_output=True,
            text=True,
        )
        counts = {}
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[1].isdigit():  # skips the header line
                counts[fields[0]] = int(fields[1])
        return all(counts.get(name, 0) > 0 for name in names)

    wait_until(consuming, "the worker to consume every queue", timeout=30)


def publish_sample_tasks() -> dict[str, Any]:
    """Publish the demo tasks; return the rows the screenshots need."""
    from demo import tasks

    from carrot.models import ScheduledTask
    from carrot.scheduling.edits import run_now

    rows = {
        "add": tasks.add.delay(2, 3),
        "failed": tasks.fail.delay(),
        "log_demo": tasks.log_demo.delay(),
        "report": tasks.report.delay(42, password="hunter2"),  # noqa: S106 (masked in the monitor)
    }
    tasks.add.delay(40, 2)
    tasks.add.delay("2", 3)  # a TypeError: a second kind of failure in the Failed tab
    tasks.fail.delay(reason="payment gateway timed out")
    tasks.add.apply_async(args=(7, 8), priority=5)
    tasks.report.delay(7)
    rows["slow"] = tasks.slow.delay(seconds=60)
    run_now(ScheduledTask.objects.get(task="demo.tasks.heartbeat"))  # a "last run" to show
    publish_malformed_message()
    return rows


def publish_malformed_message() -> None:
    """Publish by hand what no carrot producer would: the worker dead-letters it."""
    import uuid

    import pika

    connection = pika.BlockingConnection(pika.URLParameters(BROKER))
    try:
        connection.channel().basic_publish(
            "",
            "default",
            b'{"args": [1, 2], "kwargs": ',  # cut short: not JSON
            pika.BasicProperties(
                message_id=str(uuid.uuid4()),
                type="demo.tasks.add",
                content_type="application/json",
                delivery_mode=2,
            ),
        )
    finally:
        connection.close()


def wait_until_settled(slow_id: int) -> None:
    from carrot.models import MessageLog

    def settled() -> bool:
        others = MessageLog.objects.exclude(pk=slow_id)
        slow = MessageLog.objects.get(pk=slow_id)
        return (
            not others.exclude(status__in=MessageLog.FINISHED_STATUSES).exists()
            and slow.status == MessageLog.IN_PROGRESS
        )

    try:
        wait_until(settled, "the sample tasks to finish", timeout=60)
    except RuntimeError:
        for row in MessageLog.objects.order_by("id"):
            print(f"  {row.task} {row.status} log={len(row.log or [])} {row.exception}")
        raise


def publish_queued_tasks() -> None:
    """With the worker stopped, these stay PUBLISHED: rows for the Queued tab."""
    from demo import tasks

    tasks.add.delay(4, 4)
    tasks.report.delay(1001, password="swordfish")  # noqa: S106
    tasks.log_demo.delay()
    tasks.add.apply_async(args=(100, 200), priority=9)
    tasks.slow.delay(seconds=5)


# ------------------------------------------------------------------ the browser


def wait_for_server(base_url: str, procs: Processes) -> None:
    def answers() -> bool:
        procs.check_alive("runserver")
        try:
            with urllib.request.urlopen(f"{base_url}/admin/login/", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except OSError:
            return False

    wait_until(answers, "runserver to answer", timeout=30)


def settle(page: Any) -> None:
    """Wait until htmx ran and nothing is loading, then let the layout rest."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function("() => window.htmx !== undefined && document.readyState === 'complete'")
    page.evaluate("document.fonts.ready")
    page.wait_for_timeout(300)


def save(page: Any, name: str, *, full_page: bool = True) -> None:
    # From the top: a full-page shot of a scrolled page draws the sticky header mid-page.
    page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(100)
    path = OUT / name
    page.screenshot(path=str(path), full_page=full_page, animations="disabled")
    log(f"  {name} ({path.stat().st_size // 1024} KB)")


def shot(page: Any, url: str, name: str, *, ready: str, full_page: bool = True) -> None:
    page.goto(url)
    page.wait_for_selector(ready, state="visible")
    settle(page)
    save(page, name, full_page=full_page)


def log_in(browser: Any, base_url: str) -> dict[str, Any]:
    """Log in through the admin login page; return the session as a storage state."""
    context = browser.new_context(base_url=base_url, viewport=DESKTOP)
    page = context.new_page()
    page.goto("/admin/login/?next=/carrot/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.locator("#login-form [type=submit]").click()
    page.wait_for_url("**/carrot/")  # the overview, the landing page
    page.wait_for_selector("#tabs")
    state: dict[str, Any] = context.storage_state()
    context.close()
    return state


def fill_schedule_form(page: Any) -> None:
    page.goto("/carrot/schedules/new/")
    page.wait_for_selector("#preview .preview-list li")
    page.fill("#id_task_name", "weekday report")
    page.select_option("#id_task", "demo.tasks.report")
    page.check("input[name=kind][value=cron]")
    page.fill("#id_cron", "30 6 * * 1-5")
    page.select_option("#id_timezone", "Europe/Berlin")
    page.fill("#id_task_args", "[42]")
    page.locator("#id_task_args").blur()
    page.wait_for_function(
        "() => { const p = document.querySelector('#preview');"
        " return p && p.textContent.includes('Europe/Berlin')"
        " && p.querySelectorAll('li').length >= 3"
        " && p.textContent.includes(' 06:30:'); }"
    )
    settle(page)


def desktop_shots(browser: Any, base_url: str, state: dict[str, Any], rows: dict[str, Any]) -> None:
    context = browser.new_context(base_url=base_url, viewport=DESKTOP, storage_state=state)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    shot(page, "/carrot/", "overview.png", ready="tr[data-worker]")
    shot(page, "/carrot/statistics/", "statistics.png", ready="table.stats tr[data-task]")
    shot(page, "/carrot/dead-letters/", "dead-letters.png", ready="main h1")
    shot(page, f"/carrot/task/{rows['slow'].uuid}/", "live-log.png", ready="text=Step 2 of")
    shot(page, "/carrot/tasks/in-progress/", "in-progress.png", ready="#task-table tbody tr")
    shot(page, "/carrot/tasks/failed/", "failed.png", ready=".exception-line")
    shot(page, "/carrot/tasks/completed/", "completed.png", ready="#task-table .task-link")
    shot(
        page,
        f"/carrot/task/{rows['failed'].uuid}/",
        "task-detail.png",
        ready="pre.traceback",
    )
    shot(page, "/carrot/schedules/", "scheduled.png", ready="#schedule-table .task-link")
    fill_schedule_form(page)
    save(page, "schedule-form.png")
    context.close()


def phone_and_dark_shots(
    browser: Any, base_url: str, state: dict[str, Any], rows: dict[str, Any]
) -> None:
    phone = browser.new_context(
        base_url=base_url,
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        storage_state=state,
    )
    phone.set_default_timeout(TIMEOUT_MS)
    page = phone.new_page()
    shot(page, "/carrot/", "phone-overview.png", ready="tr[data-worker]", full_page=False)
    shot(
        page, "/carrot/tasks/failed/", "phone-failed.png", ready=".exception-line", full_page=False
    )
    shot(
        page,
        f"/carrot/task/{rows['failed'].uuid}/",
        "phone-task-detail.png",
        ready="pre.traceback",
        full_page=False,
    )
    phone.close()

    dark = browser.new_context(
        base_url=base_url, viewport=DESKTOP, color_scheme="dark", storage_state=state
    )
    dark.set_default_timeout(TIMEOUT_MS)
    page = dark.new_page()
    shot(page, "/carrot/tasks/completed/", "dark-completed.png", ready="#task-table .task-link")
    shot(page, "/carrot/", "dark-overview.png", ready="tr[data-worker]")
    shot(page, "/carrot/statistics/", "dark-statistics.png", ready="table.stats tr[data-task]")
    dark.close()


# ------------------------------------------------------------------ main


def quiet_broker_connections() -> None:
    """Silence this process's carrot logger before its vhost is deleted.

    Publishing (``delay()``) left a connection open to the vhost; deleting the vhost closes
    it, which carrot reports as a broker outage. That is expected here, and the process
    ends right after.
    """
    logging.getLogger("carrot").setLevel(logging.CRITICAL)  # and its children (carrot.*)


def main() -> None:
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install -y chromium (never playwright install).")
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="carrot-docs-"))
    paths = [str(DOCS), str(EXAMPLE), str(ROOT)]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "CARROT_DOCS_DB": str(workdir / "db.sqlite3"),
        "CARROT_DOCS_BROKER": BROKER,
        "PYTHONPATH": os.pathsep.join(paths + [p for p in [os.environ.get("PYTHONPATH")] if p]),
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(
        {k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "CARROT_DOCS_DB", "CARROT_DOCS_BROKER")}
    )
    # Playwright's sync API keeps an event loop in this thread; the ORM calls made while
    # it runs (polling MessageLog) are safe, nothing else uses the loop.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    sys.path[:0] = paths
    procs = Processes(env, workdir)
    vhost_created = False
    try:
        log(f"RabbitMQ vhost {VHOST}, database in {workdir}")
        create_vhost()
        vhost_created = True

        import django

        django.setup()
        prepare_database()
        create_schedules(procs)

        log("Starting the worker and runserver")
        procs.start("worker", "carrot", "--no-scheduler")
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        procs.start("runserver", "runserver", f"127.0.0.1:{port}", "--noreload")
        try:
            wait_for_consumers()
        except RuntimeError:
            procs.check_alive("worker")
            raise
        log("Publishing the demo tasks")
        rows = publish_sample_tasks()
        wait_until_settled(rows["slow"].pk)
        wait_for_server(base_url, procs)

        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
            state = log_in(browser, base_url)
            log("Screenshots with the worker running")
            desktop_shots(browser, base_url, state, rows)
            phone_and_dark_shots(browser, base_url, state, rows)

            log("Stopping the worker; publishing tasks for the Queued tab")
            procs.stop("worker", signals=2)
            publish_queued_tasks()
            context = browser.new_context(base_url=base_url, viewport=DESKTOP, storage_state=state)
            context.set_default_timeout(TIMEOUT_MS)
            shot(context.new_page(), "/carrot/tasks/queued/", "queued.png", ready=".task-link")
            context.close()
            browser.close()
    except Exception:
        for name in ("worker", "runserver"):
            text = procs.output(name)
            if text:
                print(f"--- {name} output (last 3000 characters) ---\n{text[-3000:]}")
        raise
    finally:
        procs.stop_all()
        quiet_broker_connections()
        if vhost_created:
            rabbitmqctl("delete_vhost", VHOST, check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"Done: {OUT.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
