"""The monitor's task pages: a tab per status, the tab counts, and one task's page.

Each page renders whole on a normal request and as a fragment when htmx asks for one
(``HX-Target``); every view goes through ``monitor_view`` (staff login by default).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django_htmx.http import HttpResponseStopPolling

from carrot.conf import get_config
from carrot.masking import mask
from carrot.models import MessageLog
from carrot.models.history import attempts_of
from carrot.monitor.access import monitor_view
from carrot.monitor.common import STATUSES, TAB_LABELS, counts, htmx, status_slug
from carrot.monitor.filters import Filters, page
from carrot.registry import registry

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LEVEL_NUMBERS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def _row(log: MessageLog) -> dict[str, Any]:
    return {"log": log, "args": mask(log.task_args), "kwargs": mask(log.task_kwargs)}


def list_context(request: HttpRequest, slug: str, data: Any = None) -> dict[str, Any]:
    """Build a tab's context from ``data`` (the list's query: filters and cursor)."""
    data = request.GET if data is None else data
    status = STATUSES[slug]
    filters = Filters.from_request(data)
    qs = filters.apply(MessageLog.objects.filter(status=status))
    before, after = str(data.get("before", "")), str(data.get("after", ""))
    rows, newer, older = page(qs, before, after)
    config = get_config()
    return {
        "slug": slug,
        "status": status,
        "title": TAB_LABELS[slug],
        "rows": [_row(log) for log in rows],
        "filters": filters,
        "newer": newer,
        "older": older,
        "queues": config.queue_names,
        "tasks": registry.names(),
        "counts": counts(),
        "tabs": TAB_LABELS,
        "list_url": reverse("carrot:tasks", args=[slug]),
        "page_query": filters.query(before=before, after=after),
    }


@require_GET
@monitor_view
def index(request: HttpRequest) -> HttpResponse:
    return redirect("carrot:tasks", "queued")


@require_GET
@monitor_view
def task_list(request: HttpRequest, slug: str) -> HttpResponse:
    """A tab: the tasks in one status, newest first, filtered and paginated."""
    if slug not in STATUSES:
        raise Http404
    context = list_context(request, slug)
    if htmx(request).target == "task-table":
        return render(request, "carrot/_task_table.html", context)
    return render(request, "carrot/task_list.html", context)


@require_GET
@monitor_view
def tab_counts(request: HttpRequest) -> HttpResponse:
    """The live counts in the tabs (polled)."""
    current = request.GET.get("current", "")
    return render(
        request, "carrot/_tabs.html", {"counts": counts(), "tabs": TAB_LABELS, "slug": current}
    )


def _log_level(request: HttpRequest) -> str:
    level = str(request.GET.get("level", "INFO")).upper()
    return level if level in LEVEL_NUMBERS else "INFO"


def detail_context(request: HttpRequest, log: MessageLog) -> dict[str, Any]:
    level = _log_level(request)
    return {
        "log": log,
        "slug": status_slug(log.status),
        "args": mask(log.task_args),
        "kwargs": mask(log.task_kwargs),
        "output": mask(log.output),
        "records": [mask(r) for r in log.log or [] if r.get("levelno", 0) >= LEVEL_NUMBERS[level]],
        "level": level,
        "levels": LOG_LEVELS,
        "registered": log.task in registry,
        "attempts": attempts_of(log),
        "tabs": TAB_LABELS,
        "counts": counts(),
    }


@require_GET
@monitor_view
def task_detail(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """One task: arguments, timings, output, exception, traceback and its log."""
    log = MessageLog.objects.filter(uuid=pk).first()
    details = htmx(request)
    if details.target == "task-detail":
        if log is None:
            return HttpResponseStopPolling()
        if log.is_finished and request.GET.get("seen") == log.status:
            return HttpResponseStopPolling()  # nothing can change any more
        return render(request, "carrot/_task_detail.html", detail_context(request, log))
    if log is None:
        raise Http404("No task with this id (it may have been deleted).")
    if details.target == "task-log":
        return render(request, "carrot/_task_log.html", detail_context(request, log))
    return render(request, "carrot/task_detail.html", detail_context(request, log))
