"""Serve the monitor's CSS, JavaScript and the htmx that django-htmx vendors.

Served by carrot itself (behind the monitor's access check), so the monitor works without
any static-files setup and never loads anything from another origin. The version in the
URL changes with carrot's, so browsers may cache them for a year.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from django.http import FileResponse, Http404, HttpRequest
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_GET

from carrot.monitor.access import monitor_view
from carrot.version import __version__

_STATIC = Path(__file__).resolve().parent.parent / "static" / "carrot"
ASSETS = {
    "carrot.css": ("text/css", lambda: _STATIC / "carrot.css"),
    "carrot.js": ("text/javascript", lambda: _STATIC / "carrot.js"),
    "htmx.min.js": (
        "text/javascript",
        lambda: Path(str(resources.files("django_htmx") / "static/django_htmx/htmx-2.min.js")),
    ),
}


def version() -> str:
    return __version__


@require_GET
@monitor_view
def asset(request: HttpRequest, version: str, name: str) -> FileResponse:
    entry = ASSETS.get(name)
    if entry is None:
        raise Http404
    content_type, locate = entry
    path = locate()
    if not path.is_file():
        raise Http404
    response = FileResponse(path.open("rb"), content_type=content_type)
    patch_cache_control(response, private=True, max_age=31536000, immutable=True)
    return response
