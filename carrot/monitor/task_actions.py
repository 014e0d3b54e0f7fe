"""The monitor's actions on tasks: requeue, delete (one, selected or by filter), purge a
queue. POST only, CSRF-protected, each with the model permission it needs."""

from __future__ import annotations

import uuid

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from carrot.broker.maintenance import purge_queue
from carrot.conf import get_config
from carrot.exceptions import BrokerError, CarrotError, NotRequeueable
from carrot.models import MessageLog
from carrot.models.lifecycle import PURGE
from carrot.monitor.access import may, monitor_view
from carrot.monitor.common import STATUSES, htmx, notify, status_slug, with_notices
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
    if _requeue_one(request, log):
        notify(request, f"Requeued {log.task}.")
    if htmx(request).target == "task-detail":
        log.refresh_from_db()
        response = render(request, "carrot/_task_detail.html", detail_context(request, log))
        return with_notices(request, response)
    return _after_action(request, "failed")


@require_POST
@monitor_view(permission="carrot.delete_messagelog")
def task_delete(request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
    """Delete a finished task's row (a queued copy of it is then skipped by workers)."""
    log = get_object_or_404(MessageLog, uuid=pk)
    slug = status_slug(log.status)
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
    config = get_config()
    try:
        queue = config.queue(name)
        removed = purge_queue(queue, config)
    except (CarrotError, BrokerError) as exc:
        notify(request, f"Queue {name!r} was not purged: {exc}", "error")
        return _after_action(request, "queued")
    user = getattr(request.user, "get_username", lambda: "someone")()
    marked = MessageLog.objects.filter(queue=name).apply(
        PURGE,
        exception=f"Purged from queue {name!r} by {user} in the monitor; requeue it to run it.",
    )
    notify(request, f"Purged {removed} message(s) from {name!r}; {marked} task(s) marked failed.")
    return _after_action(request, "queued")
