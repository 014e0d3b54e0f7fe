"""Odd input to every monitor URL and form field: a 4xx or a form error, never a 500.

The URLs come from the monitor's URLconf, so a new view is fuzzed without being listed.
"""

from __future__ import annotations

import itertools
import uuid

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone

from carrot.models import MessageLog, ScheduledTask
from carrot.monitor.urls import urlpatterns

pytestmark = pytest.mark.django_db

ODD = [
    "",
    " ",
    "0",
    "-1",
    "١٢",  # Arabic-Indic digits: str.isdigit() says yes
    "²",  # a superscript two: isdigit() too, but int() refuses it
    "9" * 5000,  # over Python's limit on digits in int()
    "1e400",
    "NaN",
    "\x00",
    "a\x00b",
    "x" * 20_000,
    "' OR 1=1 --",
    '{"a": 1}',
    "[[[[[[[[[[",
    "☃",
]
QUERY_KEYS = [
    "q",
    "queue",
    "task",
    "before",
    "after",
    "level",
    "seen",
    "current",
    "kind",
    "cron",
    "timezone",
    "interval_count",
    "interval_type",
    "scope",
]
FORM_KEYS = [
    "task_name",
    "task",
    "kind",
    "interval_count",
    "interval_type",
    "cron",
    "timezone",
    "queue",
    "priority",
    "task_args",
    "task_kwargs",
    "active",
    "action",
    "ids",
    "scope",
    "q",
]


@pytest.fixture
def staff():
    User.objects.create_superuser("fuzz", "fuzz@example.com", "pw")
    client = Client(raise_request_exception=False)
    client.login(username="fuzz", password="pw")
    return client


@pytest.fixture
def urls():
    log = MessageLog.objects.create(task="tests.testapp.tasks.add", status="FAILED")
    schedule = ScheduledTask.objects.create(
        task_name="fuzzed",
        task="tests.testapp.tasks.record",
        interval_type="hours",
        interval_count=1,
        next_run_at=timezone.now(),
    )
    samples = {
        "slug": "failed",
        "pk": schedule.pk,
        "name": "default",
        "queue": "default",
        "version": "0",
    }
    out = []
    for pattern in urlpatterns:
        assert isinstance(pattern, URLPattern)
        kwargs = {k: samples[k] for k in pattern.pattern.converters}
        if "pk" in kwargs and "uuid" in str(pattern.pattern):
            kwargs["pk"] = log.uuid
        out.append(reverse(f"carrot:{pattern.name}", kwargs=kwargs))
    return out


def status(response) -> int:
    return response.status_code


def variants(keys, value):
    """The cursors alone (a bad one answers 400 before anything else is read), then every
    other key at once."""
    cursors = [k for k in keys if k in ("before", "after")]
    yield from ({k: value} for k in cursors)
    yield {k: value for k in keys if k not in cursors}


@pytest.mark.slow  # ~45 s: every URL x every odd value
def test_odd_query_strings_never_give_a_500(staff, urls):
    failures = []
    for url, value in itertools.product(urls, ODD):
        for query in variants(QUERY_KEYS, value):
            for headers in ({}, {"HX-Request": "true", "HX-Target": "task-table"}):
                code = status(staff.get(url, query, headers=headers))
                if code >= 500:
                    failures.append((url, sorted(query), value[:20], code))
    assert not failures, failures[:10]


@pytest.mark.slow  # ~8 s: every form x every odd value
def test_odd_form_posts_never_give_a_500(staff, urls):
    failures = []
    for url, value in itertools.product(urls, ODD):
        for data in variants(FORM_KEYS, value):
            code = status(staff.post(url, {"action": "delete", "scope": "filter", **data}))
            if code >= 500:
                failures.append((url, sorted(data), value[:20], code))
    assert not failures, failures[:10]


def test_a_huge_interval_is_a_form_error_not_a_500(staff):
    data = {
        "task_name": "huge",
        "task": "tests.testapp.tasks.record",
        "kind": "interval",
        "interval_count": str(10**15),
        "interval_type": "days",
        "active": "on",
    }
    response = staff.post(reverse("carrot:schedule_create"), data)
    assert response.status_code == 200
    assert "too large" in response.content.decode()
    preview = staff.get(
        reverse("carrot:schedule_preview"),
        {"kind": "interval", "interval_count": str(10**15), "interval_type": "days"},
    )
    assert preview.status_code == 200 and "too large" in preview.content.decode()


def test_cursors_and_filters_with_odd_values_are_a_400(staff):
    url = reverse("carrot:tasks", args=["failed"])
    assert status(staff.get(url, {"before": "²"})) == 400
    assert status(staff.get(url, {"after": "9" * 5000})) == 400
    assert status(staff.get(url, {"q": "a\x00b"})) == 400
    assert status(staff.get(url, {"before": "12"})) == 200
    assert status(staff.get(url, {"q": str(uuid.uuid4())})) == 200
