"""The monitor's schedule pages: list, create, edit, delete, pause, run now, preview."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from carrot.exceptions import BrokerError, CarrotError
from carrot.masking import mask
from carrot.models import ScheduledTask
from carrot.monitor.access import monitor_view
from carrot.monitor.common import TAB_LABELS, confirm_first, counts, htmx, notify, with_notices
from carrot.monitor.forms import ScheduleForm
from carrot.registry import registry
from carrot.scheduling.cadence import Cadence, upcoming
from carrot.scheduling.edits import pause, resume, run_now


def _describe(row: ScheduledTask) -> dict[str, Any]:
    try:
        cadence = Cadence.of(row)
        zone = cadence.zone()
        describe, error = cadence.describe(), ""
    except ValueError as exc:
        cadence, zone, describe, error = None, None, "", str(exc)
    return {
        "row": row,
        "cadence": describe,
        "error": error,
        "zone": zone.key if zone else "",
        "next_run": row.next_run_at.astimezone(zone) if row.next_run_at and zone else None,
        "overdue": bool(row.next_run_at and row.next_run_at <= datetime.now(tz=UTC)),
        "kwargs": mask(row.task_kwargs),
        "args": mask(row.task_args),
        "registered": row.task in registry,
        "last": row.last_message,
    }


def _list_context() -> dict[str, Any]:
    rows = ScheduledTask.objects.select_related("last_message").order_by("task_name")
    return {
        "schedules": [_describe(row) for row in rows],
        "tabs": TAB_LABELS,
        "counts": counts(),
        "slug": "schedules",
    }


def _list_response(request: HttpRequest) -> HttpResponse:
    if htmx(request).target == "schedule-table":
        response = render(request, "carrot/_schedule_table.html", _list_context())
        return with_notices(request, response)
    return HttpResponseRedirect(reverse("carrot:schedules"))


@require_GET
@monitor_view
def schedule_list(request: HttpRequest) -> HttpResponse:
    """Every schedule with its cadence, next run, last run and result."""
    if htmx(request).target == "schedule-table":
        return render(request, "carrot/_schedule_table.html", _list_context())
    return render(request, "carrot/schedule_list.html", _list_context())


def _form_page(request: HttpRequest, form: ScheduleForm, row: ScheduledTask | None) -> Any:
    return render(
        request,
        "carrot/schedule_form.html",
        {
            "form": form,
            "row": row,
            "tabs": TAB_LABELS,
            "counts": counts(),
            "slug": "schedules",
            "readonly": bool(row and row.is_declared),
            "info": _describe(row) if row else None,
        },
    )


@require_http_methods(["GET", "POST"])
@monitor_view(permission="carrot.add_scheduledtask")
def schedule_create(request: HttpRequest) -> HttpResponse:
    form = ScheduleForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        row = form.save()
        notify(request, f"Created schedule {row.task_name!r}.")
        return HttpResponseRedirect(reverse("carrot:schedules"))
    return _form_page(request, form, None)


@require_http_methods(["GET", "POST"])
@monitor_view(permission="carrot.change_scheduledtask")
def schedule_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit a schedule; one declared in code is shown read-only (the code owns it)."""
    row = get_object_or_404(ScheduledTask, pk=pk)
    if row.is_declared:
        return _form_page(request, ScheduleForm(instance=row), row)
    form = ScheduleForm(request.POST or None, instance=row)
    if request.method == "POST" and form.is_valid():
        form.save()
        notify(request, f"Saved schedule {row.task_name!r}; its next run counts from now.")
        return HttpResponseRedirect(reverse("carrot:schedules"))
    return _form_page(request, form, row)


@require_POST
@monitor_view(permission="carrot.delete_scheduledtask")
def schedule_delete(request: HttpRequest, pk: int) -> HttpResponse:
    row = get_object_or_404(ScheduledTask, pk=pk)
    asked = confirm_first(request, f"Delete the schedule {row.task_name}?")
    if asked is not None:
        return asked
    if row.is_declared and row.removed_at is None:
        notify(request, f"{row.task_name!r} is declared in code; remove it there instead.", "error")
    else:
        row.delete()
        notify(request, f"Deleted schedule {row.task_name!r}.")
    if htmx(request) and htmx(request).target != "schedule-table":
        return HttpResponseClientRedirect(reverse("carrot:schedules"))
    return _list_response(request)


@require_POST
@monitor_view(permission="carrot.change_scheduledtask")
def schedule_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    """Pause or resume a schedule; resuming counts the next run from now (no burst)."""
    row = get_object_or_404(ScheduledTask, pk=pk)
    if row.active:
        pause(row)
        notify(request, f"Paused {row.task_name!r}.")
    else:
        try:
            resume(row)
        except ValueError as exc:
            notify(request, f"{row.task_name!r} cannot be resumed: {exc}.", "error")
            return _list_response(request)
        notify(request, f"Resumed {row.task_name!r}.")
    return _list_response(request)


@require_POST
@monitor_view(permission="carrot.change_scheduledtask")
def schedule_run(request: HttpRequest, pk: int) -> HttpResponse:
    """Publish the schedule's task now, outside its cadence."""
    row = get_object_or_404(ScheduledTask, pk=pk)
    try:
        log = run_now(row)
    except (CarrotError, BrokerError, ValueError, TypeError) as exc:
        notify(request, f"{row.task_name!r} was not published: {exc}", "error")
    else:
        notify(request, f"Published {row.task} now ({log.uuid}).")
    return _list_response(request)


@require_GET
@monitor_view
def schedule_preview(request: HttpRequest) -> HttpResponse:
    """The next runs of the cadence typed into the form (read-only, no side effects)."""
    data = request.GET
    times: list[datetime] = []
    error = ""
    zone = ""
    try:
        if data.get("kind") == "cron":
            cadence = Cadence(cron=data.get("cron", ""), timezone=data.get("timezone", ""))
        else:
            try:
                count = int(data.get("interval_count", ""))
            except ValueError:
                raise ValueError("enter a whole number of units") from None
            cadence = Cadence.every(data.get("interval_type", ""), count)
        tz = cadence.zone()
        zone = tz.key
        times = [t.astimezone(tz) for t in upcoming(cadence, datetime.now(tz=UTC), 5)]
    except ValueError as exc:
        error = str(exc)
    return render(
        request, "carrot/_schedule_preview.html", {"times": times, "error": error, "zone": zone}
    )
