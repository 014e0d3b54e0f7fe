"""``/metrics`` of the monitor: queue depths for Prometheus, without a worker.

Per configured queue: messages ready in RabbitMQ, its consumers and its dead letters (read
from the broker), tasks in progress and outbox entries not yet confirmed (read from the
database). A scraper sends ``Authorization: Bearer <CARROT['metrics']['token']>``; without
that header the monitor's access rules apply (a staff login by default). Needs the
``prometheus-client`` package (``django-carrot[metrics]``).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from carrot.broker.maintenance import queue_depths
from carrot.conf import CarrotConfig, get_config
from carrot.exceptions import CarrotError
from carrot.models import MessageLog, OutboxEntry
from carrot.monitor.access import monitor_view
from carrot.observability.metrics import INSTALL_HINT, available


def _bearer(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


class QueueCollector:
    """A prometheus_client collector that reads the queues once per scrape."""

    def __init__(self, config: CarrotConfig) -> None:
        self.config = config

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        def family(name: str, text: str) -> Any:
            return GaugeMetricFamily(name, text, labels=["queue"])

        ready = family("carrot_queue_messages_ready", "Messages waiting in the queue (RabbitMQ).")
        consumers = family("carrot_queue_consumers", "Consumers of the queue (RabbitMQ).")
        dead = family(
            "carrot_queue_dead_letters", "Messages in the queue's dead-letter queue (RabbitMQ)."
        )
        running = family("carrot_queue_tasks_in_progress", "Tasks of the queue in progress.")
        outbox = family(
            "carrot_queue_outbox_entries",
            "Tasks of the queue committed and not yet confirmed by RabbitMQ (the outbox).",
        )
        up = family("carrot_queue_broker_up", "1 if RabbitMQ answered for the queue, else 0.")
        in_progress = dict(
            MessageLog.objects.filter(status=MessageLog.IN_PROGRESS)
            .values_list("queue")
            .annotate(n=Count("id"))
            .values_list("queue", "n")
        )
        pending = dict(
            OutboxEntry.objects.values_list("message__queue")
            .annotate(n=Count("pk"))
            .values_list("message__queue", "n")
        )
        failed: set[Any] = set()
        for queue in self.config.queues:
            name = queue.name
            running.add_metric([name], in_progress.get(name, 0))
            outbox.add_metric([name], pending.get(name, 0))
            depths = None
            if queue.broker.key not in failed:  # one timeout per broker, not per queue
                try:
                    depths = queue_depths(queue, self.config)
                except CarrotError:
                    failed.add(queue.broker.key)
            up.add_metric([name], 0 if depths is None else 1)
            if depths is not None:
                messages, count = depths.get(name, (0, 0))
                ready.add_metric([name], messages)
                consumers.add_metric([name], count)
                dead.add_metric([name], depths.get(queue.dead_letter_queue, (0, 0))[0])
        yield from (ready, consumers, dead, running, outbox, up)


def _exposition(request: HttpRequest) -> HttpResponse:
    if not available():
        return HttpResponse(
            f"Metrics need the prometheus-client package. {INSTALL_HINT}\n",
            status=501,
            content_type="text/plain; charset=utf-8",
        )
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(get_config()))
    # The format the scraper asks for (Prometheus' text format, or OpenMetrics).
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(registry), content_type=content_type)


@monitor_view
def _for_monitor_users(request: HttpRequest) -> HttpResponse:
    return _exposition(request)


@require_GET
def queue_metrics(request: HttpRequest) -> HttpResponse:
    """Serve the queues' gauges to a scraper with the token, or to whom may see the monitor."""
    presented = _bearer(request)
    if presented is None:
        return _for_monitor_users(request)
    token = get_config().metrics.token
    if token is None or not hmac.compare_digest(presented.encode(), token.encode()):
        response = HttpResponse(
            "Wrong or unknown metrics token (CARROT['metrics']['token']).\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="carrot metrics"'
        return response
    return _exposition(request)
