"""Task statistics: per task name over a window, runs, failure rate and runtimes.

Read from the rollups (``carrot.models.statistics``), so the page costs about the same on
a thousand rows and on millions; the view sums what finished since the last roll-up
first, so the figures are current even when no worker is running.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from carrot.models.statistics import WINDOWS, Summary, roll_up, task_summaries
from carrot.monitor.access import monitor_view
from carrot.monitor.common import TAB_LABELS, counts, htmx

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = "24h"
ROLL_UP_BUDGET = 2.0  # seconds a page view may spend summing what finished
WINDOW_LABELS = {"1h": "1 hour", "24h": "24 hours", "7d": "7 days"}
COLUMNS = {  # sort key -> (heading, value of a row, numeric?)
    "task": ("Task", lambda r: r.task.lower(), False),
    "runs": ("Runs", lambda r: r.summary.runs, True),
    "failure_rate": ("Failure rate", lambda r: r.summary.failure_rate, True),
    "p50": ("p50", lambda r: r.p50 or 0.0, True),
    "p95": ("p95", lambda r: r.p95 or 0.0, True),
    "max": ("Max", lambda r: r.summary.runtime_max, True),
    "last_failure": (
        "Last failure",
        lambda r: r.summary.last_failure_time.timestamp() if r.summary.last_failure_time else 0,
        True,
    ),
}
DEFAULT_SORT = "runs"


@dataclass
class StatRow:
    task: str
    summary: Summary

    @property
    def p50(self) -> float | None:
        return self.summary.percentile(0.5)

    @property
    def p95(self) -> float | None:
        return self.summary.percentile(0.95)


def _choice(value: Any, allowed: Any, default: str) -> str:
    value = str(value or "")
    return value if value in allowed else default


def statistics_context(request: HttpRequest) -> dict[str, Any]:
    window = _choice(request.GET.get("window"), WINDOWS, DEFAULT_WINDOW)
    sort = _choice(request.GET.get("sort"), COLUMNS, DEFAULT_SORT)
    # Numbers read best largest first; names A to Z.
    default_dir = "desc" if COLUMNS[sort][2] else "asc"
    direction = _choice(request.GET.get("dir"), ("asc", "desc"), default_dir)
    error = ""
    try:
        # Workers sum once a minute; this catches up the rest, within a budget (a first
        # look at a long history leaves the remainder to the workers and the tail).
        roll_up(budget=ROLL_UP_BUDGET)
    except DatabaseError as exc:  # the page still shows what was summed before
        logger.warning("Could not sum the task statistics: %s", exc)
        error = "The latest tasks could not be summed; figures may be a few minutes old."
    rows = [StatRow(task, s) for task, s in task_summaries(window).items() if s.runs]
    rows.sort(key=COLUMNS[sort][1], reverse=direction == "desc")
    base = reverse("carrot:statistics")
    headings = []
    for key, (label, _, numeric) in COLUMNS.items():
        flip = "asc" if (key == sort and direction == "desc") else "desc"
        if key != sort:
            flip = "desc" if numeric else "asc"
        query = urlencode({"window": window, "sort": key, "dir": flip})
        headings.append(
            {
                "key": key,
                "label": label,
                "numeric": numeric,
                "url": f"{base}?{query}",
                "sorted": ("ascending" if direction == "asc" else "descending")
                if key == sort
                else "",
            }
        )
    return {
        "slug": "statistics",
        "tabs": TAB_LABELS,
        "counts": counts(),
        "window": window,
        "windows": [
            (key, label, f"{base}?{urlencode({'window': key, 'sort': sort, 'dir': direction})}")
            for key, label in WINDOW_LABELS.items()
        ],
        "window_label": WINDOW_LABELS[window],
        "rows": rows,
        "headings": headings,
        "error": error,
        "total_runs": sum(r.summary.runs for r in rows),
        "total_failed": sum(r.summary.failed for r in rows),
    }


@transaction.non_atomic_requests  # a failed roll-up must not break the page's reads
@require_GET
@monitor_view
def task_statistics(request: HttpRequest) -> HttpResponse:
    """Runs, failure rate and runtimes per task over 1 h, 24 h or 7 days; sortable."""
    context = statistics_context(request)
    if htmx(request).target == "statistics":
        return render(request, "carrot/_statistics.html", context)
    return render(request, "carrot/statistics.html", context)
