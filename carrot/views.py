"""The monitor's task pages: lists by status, task detail, and the actions on tasks.

Each page renders whole on a normal request and as a fragment when htmx asks for one
(``HX-Target``). Mutating views are POST-only and CSRF-protected; every view goes through
``monitor_view`` (staff login by default).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect, HttpResponseStopPolling
from django_htmx.middleware import HtmxDetails

from carrot.access import may, monitor_view
from carrot.conf import get_config
from carrot.exceptions import BrokerError, CarrotError, NotRequeueable
from carrot.masking import mask
from carrot.models import MessageLog
from carrot.registry import registry

logger = logging.getLogger(__name__)

STATUSES = {
    "queued": MessageLog.PUBLISHED,
    "in-progress": MessageLog.IN_PROGRESS,
    "failed": MessageLog.FAILED,
    "completed": MessageLog.COMPLETED,
}
TAB_LABELS = {
    "queued": "Queued",
    "in-progress": "In progress",
    "failed": "Failed",
    "completed": "Completed",
}
PAGE_SIZE = 50
COUNT_CAP = 10_000  # counts stop here: no full-table COUNT(*) on every poll
BULK_LIMIT = 1000
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LEVEL_NUMBERS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


# ------------------------------------------------------------------ helpers


def htmx(request: HttpRequest) -> HtmxDetails:
    return HtmxDetails(request)


def notify(request: HttpRequest, text: str, level: str = "success") -> None:
    """Queue a notice: shown by the next fragment (htmx) or page (messages framework)."""
    notices = getattr(request, "_carrot_notices", [])
    notices.append({"text": text, "level": level})
    request._carrot_notices = notices  # type: ignore[attr-defined]
    if not htmx(request):
        try:
            messages.add_message(
                request, messages.ERROR if level == "error" else messages.SUCCESS, text
            )
        except messages.MessageFailure:
            pass  # the project has no messages framework; the redirect target still loads


def with_notices(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Append the queued notices as an out-of-band swap of #notices."""
    notices = getattr(request, "_carrot_notices", None)
    if notices:
        response.write(render_to_string("carrot/_notices.html", {"notices": notices, "oob": True}))
    return response


def counts() -> dict[str, str]:
    """Return the tab counts, capped so a huge COMPLETED table costs no full count."""
    out = {}
    for slug, status in STATUSES.items():
        n = MessageLog.objects.filter(status=status)[: COUNT_CAP + 1].count()
        out[slug] = f"{COUNT_CAP:,}+" if n > COUNT_CAP else f"{n:,}"
    return out


@dataclass
class Filters:
    q: str = ""
    queue: str = ""
    task: str = ""

    @classmethod
    def from_request(cls, data: Any) -> Filters:
        return cls(
            q=str(data.get("q", "")).strip()[:200],
            queue=str(data.get("queue", "")).strip()[:255],
            task=str(data.get("task", "")).strip()[:255],
        )

    def apply(self, qs: QuerySet[MessageLog]) -> QuerySet[MessageLog]:
        if self.queue:
            qs = qs.filter(queue=self.queue)
        if self.task:
            qs = qs.filter(task=self.task)
        if self.q:
            try:
                return qs.filter(uuid=uuid.UUID(self.q))
            except ValueError:
                pass
            qs = qs.annotate(
                args_text=Cast("task_args", TextField()),
                kwargs_text=Cast("task_kwargs", TextField()),
            ).filter(
                Q(task__icontains=self.q)
                | Q(args_text__icontains=self.q)
                | Q(kwargs_text__icontains=self.q)
            )
        return qs

    def query(self, **extra: Any) -> str:
        params = {
            k: v
            for k, v in (("q", self.q), ("queue", self.queue), ("task", self.task), *extra.items())
            if v
        }
        return urlencode(params)

    @property
    def active(self) -> bool:
        return bool(self.q or self.queue or self.task)


def _status_slug(status: str) -> str:
    for slug, value in STATUSES.items():
        if value == status:
            return slug
    raise Http404


def _page(qs: QuerySet[MessageLog], before: str, after: str) -> tuple[list[MessageLog], Any, Any]:
    """Keyset pagination on id (newest first): return rows, newer cursor, older cursor."""
    if after.isdigit():
        rows = list(qs.filter(id__gt=int(after)).order_by("id")[: PAGE_SIZE + 1])
        has_more_newer = len(rows) > PAGE_SIZE
        rows = list(reversed(rows[:PAGE_SIZE]))
        newer = rows[0].id if rows and has_more_newer else None
        older = rows[-1].id if rows and qs.filter(id__lt=rows[-1].id).exists() else None
        return rows, newer, older
    if before.isdigit():
        qs = qs.filter(id__lt=int(before))
    rows = list(qs.order_by("-id")[: PAGE_SIZE + 1])
    older = rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None
    rows = rows[:PAGE_SIZE]
    newer = rows[0].id if rows and before.isdigit() else None
    return rows, newer, older


def _row(log: MessageLog) -> dict[str, Any]:
    return {"log": log, "args": mask(log.task_args), "kwargs": mask(log.task_kwargs)}


def _list_context(request: HttpRequest, slug: str, data: Any = None) -> dict[str, Any]:
    """Build a tab's context from ``data`` (the list's query: filters and cursor)."""
    data = request.GET if data is None else data
    status = STATUSES[slug]
    filters = Filters.from_request(data)
    qs = filters.apply(MessageLog.objects.filter(status=status))
    before, after = str(data.get("before", "")), str(data.get("after", ""))
    rows, newer, older = _page(qs, before, after)
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


# ------------------------------------------------------------------ pages


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
    context = _list_context(request, slug)
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


def _detail_context(request: HttpRequest, log: MessageLog) -> dict[str, Any]:
    level = _log_level(request)
    return {
        "log": log,
        "slug": _status_slug(log.status),
        "args": mask(log.task_args),
        "kwargs": mask(log.task_kwargs),
        "output": mask(log.output),
        "records": [r for r in log.log or [] if r.get("levelno", 0) >= LEVEL_NUMBERS[level]],
        "level": level,
        "levels": LOG_LEVELS,
        "registered": log.task in registry,
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
        return render(request, "carrot/_task_detail.html", _detail_context(request, log))
    if log is None:
        raise Http404("No task with this id (it may have been deleted).")
    if details.target == "task-log":
        return render(request, "carrot/_task_log.html", _detail_context(request, log))
    return render(request, "carrot/task_detail.html", _detail_context(request, log))


# ------------------------------------------------------------------ actions


def _back_to_list(request: HttpRequest, slug: str) -> HttpResponse:
    url = reverse("carrot:tasks", args=[slug])
    query = Filters.from_request(request.POST).query()
    return HttpResponseRedirect(f"{url}?{query}" if query else url)


def _after_action(request: HttpRequest, slug: str) -> HttpResponse:
    """Re-render what the action came from: the list table or the detail page."""
    if htmx(request).target == "task-table":
        # The form carries the list's filters and cursor, so the same page comes back.
        context = _list_context(request, slug, request.POST)
        return with_notices(request, render(request, "carrot/_task_table.html", context))
    return _back_to_list(request, slug)


def _requeue_one(request: HttpRequest, log: MessageLog) -> bool:
    try:
        log.requeue()
    except NotRequeueable as exc:
        notify(request, str(exc), "error")
        return False
    except BrokerError as exc:
        notify(request, f"The task was not requeued: {exc}", "error")
        return False
    return True


@require_POST
@monitor_view(permission="carrot.change_messagelog")
def task_requeue(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Publish a failed task again."""
    log = get_object_or_404(MessageLog, uuid=pk)
    if _requeue_one(request, log):
        notify(request, f"Requeued {log.task}.")
    if htmx(request).target == "task-detail":
        log.refresh_from_db()
        response = render(request, "carrot/_task_detail.html", _detail_context(request, log))
        return with_notices(request, response)
    return _after_action(request, "failed")


@require_POST
@monitor_view(permission="carrot.delete_messagelog")
def task_delete(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Delete a finished task's row (a queued copy of it is then skipped by workers)."""
    log = get_object_or_404(MessageLog, uuid=pk)
    slug = _status_slug(log.status)
    # Conditional: the row may have started running since the page was drawn.
    deleted, _ = (
        MessageLog.objects.filter(pk=log.pk).exclude(status=MessageLog.IN_PROGRESS).delete()
    )
    if deleted:
        notify(request, f"Deleted {log.task}.")
    else:
        notify(request, "A task that is running cannot be deleted.", "error")
    if htmx(request).target == "task-detail":
        return HttpResponseClientRedirect(reverse("carrot:tasks", args=[slug]))
    return _after_action(request, slug)


@require_POST
@monitor_view
def bulk_action(request: HttpRequest, slug: str) -> HttpResponse:
    """Requeue or delete the selected rows, or every row matching the current filter."""
    if slug not in STATUSES:
        raise Http404
    action = request.POST.get("action")
    needed = "carrot.delete_messagelog" if action == "delete" else "carrot.change_messagelog"
    if not may(request, needed):
        raise PermissionDenied(f"You need the {needed!r} permission for this action.")
    qs: QuerySet[MessageLog] = MessageLog.objects.filter(status=STATUSES[slug])
    # "scope" comes from hx-vals, or from the button's formaction without JavaScript.
    if (request.POST.get("scope") or request.GET.get("scope")) == "filter":
        qs = Filters.from_request(request.POST).apply(qs)
    else:
        ids = []
        for value in request.POST.getlist("ids")[:BULK_LIMIT]:
            try:
                ids.append(uuid.UUID(value))
            except ValueError:
                continue
        if not ids:
            notify(request, "Select some tasks first.", "error")
            return _after_action(request, slug)
        qs = qs.filter(uuid__in=ids)
    if action == "requeue" and slug == "failed":
        done = sum(_requeue_one(request, log) for log in qs.order_by("id")[:BULK_LIMIT])
        notify(
            request,
            f"Requeued {done} task{'s' if done != 1 else ''}.",
            "success" if done else "error",
        )
    elif action == "delete" and slug != "in-progress":
        done = _delete_batched(qs)
        notify(request, f"Deleted {done} task{'s' if done != 1 else ''}.")
    else:
        notify(request, "That action is not possible here.", "error")
    return _after_action(request, slug)


def _delete_batched(qs: QuerySet[MessageLog], batch: int = 1000, batches: int = 100) -> int:
    deleted = 0
    for _ in range(batches):
        ids = list(qs.order_by("id").values_list("id", flat=True)[:batch])
        if not ids:
            break
        # Through qs again: a row that left its status meanwhile (started) is kept.
        _, per_model = qs.filter(id__in=ids).delete()
        deleted += per_model.get(MessageLog._meta.label, 0)
    return deleted


@require_POST
@monitor_view(permission="carrot.delete_messagelog")
def queue_purge(request: HttpRequest, name: str) -> HttpResponse:
    """Drop every message waiting in a queue; their rows become FAILED ("purged")."""
    from carrot.broker import purge_queue

    config = get_config()
    try:
        queue = config.queue(name)
        removed = purge_queue(queue, config)
    except (CarrotError, BrokerError) as exc:
        notify(request, f"Queue {name!r} was not purged: {exc}", "error")
        return _after_action(request, "queued")
    user = getattr(request.user, "get_username", lambda: "someone")()
    marked = MessageLog.objects.filter(status=MessageLog.PUBLISHED, queue=name).mark_failed(
        exception=f"Purged from queue {name!r} by {user} in the monitor; requeue it to run it.",
        from_statuses=(MessageLog.PUBLISHED,),
    )
    notify(request, f"Purged {removed} message(s) from {name!r}; {marked} task(s) marked failed.")
    return _after_action(request, "queued")
