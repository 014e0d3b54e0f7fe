"""The slow tier: a soak under faults, and a task that outlives RabbitMQ's consumer_timeout."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from carrot.exceptions import BrokerError
from carrot.models import MessageLog
from tests.harness import assert_settled, node_worker, queue_stats, rss_kb, wait_until
from tests.testapp.models import Effect
from tests.testapp.tasks import record_or_fail, sleep_then_record

pytestmark = [pytest.mark.slow, pytest.mark.fault, pytest.mark.django_db(transaction=True)]


def test_soak_10k_tasks_two_publishers_a_killed_worker_and_a_broker_bounce(node, worker_factory):
    survivor = node_worker(worker_factory, node)
    victim = node_worker(worker_factory, node)
    returned: list[str] = []
    failing: set[str] = set()
    refused = []
    lock = threading.Lock()
    broker_down, broker_up = threading.Event(), threading.Event()

    def publish(offset: int) -> None:
        for i in range(offset, offset + 5000):
            # delay() takes well under a millisecond, so pace the publishers by the bounce
            # rather than by the clock: 3,000 each before it, 1,000 each while RabbitMQ is
            # down (refused at once), 1,000 each after it is back.
            if i == offset + 3000:
                broker_down.wait(120)
            if i == offset + 4000:
                broker_up.wait(120)
            fail = i % 100 == 0
            try:
                log = record_or_fail.delay(f"soak-{i}", fail)
            except BrokerError as exc:
                refused.append(str(exc))
                continue
            with lock:
                returned.append(str(log.uuid))
                if fail:
                    failing.add(str(log.uuid))
        connection.close()

    publishers = [threading.Thread(target=publish, args=(n * 5000,)) for n in range(2)]
    for thread in publishers:
        thread.start()
    done = MessageLog.objects.finished
    wait_until(lambda: done().count() >= 1000, 120, message="1000 tasks")
    rss_at_1k = rss_kb(survivor.pid)

    # A broker bounce while both publishers are still publishing (and workers consume).
    wait_until(lambda: len(returned) >= 6000, 120, message="6000 publishes")
    node.stop_app()
    broker_down.set()
    time.sleep(3)
    node.start_app()
    broker_up.set()

    wait_until(lambda: done().count() >= 3000, 180, message="3000 tasks")
    victim.kill()  # SIGKILL mid-run: its in-flight tasks are redelivered
    node_worker(worker_factory, node)

    for thread in publishers:
        thread.join(300)
    wait_until(
        lambda: done().filter(uuid__in=returned).count() == len(returned),
        300,
        message="every published task to settle",
    )
    rss_at_end = rss_kb(survivor.pid)

    # Every delay() either returned (and its task settled) or raised, leaving its row
    # FAILED "Not published"; the publishers kept going through the outage.
    assert len(returned) + len(refused) == 10_000
    assert refused, "the bounce should have refused some publishes"
    assert MessageLog.objects.filter(exception__startswith="Not published: ").count() == len(
        refused
    )
    assert len(returned) > 6000
    # In flight at the two faults: the killed worker's 2 threads, and all 6 at the bounce.
    runs = assert_settled(returned, duplicates_allowed=8, failed=failing)
    assert sum(runs.values()) >= len(returned)
    assert abs(len(failing) - len(returned) / 100) < 25  # the 1% that fail on purpose
    assert survivor.proc.poll() is None
    # One consumer per worker process: the survivor and the victim's replacement.
    assert queue_stats("default", node=node.name) == {"ready": 0, "unacked": 0, "consumers": 2}
    assert queue_stats("default.dlq", node=node.name)["ready"] == 0
    growth_mb = (rss_at_end - rss_at_1k) / 1024
    print(  # shown with -s / -rP: what this run measured
        f"soak: {len(returned)} published, {len(refused)} refused during the bounce, "
        f"{sum(runs.values()) - len(returned)} duplicate run(s), RSS {rss_at_1k // 1024} MB "
        f"-> {rss_at_end // 1024} MB"
    )
    assert growth_mb < 50, f"worker RSS grew {growth_mb:.1f} MB between 1k and 10k tasks"


def test_a_task_longer_than_the_consumer_timeout_runs_once(node, worker_factory, tmp_path):
    """RabbitMQ closes the channel of an unacked delivery after consumer_timeout (node-wide
    on 3.10, checked once a minute) and requeues it. The worker reconnects; the redelivered
    copy waits for the running attempt, which completes once."""
    node.ctl("eval", "application:set_env(rabbit, consumer_timeout, 10000).")
    try:
        markers = tmp_path / "m"
        markers.mkdir()
        proc = node_worker(worker_factory, node, CARROT_TEST_MARKER_DIR=str(markers))
        log = sleep_then_record.delay("beyond-timeout", 75)
        proc.wait_for_log(r"closed|reconnecting in", 100)
        row = wait_until(
            lambda: MessageLog.objects.filter(pk=log.pk, status="COMPLETED").first(), 120
        )
        assert row.attempts == 1
        assert Effect.objects.filter(key="beyond-timeout").count() == 1
        proc.wait_for_log("another delivery of it ran in this worker meanwhile", 20)
        assert proc.proc.poll() is None
        assert queue_stats("default", node=node.name)["ready"] == 0
    finally:
        node.ctl("eval", "application:set_env(rabbit, consumer_timeout, 1800000).", check=False)
