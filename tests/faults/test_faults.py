"""Fault injection: shutdowns, broker outages, database outages. Nothing may be lost.

Broker faults run on a private RabbitMQ node (``rabbit_node``), never the shared one.
Each test states which duplicate executions it allows and why.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from carrot.exceptions import BrokerError, BrokerUnavailable
from carrot.models import MessageLog, OutboxEntry
from carrot.publishing.sweeper import OUTBOX_GRACE
from tests.harness import (
    ROOT,
    PostgresCluster,
    assert_settled,
    django_shell,
    finished,
    node_worker,
    queue_stats,
    subprocess_env,
    wait_until,
)
from tests.testapp.tasks import add, record, sleep_then_record

pytestmark = pytest.mark.django_db(transaction=True)
DB = os.environ.get("CARROT_TEST_DB", "sqlite")


# ------------------------------------------------------------------ shutdown


def test_sigterm_finishes_in_flight_tasks_and_leaves_the_rest_queued(worker_factory, tmp_path):
    markers = tmp_path / "m"
    markers.mkdir()
    proc = worker_factory("--no-scheduler", CARROT_TEST_MARKER_DIR=str(markers)).wait_ready()
    long = [sleep_then_record.delay(f"long-{i}", 3) for i in range(2)]
    wait_until(lambda: all((markers / f"started-long-{i}").exists() for i in range(2)), 20)
    quick = [record.delay(f"quick-{i}") for i in range(3)]
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    assert "Received SIGTERM" in proc.log() and "StreamLostError" not in proc.log()
    for log in long:
        assert MessageLog.objects.get(pk=log.pk).status == "COMPLETED"
    assert {MessageLog.objects.get(pk=log.pk).status for log in quick} == {"PUBLISHED"}
    stats = queue_stats("default", vhost=settings.TEST_VHOST)
    assert (stats["ready"], stats["unacked"]) == (3, 0)
    worker_factory("--no-scheduler").wait_ready()
    wait_until(lambda: MessageLog.objects.completed().count() == 5, 20)
    assert_settled([log.uuid for log in long + quick])  # no duplicates allowed


def test_a_second_sigterm_exits_at_once_and_the_task_is_redelivered(worker_factory, tmp_path):
    markers = tmp_path / "m"
    markers.mkdir()
    proc = worker_factory("--no-scheduler", CARROT_TEST_MARKER_DIR=str(markers)).wait_ready()
    log = sleep_then_record.delay("twice", 30)
    wait_until(lambda: (markers / "started-twice").exists(), 20)
    proc.signal(signal.SIGTERM)
    time.sleep(0.5)
    proc.signal(signal.SIGTERM)
    assert proc.wait(10) == 1  # the task has 29 s to go: it was not waited for
    # The unacked message went back to the queue; its row shows the interrupted attempt.
    assert queue_stats("default", vhost=settings.TEST_VHOST)["ready"] == 1
    assert MessageLog.objects.get(pk=log.pk).status == "IN_PROGRESS"


def test_the_shutdown_timeout_bounds_a_drain(worker_factory, tmp_path):
    markers = tmp_path / "m"
    markers.mkdir()
    proc = worker_factory(
        "--no-scheduler", CARROT_TEST_MARKER_DIR=str(markers), CARROT_TEST_SHUTDOWN_TIMEOUT="2"
    ).wait_ready()
    sleep_then_record.delay("stuck", 60)
    wait_until(lambda: (markers / "started-stuck").exists(), 20)
    proc.signal(signal.SIGTERM)
    assert proc.wait(15) == 1  # long before the 60 s task would have ended
    assert "Shutdown timed out after 2s with 1 task(s) still running" in proc.log()
    assert queue_stats("default", vhost=settings.TEST_VHOST)["ready"] == 1  # back in the queue


# ------------------------------------------------------------------ broker faults


@pytest.mark.fault
def test_publishing_through_a_broker_outage_never_hangs_or_loses(node, worker_factory):
    node_worker(worker_factory, node)
    returned, raised, slowest = [], [], 0.0

    def publish_all():
        nonlocal slowest
        for i in range(300):
            started = time.monotonic()
            try:
                returned.append(record.delay(f"outage-{i}").uuid)
            except BrokerError as exc:
                raised.append((f"outage-{i}", str(exc)))
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.01)
        connection.close()

    thread = threading.Thread(target=publish_all)
    thread.start()
    wait_until(lambda: len(returned) >= 80, 30)
    node.stop_app()
    time.sleep(3)
    node.start_app()
    thread.join(120)
    assert not thread.is_alive()
    assert len(returned) + len(raised) == 300
    assert raised, "the outage should have refused some publishes"
    assert slowest < 12  # never a hang: publish_timeout is 5 s
    assert all("RabbitMQ at" in reason for _, reason in raised)
    for key, _ in raised:  # the row of every refused publish says so
        row = MessageLog.objects.get(task_args=[key])
        assert row.status == "FAILED" and row.exception.startswith("Not published: ")
    # A publish cut off before its confirm returned normally and stayed in the outbox; the
    # worker's sweeper publishes it again after 30 s unless it ran meanwhile.
    wait_until(lambda: MessageLog.objects.completed().count() == len(returned), 120)
    # A task in flight when the broker went away may run again: at most the worker's 2.
    assert_settled(returned, duplicates_allowed=2)


@pytest.mark.slow  # ~7 s; keeps make test under 15 minutes
def test_a_publisher_killed_before_the_confirm_loses_nothing(worker_factory):
    # A web process dies (SIGKILL) after delay() returned but before its relay published:
    # the row and its outbox entry are committed, the message never reached RabbitMQ.
    script = (
        "import os, signal\n"
        "from carrot.broker.relay import Relay\n"
        "Relay.submit = lambda self, items: None  # the process dies before the relay runs\n"
        "from tests.testapp.tasks import record\n"
        "record.delay('orphan')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = django_shell(script)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    row = MessageLog.objects.get(task_args=["orphan"])
    assert row.status == "PUBLISHED"
    assert OutboxEntry.objects.filter(message_id=row.pk).exists()
    assert queue_stats("default", vhost=settings.TEST_VHOST)["ready"] == 0
    # Past the grace period any worker's outbox sweeper publishes it, and it runs once.
    OutboxEntry.objects.update(created_at=timezone.now() - OUTBOX_GRACE - timedelta(seconds=1))
    worker_factory("--no-scheduler").wait_ready()
    finished(row, 30)
    wait_until(lambda: not OutboxEntry.objects.exists(), 10, message="the confirm to be applied")
    assert_settled([row.uuid])


@pytest.mark.fault
@pytest.mark.slow  # ~12 s; test_worker_faults' reconnect test stays in make test
def test_consuming_workers_reconnect_keep_their_pids_and_settle_everything(node, worker_factory):
    workers = [node_worker(worker_factory, node) for _ in range(2)]
    pids = [w.pid for w in workers]
    logs = [sleep_then_record.delay(f"bounce-{i}", 0.1) for i in range(100)]
    wait_until(lambda: MessageLog.objects.completed().count() >= 30, 60)
    node.stop_app()
    for w in workers:
        w.wait_for_log("reconnecting in", 20)
    time.sleep(3)
    node.start_app()
    wait_until(lambda: MessageLog.objects.completed().count() == 100, 90)
    assert [w.pid for w in workers] == pids
    assert all(w.proc.poll() is None for w in workers)
    assert "unknown delivery tag" not in "".join(w.log() for w in workers)
    # In flight at the outage: at most 2 workers x 2 threads may run again.
    assert_settled([log.uuid for log in logs], duplicates_allowed=4)


@pytest.mark.fault
@pytest.mark.slow  # ~11 s: a full broker restart
def test_queued_persistent_tasks_survive_a_full_broker_restart(node, worker_factory):
    logs = [record.delay(f"durable-{i}") for i in range(50)]
    node.restart()
    assert queue_stats("default", node=node.name)["ready"] == 50
    node_worker(worker_factory, node)
    wait_until(lambda: MessageLog.objects.completed().count() == 50, 60)
    assert_settled([log.uuid for log in logs])


@pytest.mark.fault
def test_a_blocked_broker_fails_publishing_within_the_timeout(node):
    from carrot.models.handover import flush

    add.delay(1, 1)  # a connected relay, as in a running web process
    assert flush(10)
    node.ctl("set_vm_memory_high_watermark", "0")
    accepted, refused = [], None
    try:
        started = time.monotonic()
        # The relay learns of the alarm when RabbitMQ blocks its next publish; from then
        # on delay() raises at once. What was accepted before waits in the outbox.
        while refused is None and time.monotonic() - started < 10:
            try:
                accepted.append(add.delay(2, 2))
            except BrokerUnavailable as exc:
                refused = exc
            time.sleep(0.05)
        assert refused is not None, "delay() kept accepting during a memory alarm"
        assert "memory or disk alarm" in str(refused)
        assert time.monotonic() - started < 5 + 3
    finally:
        node.ctl("set_vm_memory_high_watermark", "0.4")
    assert MessageLog.objects.failed().get().exception.startswith("Not published: ")
    assert flush(30), "the accepted messages were not published after the alarm cleared"
    assert {log.pk for log in accepted} <= set(
        MessageLog.objects.queued().values_list("pk", flat=True)
    )
    assert add.delay(3, 3).status == "PUBLISHED"  # publishing works again


def test_a_deleted_queue_is_declared_again_by_its_consumer(worker, broker):
    broker.delete("default")
    worker.wait_for_log("cancelled the consumer of 'default'", 20)
    worker.wait_for_log(r"Consuming 'default'", 30, count=2)
    assert finished(add.delay(5, 5)).output == 10


# ------------------------------------------------------------------ database faults


def carrot_send(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "django", "carrot_send", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


if DB == "postgres":

    @pytest.fixture
    def cluster():
        # Not under pytest's tmp dir: the cluster runs as the postgres user, who cannot
        # enter root's private directories.
        base = Path(tempfile.mkdtemp(prefix="carrot-pg-"))
        os.chmod(base, 0o755)  # noqa: S103
        cluster = PostgresCluster(base).init()
        env = subprocess_env(**cluster.env())
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "-v0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=120,
        )
        yield cluster
        try:
            cluster.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(base, ignore_errors=True)

    def test_a_postgres_outage_during_a_status_write_holds_the_ack(
        cluster, worker_factory, tmp_path
    ):
        markers = tmp_path / "m"
        markers.mkdir()
        env = {**cluster.env(), "CARROT_TEST_MARKER_DIR": str(markers)}
        proc = worker_factory("--no-scheduler", **env).wait_ready()
        out = carrot_send(
            subprocess_env(**env), "tests.testapp.tasks.sleep_then_touch", "--args", '["pg", 2]'
        ).stdout
        message_id = out.split()[-1]
        wait_until(lambda: (markers / "started-pg").exists(), 20)
        cluster.stop()
        wait_until(lambda: (markers / "done-pg").exists(), 20)
        time.sleep(1.5)
        # The task ran, its COMPLETED write cannot happen, so the message is not acked.
        assert queue_stats("default", vhost=settings.TEST_VHOST)["unacked"] == 1
        proc.wait_for_log("Database error while recording outcomes", 10)
        cluster.start()
        wait_until(
            lambda: (
                cluster.query("SELECT status FROM carrot_messagelog WHERE uuid = %s", (message_id,))
                == [("COMPLETED",)]
            ),
            60,
        )
        wait_until(lambda: queue_stats("default", vhost=settings.TEST_VHOST)["unacked"] == 0, 10)
        # The worker survived (same process) and serves the next task.
        carrot_send(
            subprocess_env(**env), "tests.testapp.tasks.sleep_then_touch", "--args", '["after", 0]'
        )
        wait_until(lambda: (markers / "done-after").exists(), 20)
        wait_until(
            lambda: (
                cluster.query("SELECT count(*) FROM carrot_messagelog WHERE status = 'COMPLETED'")
                == [(2,)]
            ),
            20,
        )
        assert proc.proc.poll() is None

else:

    def test_a_locked_sqlite_database_during_a_status_write_holds_the_ack(worker_factory, tmp_path):
        markers = tmp_path / "m"
        markers.mkdir()
        proc = worker_factory(
            "--no-scheduler", CARROT_TEST_MARKER_DIR=str(markers), CARROT_TEST_SQLITE_TIMEOUT="0.5"
        ).wait_ready()
        from tests.testapp.tasks import sleep_then_touch

        log = sleep_then_touch.delay("lite", 1)
        wait_until(lambda: (markers / "started-lite").exists(), 20)
        blocker = sqlite3.connect(
            str(connection.settings_dict["NAME"]), timeout=5, isolation_level=None
        )
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            wait_until(lambda: (markers / "done-lite").exists(), 20)
            proc.wait_for_log("Database error while recording outcomes", 15)
            assert queue_stats("default", vhost=settings.TEST_VHOST)["unacked"] == 1
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert finished(log).status == "COMPLETED"
        wait_until(lambda: queue_stats("default", vhost=settings.TEST_VHOST)["unacked"] == 0, 10)
        assert finished(add.delay(1, 2)).output == 3
        assert proc.proc.poll() is None


# ------------------------------------------------------------------ more malformed input


def test_a_10_mb_body_and_a_huge_integer_are_dead_lettered(worker, broker):
    import json

    broker.publish(
        "default",
        json.dumps({"args": ["x" * 10_000_000], "kwargs": {}}).encode(),
        type="tests.testapp.tasks.add",
    )
    broker.publish(
        "default",
        b'{"args": [' + b"9" * 50_000 + b'], "kwargs": {}}',
        type="tests.testapp.tasks.add",
    )
    wait_until(lambda: broker.count("default.dlq") == 2, 20)
    reasons = " ".join(MessageLog.objects.failed().values_list("exception", flat=True))
    assert "over the limit" in reasons
    assert finished(add.delay(1, 1)).output == 2
    assert worker.proc.poll() is None


def test_a_task_with_wrong_arguments_is_not_retried_forever(worker, broker):
    log = finished(add.delay(1))  # missing an argument: TypeError
    assert log.status == "FAILED" and "TypeError" in log.exception
    time.sleep(1)
    assert MessageLog.objects.get(pk=log.pk).attempts == 1
    assert broker.count("default") == broker.count("default.dlq") == 0
