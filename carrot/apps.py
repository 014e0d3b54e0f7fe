from __future__ import annotations

from django.apps import AppConfig


class CarrotConfig(AppConfig):
    name = "carrot"
    verbose_name = "django-carrot"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # lazy: they import the models, which exist only once Django has loaded the apps.
        from carrot import checks, discovery, helper_tasks  # noqa: F401  (checks, built-in tasks)

        discovery.autodiscover()
