"""The overview, the monitor's landing page: workers, queues and throughput, live.

Workers come from their heartbeats (and what each runs now from MessageLog), queue depths
from RabbitMQ (a passive declare of each queue and its dead letters; a broker that cannot
be reached is shown as such), the delayed, queued and running counts, the outbox and the
throughput chart from the database (``models.statistics``).
The page polls its fragment every few seconds while the tab is visible.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from carrot.broker.maintenance import queue_depths
from carrot.conf import CarrotConfig, QueueConfig, get_config
from carrot.exceptions import CarrotError
from carrot.models import MessageLog, OutboxEntry, WorkerHeartbeat
from carrot.models.statistics import per_minute
from carrot.monitor.access import monitor_view
from carrot.monitor.charts import throughput_chart
from carrot.monitor.common import COUNT_CAP, TAB_LABELS, counts, htmx

# A worker not seen for this long is hidden (a clean exit removes its row at once).
HIDE_AFTER = timedelta(minutes=10)


@dataclass
class WorkerRow:
    beat: WorkerHeartbeat
    stale: bool
    running: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class QueueRow:
    config: QueueConfig
    ready: int | None = None
    consumers: int | None = None
    dead_letters: int | None = None
    delayed: str = ""
    queued: str = ""
    in_progress: str = ""
    error: str = ""


def capped(qs: Any) -> str:
    n = qs[: COUNT_CAP + 1].count()
    return f"{COUNT_CAP:,}+" if n > COUNT_CAP else f"{n:,}"


def workers(now: datetime) -> list[WorkerRow]:
    beats = WorkerHeartbeat.objects.filter(last_seen__gte=now - HIDE_AFTER).order_by(
        "hostname", "pid", "name"
    )
    rows = {b.name: WorkerRow(b, b.last_seen < now - WorkerHeartbeat.LEASE) for b in beats}
    running = MessageLog.objects.filter(
        status=MessageLog.IN_PROGRESS, worker__in=list(rows)
    ).values("uuid", "task", "queue", "start_time", "worker")
    for task in running.order_by("start_time")[:500]:
        started = task["start_time"]
        rows[task["worker"]].running.append({**task, "runtime": now - started if started else None})
    return list(rows.values())


def queues(config: CarrotConfig, now: datetime) -> list[QueueRow]:
    rows = [QueueRow(q) for q in config.queues]
    failed_brokers: dict[Any, str] = {}
    for row in rows:
        q = row.config
        row.queued = capped(MessageLog.objects.filter(status=MessageLog.PUBLISHED, queue=q.name))
        row.in_progress = capped(
            MessageLog.objects.filter(status=MessageLog.IN_PROGRESS, queue=q.name)
        )
        # Waiting in a delay queue (countdown, retry): from the rows, because a passive
        # declare of every delay bucket would cost a channel (and a broker warning) each.
        row.delayed = capped(
            MessageLog.objects.filter(status=MessageLog.PUBLISHED, queue=q.name, eta__gt=now)
        )
        if q.broker.key in failed_brokers:  # one timeout per broker, not one per queue
            row.error = failed_brokers[q.broker.key]
            continue
        try:
            depths = queue_depths(q, config)
        except CarrotError as exc:
            row.error = failed_brokers[q.broker.key] = str(exc)
            continue
        row.ready, row.consumers = depths.get(q.name, (None, None))
        row.dead_letters = depths.get(q.dead_letter_queue, (0, 0))[0]
    return rows


def overview_context() -> dict[str, Any]:
    now = timezone.now()
    config = get_config()
    minutes = per_minute(60, now)
    hosts: dict[str, int] = defaultdict(int)
    rows = workers(now)
    for row in rows:
        hosts[row.beat.hostname] += 1
    return {
        "slug": "overview",
        "tabs": TAB_LABELS,
        "counts": counts(),
        "now": now,
        "workers": rows,
        "hosts": len(hosts),
        "queues": queues(config, now),
        "outbox": capped(OutboxEntry.objects.all()),
        "chart": throughput_chart(minutes),
        "last_minute": minutes[-1] if minutes else None,
    }


@require_GET
@monitor_view
def overview(request: HttpRequest) -> HttpResponse:
    """Workers, queues and throughput; the fragment is polled while the tab is visible."""
    context = overview_context()
    if htmx(request).target == "overview":
        return render(request, "carrot/_overview.html", context)
    return render(request, "carrot/overview.html", context)
