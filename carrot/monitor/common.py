"""What every monitor page shares: the tabs and their counts, htmx details, notices."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django_htmx.middleware import HtmxDetails

from carrot.models import MessageLog

STATUSES = {
    "queued": MessageLog.PUBLISHED,
    "in-progress": MessageLog.IN_PROGRESS,
    "failed": MessageLog.FAILED,
    "completed": MessageLog.COMPLETED,
    "cancelled": MessageLog.CANCELLED,
}
TAB_LABELS = {
    "queued": "Queued",
    "in-progress": "In progress",
    "failed": "Failed",
    "completed": "Completed",
    "cancelled": "Cancelled",
}
COUNT_CAP = 10_000  # counts stop here: no full-table COUNT(*) on every poll


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


def status_slug(status: str) -> str:
    """Return the tab of a status."""
    for slug, value in STATUSES.items():
        if value == status:
            return slug
    raise Http404


def confirm_first(request: HttpRequest, question: str) -> HttpResponse | None:
    """Ask before a destructive action when the browser could not (no JavaScript).

    With htmx the browser asked already (``hx-confirm``, or carrot.js for actions whose
    question needs a count from the server); a plain form post gets a page with the
    question, and the action runs when that page is submitted (``confirmed=yes``).
    Returns None when the action may go ahead.
    """
    if htmx(request) or request.POST.get("confirmed") == "yes":
        return None
    fields = [
        (key, value)
        for key in request.POST
        if key not in ("csrfmiddlewaretoken", "confirmed")
        for value in request.POST.getlist(key)
    ]
    back = request.META.get("HTTP_REFERER") or reverse("carrot:index")
    context = {
        "question": question,
        "fields": fields,
        "action": request.get_full_path(),
        "back": back if back.startswith(("/", request.build_absolute_uri("/"))) else "/",
        "tabs": TAB_LABELS,
        "counts": counts(),
    }
    return render(request, "carrot/confirm.html", context)
