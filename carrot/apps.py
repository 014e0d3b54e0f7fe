from __future__ import annotations

from django.apps import AppConfig


class CarrotConfig(AppConfig):
    name = "carrot"
    verbose_name = "django-carrot"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from carrot import checks, helper_tasks  # noqa: F401  (checks and built-in tasks)
        from carrot.registry import autodiscover

        autodiscover()
