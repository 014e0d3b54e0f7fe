import os

from django.apps import AppConfig


class TestappConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        spans = os.environ.get("CARROT_TEST_SPANS")
        if spans:  # a worker under test writes its OpenTelemetry spans to this file
            from tests.spans import export_to_file

            export_to_file(spans)
