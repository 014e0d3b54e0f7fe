from django.apps import AppConfig


class DjangoappConfig(AppConfig):
    """Tasks written with Django's task API (django.tasks, or the django-tasks backport)."""

    name = "tests.djangoapp"
    label = "djangoapp"
    default_auto_field = "django.db.models.BigAutoField"
