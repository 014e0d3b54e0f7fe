"""``carrot_daemon`` as an operator uses it: real processes, a temporary pidfile."""

from __future__ import annotations

import subprocess
import sys

import pytest

from carrot.models import MessageLog
from tests.harness import ROOT, subprocess_env, wait_until
from tests.testapp.models import Effect
from tests.testapp.tasks import add, sleep_then_record

pytestmark = pytest.mark.django_db(transaction=True)


def daemon(tmp_path, *args, **env):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "carrot_daemon",
            *args,
            "--pidfile",
            str(tmp_path / "carrot.pid"),
            "--logfile",
            str(tmp_path / "carrot.log"),
        ],
        cwd=ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.fixture
def stopped(tmp_path, broker):
    yield
    daemon(tmp_path, "stop", "--hard")


def wait_consuming(tmp_path, count=2):
    wait_until(
        lambda: (tmp_path / "carrot.log").read_text().count("Consuming '") >= count,
        30,
        message="the daemon's worker to consume",
    )


@pytest.mark.slow  # ~7 s; keeps make test under 15 minutes
def test_start_status_stop(tmp_path, stopped):
    started = daemon(tmp_path, "start", "--no-scheduler")
    assert started.returncode == 0, started.stderr
    assert "carrot started (pid" in started.stdout
    pid = int((tmp_path / "carrot.pid").read_text())
    wait_consuming(tmp_path)
    status = daemon(tmp_path, "status")
    assert (status.returncode, status.stdout.strip()) == (0, f"carrot is running (pid {pid}).")
    again = daemon(tmp_path, "start")
    assert again.returncode == 1
    assert f"carrot is already running (pid {pid}" in again.stderr
    assert add.delay(2, 2).pk and wait_until(lambda: MessageLog.objects.completed().exists(), 20)
    stop = daemon(tmp_path, "stop")
    assert (stop.returncode, stop.stdout.strip()) == (0, f"carrot stopped (pid {pid}).")
    assert not (tmp_path / "carrot.pid").exists()
    status = daemon(tmp_path, "status")
    assert (status.returncode, status.stdout.strip()) == (3, "carrot is not running.")


def test_a_stale_pidfile_is_reported_and_replaced(tmp_path, stopped):
    sleeper = subprocess.Popen(["sleep", "30"])  # alive, but not carrot
    (tmp_path / "carrot.pid").write_text(f"{sleeper.pid}\n")
    try:
        status = daemon(tmp_path, "status")
        assert status.returncode == 1
        assert "pidfile" in status.stdout and "remains" in status.stdout
        started = daemon(tmp_path, "start", "--no-scheduler")
        assert started.returncode == 0, started.stderr
        assert int((tmp_path / "carrot.pid").read_text()) != sleeper.pid
        assert sleeper.poll() is None  # the unrelated process was left alone
    finally:
        sleeper.kill()


@pytest.mark.slow  # ~8 s each
def test_restart_replaces_the_process(tmp_path, stopped):
    daemon(tmp_path, "start", "--no-scheduler")
    first = int((tmp_path / "carrot.pid").read_text())
    wait_consuming(tmp_path)
    restarted = daemon(tmp_path, "restart", "--no-scheduler")
    assert restarted.returncode == 0, restarted.stderr
    second = int((tmp_path / "carrot.pid").read_text())
    assert second != first
    assert "carrot stopped" in restarted.stdout and "carrot started" in restarted.stdout


@pytest.mark.slow  # ~8 s
def test_stop_waits_for_tasks_in_flight(tmp_path, stopped):
    markers = tmp_path / "markers"
    markers.mkdir()
    daemon(tmp_path, "start", "--no-scheduler", CARROT_TEST_MARKER_DIR=str(markers))
    wait_consuming(tmp_path)
    log = sleep_then_record.delay("drain", 3)
    wait_until(lambda: (markers / "started-drain").exists(), 20)
    assert daemon(tmp_path, "stop").returncode == 0
    log.refresh_from_db()
    assert log.status == "COMPLETED"
    assert Effect.objects.filter(key="drain").count() == 1


@pytest.mark.slow  # ~8 s each
def test_stop_hard_does_not_wait(tmp_path, stopped):
    markers = tmp_path / "markers"
    markers.mkdir()
    daemon(tmp_path, "start", "--no-scheduler", CARROT_TEST_MARKER_DIR=str(markers))
    wait_consuming(tmp_path)
    log = sleep_then_record.delay("hard", 10)
    wait_until(lambda: (markers / "started-hard").exists(), 20)
    stop = daemon(tmp_path, "stop", "--hard")
    assert stop.returncode == 0
    log.refresh_from_db()
    assert log.status == "IN_PROGRESS"  # killed mid-task: redelivered to the next worker
    assert not Effect.objects.filter(key="hard").exists()


def test_a_start_that_fails_at_once_says_where_to_look(tmp_path):
    failed = daemon(tmp_path, "start", CARROT_TEST_BROKER="amqp://guest:guest@127.0.0.1:1/")
    assert failed.returncode == 1
    assert "carrot exited at once" in failed.stderr and "carrot.log" in failed.stderr
    assert "connection refused" in (tmp_path / "carrot.log").read_text()
    assert not (tmp_path / "carrot.pid").exists()


def test_stop_when_not_running_says_so(tmp_path):
    stop = daemon(tmp_path, "stop")
    assert (stop.returncode, stop.stdout.strip()) == (
        0,
        f"carrot is not running (no pidfile {tmp_path / 'carrot.pid'}).",
    )
