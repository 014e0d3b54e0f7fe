"""Without the extras (prometheus-client, opentelemetry-api) nothing changes and nothing of
them is imported. The packages are installed in the test environment, so the processes
here start with a ``sitecustomize`` that makes them unimportable."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from carrot.models import MessageLog
from tests.harness import ROOT, django_shell, finished, free_port
from tests.testapp.tasks import add, fail, whoami

pytestmark = pytest.mark.django_db(transaction=True)

BLOCKER = """
import importlib.abc
import sys

BLOCKED = ("prometheus_client", "opentelemetry")


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
"""


@pytest.fixture
def without_extras(tmp_path: Path) -> dict[str, str]:
    """The environment of a process that cannot import the extras."""
    directory = tmp_path / "no-extras"
    directory.mkdir()
    (directory / "sitecustomize.py").write_text(BLOCKER)
    return {"PYTHONPATH": os.pathsep.join([str(directory), str(ROOT)])}


def test_the_blocker_works(without_extras):
    result = django_shell("import prometheus_client", **without_extras)
    assert "No module named 'prometheus_client' (blocked)" in result.stderr


def test_a_worker_runs_tasks_as_before(worker_factory, without_extras):
    worker = worker_factory("--no-scheduler", **without_extras).wait_ready()
    done, failed, retried = add.delay(1, 2), fail.delay("bad"), whoami.delay(fail_first=True)
    assert (finished(done).status, finished(done).output) == ("COMPLETED", 3)
    assert finished(failed).status == "FAILED"
    assert (finished(retried).status, finished(retried).attempts) == ("COMPLETED", 2)
    log = worker.log()
    assert "blocked" not in log and "Traceback" not in log
    assert "Serving metrics" not in log
    # The task's log lines are as they were: no trace ids.
    assert all("trace_id" not in line for line in MessageLog.objects.get(pk=done.pk).log)


def test_publishing_imports_neither(without_extras, broker):
    script = textwrap.dedent(
        """
        import sys
        from django.conf import settings
        from django.test import Client, override_settings
        from django.test.utils import setup_test_environment
        from tests.testapp.tasks import add

        log = add.delay(1, 2)
        setup_test_environment()
        with override_settings(CARROT={**settings.CARROT, "monitor_public": True}):
            response = Client().get("/ops/carrot/metrics")
        loaded = sorted(
            m for m in sys.modules if m.split(".")[0] in ("prometheus_client", "opentelemetry")
        )
        print("loaded", loaded)
        print("trace_context", log.trace_context)
        print("metrics", response.status_code, response.content.decode().strip())
        """
    )
    result = django_shell(script, **without_extras)
    assert result.returncode == 0, result.stderr
    assert "loaded []" in result.stdout
    assert "trace_context {}" in result.stdout
    assert (
        "metrics 501 Metrics need the prometheus-client package. Install it with: "
        "pip install 'django-carrot[metrics]'" in result.stdout
    )


def test_asking_for_metrics_without_the_package_is_a_clear_error(worker_factory, without_extras):
    worker = worker_factory("--no-scheduler", "--metrics-port", str(free_port()), **without_extras)
    assert worker.wait(30) != 0
    assert (
        "Metrics need the prometheus-client package. Install it with: "
        "pip install 'django-carrot[metrics]'" in worker.log()
    )


def test_a_metrics_setting_without_the_package_is_a_check_warning(without_extras):
    script = textwrap.dedent(
        """
        from django.conf import settings
        from django.core.management import call_command
        from django.test import override_settings

        with override_settings(CARROT={**settings.CARROT, "metrics": {"port": 9191}}):
            call_command("check")
        """
    )
    result = django_shell(script, **without_extras)
    assert "carrot.W013" in result.stderr + result.stdout
    assert "pip install 'django-carrot[metrics]'" in result.stderr + result.stdout


def test_installed_but_not_configured_metrics_import_nothing(broker):
    """With prometheus-client installed and no metrics port, nothing loads it."""
    script = textwrap.dedent(
        """
        import sys
        from tests.testapp.tasks import add

        add.delay(1, 2)
        print("loaded", "prometheus_client" in sys.modules)
        """
    )
    result = django_shell(script)
    assert result.returncode == 0, result.stderr
    assert "loaded False" in result.stdout
