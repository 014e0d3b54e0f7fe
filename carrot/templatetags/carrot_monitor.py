"""Template helpers for the monitor (Django finds them here, in the app's ``templatetags``).

Everything they return is escaped by the caller.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django import template
from django.urls import reverse
from django.utils import timezone

from carrot.masking import mask_text
from carrot.monitor.assets import version

register = template.Library()


@register.simple_tag
def carrot_asset(name: str) -> str:
    """Return the URL of a monitor asset (CSS, JS, htmx)."""
    return reverse("carrot:asset", args=[version(), name])


@register.filter
def as_json(value: Any) -> str:
    """Return JSON data as indented text (autoescaped when rendered)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


@register.filter
def as_json_inline(value: Any) -> str:
    """Return JSON data on one line, cut at 120 characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 120 else text[:119] + "…"


@register.filter
def masked(text: str) -> str:
    """Return text with URL passwords and ``secret_name=value`` values masked."""
    return mask_text(text)


@register.filter
def get_item(mapping: dict[str, Any], key: str) -> Any:
    return mapping.get(key, "")


@register.filter
def duration(value: timedelta | None) -> str:
    """Return a short human duration: 850 ms, 12.3 s, 4 min 5 s, 2 h 3 min."""
    if value is None:
        return ""
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@register.filter
def seconds(value: float | None) -> str:
    """Return a runtime in seconds the way ``duration`` does: 3 ms, 1.2 s, 4 min 5 s."""
    if value is None:
        return ""
    if value < 0.001:
        return f"{value * 1000:.2f} ms"
    return duration(timedelta(seconds=value))


@register.filter
def percent(value: float | None) -> str:
    """Return a fraction as a percentage: 0.0123 -> 1.2%."""
    if value is None:
        return ""
    if 0 < value < 0.001:
        return "<0.1%"
    return f"{value * 100:.1f}%"


@register.filter
def relative(value: datetime | None) -> str:
    """Return how long ago (or from now) a time is: "just now", "42 s ago", "in 3 min"."""
    if value is None:
        return ""
    seconds = (value - timezone.now()).total_seconds()
    future, seconds = seconds > 0, abs(seconds)
    if seconds < 5:
        return "just now" if not future else "now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            amount = f"{seconds / size:.0f} {unit}"
            break
    else:
        amount = f"{seconds:.0f} s"
    return f"in {amount}" if future else f"{amount} ago"


@register.filter
def status_class(status: str) -> str:
    return {
        "PUBLISHED": "queued",
        "IN_PROGRESS": "running",
        "FAILED": "failed",
        "COMPLETED": "completed",
        "CANCELLED": "cancelled",
    }.get(status, "neutral")
