"""Metrics through faults: reconnects are counted by the side that reconnected, and the
scheduler counts its ticks, published and skipped, exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from carrot.exceptions import BrokerError
from carrot.models import MessageLog, ScheduledTask
from carrot.observability import metrics
from carrot.scheduling.scheduler import Scheduler
from tests.harness import free_port, node_worker, wait_until
from tests.integration.test_metrics import scrape, value
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db(transaction=True)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.fault
@pytest.mark.slow  # ~15 s: a broker outage
def test_consumer_and_publisher_reconnects_are_counted(node, worker_factory):
    metrics.enable()  # this process publishes: its relay's reconnects count here
    port = free_port()
    worker = node_worker(worker_factory, node, "--metrics-port", str(port))
    assert add.delay(1, 1) and wait_until(lambda: MessageLog.objects.completed().count() == 1, 20)
    assert value(scrape(port), "carrot_broker_reconnects_total", connection="consumer") == 0
    before = sample("carrot_broker_reconnects_total", connection="publisher")

    node.stop_app()
    worker.wait_for_log("reconnecting in", 20)
    node.start_app()
    worker.wait_for_log(r"Consuming 'default'", 30, count=2)  # at start, and again now
    log = wait_until(_delay, 30, message="delay() to work again")  # the relay reconnects
    wait_until(lambda: MessageLog.objects.get(pk=log.pk).status == "COMPLETED", 30)
    assert sample("carrot_broker_reconnects_total", connection="publisher") == before + 1
    samples = scrape(port)
    assert value(samples, "carrot_broker_reconnects_total", connection="consumer") >= 1
    assert (
        value(samples, "carrot_tasks_total", task=add.name, queue="default", outcome="completed")
        == 2
    )


def _delay():
    """Return add.delay(2, 2), or None while the broker cannot take it."""
    try:
        return add.delay(2, 2)
    except BrokerError:
        return None


@pytest.mark.fault
def test_scheduler_ticks_published_and_skipped_count_once(broker):
    metrics.enable()
    published = sample("carrot_scheduler_ticks_total", result="published")
    skipped = sample("carrot_scheduler_ticks_total", result="skipped")
    now = timezone.now()
    ScheduledTask.objects.create(  # down for 5 minutes: 4 ticks missed, one runs now
        task=add.name,
        task_name="every minute",
        interval_type="minutes",
        interval_count=1,
        task_args=[1, 2],
        next_run_at=now - timedelta(minutes=4, seconds=30),
    )
    ScheduledTask.objects.create(  # names no registered task: its tick is skipped
        task="tests.gone",
        task_name="gone",
        interval_type="minutes",
        interval_count=1,
        next_run_at=now - timedelta(seconds=1),
    )
    first, second = Scheduler(), Scheduler()  # two schedulers, one database
    assert len(first.publish_due(now)) + len(second.publish_due(now)) == 1
    assert sample("carrot_scheduler_ticks_total", result="published") == published + 1
    assert sample("carrot_scheduler_ticks_total", result="skipped") == skipped + 4 + 1
    wait_until(lambda: broker.count("default") == 1, 10)
