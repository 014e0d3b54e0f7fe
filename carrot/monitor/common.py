"""What every monitor page shares: the tabs and their counts, htmx details, notices."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django_htmx.middleware import HtmxDetails

from carrot.models import MessageLog

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
