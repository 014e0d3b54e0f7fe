"""The monitor's actions on tasks: requeue, delete (one, selected or by filter), purge a
queue. POST only, CSRF-protected, each with the model permission it needs."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from carrot.broker.maintenance import drain_queue
from carrot.conf import get_config
from carrot.exceptions import BrokerError, CarrotError, NotCancellable, NotRequeueable
from carrot.models import MessageLog
from carrot.models.lifecycle import PURGE
from carrot.monitor.access import may, monitor_view
from carrot.monitor.common import (
    STATUSES,
    TAB_LABELS,
    confirm_first,
    htmx,
    notify,
    status_slug,
    with_notices,
)
from carrot.monitor.filters import Filters
from carrot.monitor.task_views import detail_context, list_context

BULK_LIMIT = 1000


def _back_to_list(request: HttpRequest, slug: str) -> HttpResponse:
    url = reverse("carrot:tasks", args=[slug])
    query = Filters.from_request(request.POST).query()
    return HttpResponseRedirect(f"{url}?{query}" if query else url)


def _after_action(request: HttpRequest, slug: str) -> HttpResponse:
    """Re-render what the action came from: the list table or the detail page."""
    if htmx(request).target == "task-table":
        # The form carries the list's filters and cursor, so the same page comes back.
        context = list_context(request, slug, request.POST)
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
    asked = confirm_first(request, f"Requeue {log.task}?")
    if asked is not None:
        return asked
    if _requeue_one(request, log):
        notify(request, f"Requeued {log.task}.")
    if htmx(request).target == "task-detail":
        log.refresh_from_db()
        response = render(request, "carrot/_task_detail.html", detail_context(request, log))
        return with_notices(request, response)
    return _after_action(request, "failed")


@require_POST
@monitor_view(permission="carrot.change_messagelog")
def task_cancel(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Cancel a queued task (it never runs) or ask a running one to stop."""
    log = get_object_or_404(MessageLog, uuid=pk)
    asked = confirm_first(request, f"Cancel {log.task}?")
    if asked is not None:
        return asked
    user = getattr(request, "user", None)
    by = user.get_username() if user is not None and user.is_authenticated else "the monitor"
    try:
        log = log.cancel(by)
    except NotCancellable as exc:
        notify(request, str(exc), "error")
    else:
        running = log.status == MessageLog.IN_PROGRESS
        notify(request, f"Asked {log.task} to stop." if running else f"Cancelled {log.task}.")
    if htmx(request).target == "task-detail":
        log.refresh_from_db()
        response = render(request, "carrot/_task_detail.html", detail_context(request, log))
        return with_notices(request, response)
    return _after_action(request, "cancelled")


@require_POST
@monitor_view(permission="carrot.delete_messagelog")
def task_delete(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Delete a finished task's row (a queued copy of it is then skipped by workers)."""
    log = get_object_or_404(MessageLog, uuid=pk)
    slug = status_slug(log.status)
    asked = confirm_first(request, f"Delete the record of {log.task} ({log.uuid})?")
    if asked is not None:
        return asked
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


DELETE_LIMIT = 100 * 1000  # rows one "delete all" deletes, in batches of 1000


def _bulk_rows(request: HttpRequest, slug: str, data: Any) -> tuple[str, QuerySet[MessageLog]]:
    """Return the action and the rows a bulk request would touch (before its limit)."""
    if slug not in STATUSES:
        raise Http404
    action = str(data.get("action", ""))
    needed = "carrot.delete_messagelog" if action == "delete" else "carrot.change_messagelog"
    if not may(request, needed):
        raise PermissionDenied(f"You need the {needed!r} permission for this action.")
    qs: QuerySet[MessageLog] = MessageLog.objects.filter(status=STATUSES[slug])
    # "scope" comes from hx-vals, or from the button's formaction without JavaScript.
    if (data.get("scope") or request.GET.get("scope")) == "filter":
        return action, Filters.from_request(data).apply(qs)
    ids = []
    for value in data.getlist("ids")[:BULK_LIMIT]:
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            continue
    return action, qs.filter(uuid__in=ids)


def _question(action: str, slug: str, qs: QuerySet[MessageLog], data: Any) -> str:
    """Say what a bulk action will touch, with the number of tasks (up to its limit)."""
    limit = DELETE_LIMIT if action == "delete" else BULK_LIMIT
    count = qs[: limit + 1].count()
    verb = "Delete" if action == "delete" else "Requeue"
    what = f"{TAB_LABELS[slug].lower()} task{'s' if count != 1 else ''}"
    if (data.get("scope") or "") != "filter":
        return f"{verb} the {count:,} selected {what}?"
    scope = " matching the filter" if Filters.from_request(data).active else ""
    if count > limit:
        return f"{verb} the oldest {limit:,} of more than {limit:,} {what}{scope}?"
    return f"{verb} {'all ' if not scope else ''}{count:,} {what}{scope}?"


@require_GET
@monitor_view
def bulk_question(request: HttpRequest, slug: str) -> JsonResponse:
    """The question the browser asks before a bulk action by filter (carrot.js)."""
    action, qs = _bulk_rows(request, slug, request.GET)
    return JsonResponse({"question": _question(action, slug, qs, request.GET)})


@require_POST
@monitor_view
def bulk_action(request: HttpRequest, slug: str) -> HttpResponse:
    """Requeue or delete the selected rows, or every row matching the current filter."""
    action, qs = _bulk_rows(request, slug, request.POST)
    by_filter = (request.POST.get("scope") or request.GET.get("scope")) == "filter"
    if not by_filter and not request.POST.getlist("ids"):
        notify(request, "Select some tasks first.", "error")
        return _after_action(request, slug)
    data = request.POST.copy()
    if by_filter:
        data["scope"] = "filter"  # also when it came in the URL (no JavaScript)
    asked = confirm_first(request, _question(action, slug, qs, data))
    if asked is not None:
        return asked
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
    """Drop the messages waiting in a queue; exactly their tasks become FAILED ("purged").

    Tasks waiting in a delay queue (countdown, retry) or not published yet are untouched.
    """
    asked = confirm_first(
        request, f"Drop every message waiting in queue {name}? Their tasks will be marked failed."
    )
    if asked is not None:
        return asked
    config = get_config()
    try:
        queue = config.queue(name)
        removed = drain_queue(queue, config)
    except (CarrotError, BrokerError) as exc:
        notify(request, f"Queue {name!r} was not purged: {exc}", "error")
        return _after_action(request, "queued")
    user = getattr(request.user, "get_username", lambda: "someone")()
    ids: list[uuid.UUID] = [u for u in map(_uuid, removed) if u is not None]
    reason = f"Purged from queue {name!r} by {user} in the monitor; requeue it to run it."
    marked = 0
    for start in range(0, len(ids), 1000):
        rows = MessageLog.objects.filter(uuid__in=ids[start : start + 1000])
        marked += rows.apply(PURGE, exception=reason)
    notify(request, f"Purged {len(removed)} message(s) from {name!r}; {marked} marked failed.")
    return _after_action(request, "queued")


def _uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
