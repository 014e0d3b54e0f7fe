"""Who may see and operate the monitor.

Default: active staff users; actions also need the model permission (``change`` to requeue,
``delete`` to delete or purge, ``add``/``change``/``delete`` on schedules). The dotted
decorators in CARROT['monitor_authentication'] replace that check entirely; the monitor is
public only with CARROT['monitor_public'] = True.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_protect
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from carrot.conf import get_config

View = Callable[..., HttpResponseBase]


def login_url() -> str:
    """Return LOGIN_URL if the project set it, else the admin's login, else the default."""
    if settings.is_overridden("LOGIN_URL"):  # type: ignore[misc]
        return str(settings.LOGIN_URL)
    try:
        return reverse("admin:login")
    except NoReverseMatch:
        return str(settings.LOGIN_URL)


@functools.cache
def _decorated(view: View, paths: Sequence[str]) -> View:
    for path in reversed(paths):
        view = import_string(path)(view)  # paths come from settings, never from a request
    return view


def _staff_check(request: HttpRequest, permission: str | None) -> HttpResponseBase | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        target = request.get_full_path()
        if HtmxDetails(request):
            current = HtmxDetails(request).current_url_abs_path or target
            # redirect_to_login quotes ``next`` (a query string in it must survive).
            return HttpResponseClientRedirect(redirect_to_login(current, login_url()).url)
        return redirect_to_login(target, login_url())
    if not (user.is_active and user.is_staff):
        raise PermissionDenied("The carrot monitor is for staff users.")
    if permission and not user.has_perm(permission):
        raise PermissionDenied(f"You need the {permission!r} permission for this action.")
    return None


def may(request: HttpRequest, permission: str) -> bool:
    """Return True if the user may perform an action needing ``permission``.

    Permissions apply to the default staff check only; custom decorators and a public
    monitor decide access on their own.
    """
    config = get_config()
    if config.monitor_authentication is not None or config.monitor_public:
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.has_perm(permission))


def monitor_view(view: View | None = None, *, permission: str | None = None) -> Any:
    """Protect a monitor view (and CSRF-protect it, whatever the project's middleware)."""

    def decorator(func: View) -> View:
        protected = csrf_protect(func)

        @functools.wraps(func)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            config = get_config()
            if config.monitor_authentication is not None:
                return _decorated(protected, config.monitor_authentication)(
                    request, *args, **kwargs
                )
            if not config.monitor_public:
                denied = _staff_check(request, permission)
                if denied is not None:
                    return denied
            return protected(request, *args, **kwargs)

        return wrapped

    return decorator(view) if view is not None else decorator
