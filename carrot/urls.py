"""The monitor: ``path("carrot/", include("carrot.urls"))`` at any prefix."""

from carrot.monitor.urls import app_name, urlpatterns

__all__ = ["app_name", "urlpatterns"]
