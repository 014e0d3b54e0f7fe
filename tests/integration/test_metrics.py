"""Prometheus metrics: a real worker's ``/metrics`` after a known mix of tasks, the sum
served by a supervisor, and the monitor's queue gauges."""

from __future__ import annotations

import signal
import tempfile
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from carrot.conf import get_config
from carrot.models import MessageLog
from tests.harness import free_port, wait_until
from tests.testapp.tasks import add, fail, sleep_then_record, whoami

pytestmark = pytest.mark.django_db(transaction=True)

ADD, FAIL, WHOAMI = add.name, fail.name, whoami.name
TOKEN = "s3cret-token-for-scrapers"


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return {(sample name, sorted labels): value} from an endpoint's text format."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return parse(text)


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_worker_counts_a_known_mix_of_tasks(worker_factory, broker):
    port = free_port()
    worker = worker_factory("--no-scheduler", "--metrics-port", str(port)).wait_ready()
    worker.wait_for_log(rf"Serving metrics on http://127\.0\.0\.1:{port}/metrics")

    done = [add.delay(i, i) for i in range(5)]
    failed = [fail.delay("on purpose") for _ in range(2)]
    retried = whoami.delay(fail_first=True)  # fails once, then completes
    broker.publish("default", b"{not json", type=ADD)  # the gate dead-letters it
    logs = [*done, *failed, retried]
    wait_until(
        lambda: (
            MessageLog.objects.filter(
                pk__in=[log.pk for log in logs], status__in=["COMPLETED", "FAILED"]
            ).count()
            == len(logs)
        ),
        30,
    )
    wait_until(lambda: MessageLog.objects.filter(status="FAILED").count() == 3, 10)  # + reject

    def settled():
        samples = scrape(port)
        rejected = value(
            samples, "carrot_tasks_total", task=ADD, queue="default", outcome="rejected"
        )
        return (
            samples
            if rejected == 1
            and value(
                samples, "carrot_tasks_total", task=WHOAMI, queue="default", outcome="completed"
            )
            == 1
            else None
        )

    samples = wait_until(settled, 10)
    total = "carrot_tasks_total"
    assert value(samples, total, task=ADD, queue="default", outcome="completed") == 5
    assert value(samples, total, task=FAIL, queue="default", outcome="failed") == 2
    assert value(samples, total, task=WHOAMI, queue="default", outcome="retried") == 1
    assert value(samples, total, task=WHOAMI, queue="default", outcome="completed") == 1
    assert value(samples, total, task=FAIL, queue="default", outcome="retried") == 0
    started = "carrot_tasks_started_total"
    assert value(samples, started, task=ADD, queue="default") == 5
    assert value(samples, started, task=WHOAMI, queue="default") == 2
    assert value(samples, started, task=FAIL, queue="default") == 2
    duration = "carrot_task_duration_seconds"
    assert value(samples, f"{duration}_count", task=ADD, queue="default") == 5
    assert value(samples, f"{duration}_bucket", task=ADD, queue="default", le="3600.0") == 5
    assert value(samples, f"{duration}_bucket", task=ADD, queue="default", le="+Inf") == 5
    assert value(samples, "carrot_tasks_in_progress", queue="default") == 0
    assert value(samples, "carrot_messages_prefetched", queue="default") == 0
    # The retry went out through the worker's relay, and RabbitMQ confirmed it.
    assert value(samples, "carrot_publish_confirm_seconds_count") >= 1
    broker_label = f"{get_config().default_broker.host}:{get_config().default_broker.port}"
    backlog = ("carrot_relay_backlog_messages", (("broker", broker_label),))
    assert samples[backlog] == 0  # present (the relay published), and nothing waits
    # Labels stay bounded: no task ids anywhere.
    ids = {str(log.uuid) for log in logs}
    assert not any(v in ids for (_, labels) in samples for _, v in labels)


def test_a_supervisor_serves_the_sum_of_its_workers(worker_factory, broker):
    before = set(Path(tempfile.gettempdir()).glob("carrot-metrics-*"))
    port = free_port()
    supervisor = worker_factory("--no-scheduler", "--processes", "2", "--metrics-port", str(port))
    supervisor.wait_for_log(r"Consuming 'default'", 30, count=2)
    supervisor.wait_for_log(rf"Serving the workers' metrics on http://127\.0\.0\.1:{port}")
    logs = [sleep_then_record.delay(f"sum-{i}", 0.2) for i in range(16)]
    wait_until(lambda: MessageLog.objects.completed().count() == len(logs), 30)
    # Both children ran some: the endpoint adds up two processes' counts.
    assert MessageLog.objects.values("worker").distinct().count() == 2
    task = sleep_then_record.name

    def summed():
        s = scrape(port)
        done = value(s, "carrot_tasks_total", task=task, queue="default", outcome="completed")
        return s if done == 16 else None

    samples = wait_until(summed, 10)
    assert value(samples, "carrot_tasks_started_total", task=task, queue="default") == 16
    assert value(samples, "carrot_task_duration_seconds_count", task=task, queue="default") == 16
    assert value(samples, "carrot_tasks_in_progress", queue="default") == 0
    supervisor.signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0
    # Its private directory for the children's files is gone.
    assert set(Path(tempfile.gettempdir()).glob("carrot-metrics-*")) == before


def test_the_port_must_be_free(worker_factory):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = worker_factory("--no-scheduler", "--metrics-port", str(port))
        assert worker.wait(30) != 0
    assert f"Cannot serve metrics on 127.0.0.1:{port}" in worker.log()


# ---------------------------------------------------------------- the monitor's endpoint


@pytest.fixture
def queued(broker):
    """Three tasks waiting in 'default' (no worker runs), confirmed by RabbitMQ."""
    logs = [add.delay(1, 2) for _ in range(3)]
    wait_until(lambda: broker.count("default") == 3, 10)
    return logs


def test_the_monitor_serves_queue_gauges_to_staff(client, queued):
    url = reverse("carrot:metrics")
    assert client.get(url).status_code == 302  # to the login page, like every monitor page
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = parse(response.content.decode())
    assert value(samples, "carrot_queue_messages_ready", queue="default") == 3
    assert value(samples, "carrot_queue_consumers", queue="default") == 0
    assert value(samples, "carrot_queue_dead_letters", queue="default") == 0
    assert value(samples, "carrot_queue_tasks_in_progress", queue="default") == 0
    assert value(samples, "carrot_queue_broker_up", queue="default") == 1
    wait_until(
        lambda: (
            value(
                parse(client.get(url).content.decode()),
                "carrot_queue_outbox_entries",
                queue="default",
            )
            == 0
        ),
        10,
    )
    MessageLog.objects.filter(pk=queued[0].pk).update(status="IN_PROGRESS")
    samples = parse(client.get(url).content.decode())
    assert value(samples, "carrot_queue_tasks_in_progress", queue="default") == 1


def test_a_scraper_with_the_token_needs_no_login(client, queued):
    url = reverse("carrot:metrics")
    carrot = dict(get_config_raw(), metrics={"token": TOKEN})
    with override_settings(CARROT=carrot):
        ok = client.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert (
            value(parse(ok.content.decode()), "carrot_queue_messages_ready", queue="default") == 3
        )
        wrong = client.get(url, headers={"Authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 401
        assert "Bearer" in wrong["WWW-Authenticate"]
        assert client.get(url).status_code == 302  # no header: the monitor's rules
    # Without a configured token, no token opens it.
    assert client.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401


def test_an_unreachable_broker_is_a_gauge_not_an_error(client):
    url = reverse("carrot:metrics")
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    carrot = dict(
        get_config_raw(), default_broker="amqp://guest:guest@127.0.0.1:1/", connect_timeout=0.5
    )
    with override_settings(CARROT=carrot):
        response = client.get(url)
    assert response.status_code == 200
    samples = parse(response.content.decode())
    assert value(samples, "carrot_queue_broker_up", queue="default") == 0
    assert ("carrot_queue_messages_ready", (("queue", "default"),)) not in samples


def get_config_raw():
    from django.conf import settings

    return dict(settings.CARROT)


def test_get_config_sees_the_token():
    with override_settings(CARROT=dict(get_config_raw(), metrics={"token": TOKEN, "port": 9191})):
        metrics = get_config().metrics
        assert (metrics.port, metrics.address, metrics.token) == (9191, "127.0.0.1", TOKEN)
        assert TOKEN not in repr(metrics)


def test_a_supervisor_whose_port_is_taken_exits_and_cleans_up(worker_factory):
    import socket

    before = set(Path(tempfile.gettempdir()).glob("carrot-metrics-*"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        supervisor = worker_factory("--processes", "2", "--metrics-port", str(port))
        assert supervisor.wait(30) != 0
    assert f"Cannot serve metrics on 127.0.0.1:{port}" in supervisor.log()
    assert "Started worker" not in supervisor.log()
    assert set(Path(tempfile.gettempdir()).glob("carrot-metrics-*")) == before
