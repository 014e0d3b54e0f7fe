"""Monitor faults the review reproduced (issue 12, points 9 to 11): secrets that could be
read back, and a purge that failed tasks whose messages it never removed."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.urls import reverse

from carrot.models import MessageLog, OutboxEntry
from carrot.models.outbox import insert_with_entries
from tests.testapp.tasks import add

pytestmark = pytest.mark.django_db

SECRET = "hunter2-sesame"


@pytest.fixture
def staff():
    """Staff, but without any carrot permission: may look, may not act."""
    user = User.objects.create_user("looker", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def superuser():
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    return client


@pytest.fixture
def secret_row():
    return MessageLog.objects.create(
        task="tests.testapp.tasks.add",
        status="FAILED",
        task_args=[f"postgres://app:{SECRET}@db:5432/shop"],
        task_kwargs={"password": SECRET, "note": "visible-note"},
        output={"dsn": f"amqp://guest:{SECRET}@rabbit/"},
        exception=f"OperationalError: could not connect to postgres://app:{SECRET}@db",
        traceback=f'  File "x.py", line 1\n    connect(password="{SECRET}")\nOperationalError',
        log=[{"level": "INFO", "levelno": 20, "message": f"using token={SECRET}"}],
    )


def listed(client, q):
    body = client.get(reverse("carrot:tasks", args=["failed"]), {"q": q}).content.decode()
    return "row-" in body


def test_search_never_matches_inside_a_masked_value(staff, secret_row):
    """Before: the search ran icontains over the raw arguments, so a staff user with no
    carrot permission recovered a masked password a character at a time."""
    assert listed(staff, "visible-note")
    for guess in (SECRET, SECRET[:4], "hunt", "sesame"):
        assert not listed(staff, guess), guess


def test_every_page_and_the_admin_mask_url_passwords_and_named_secrets(superuser, secret_row):
    """Before: only keyword arguments with secret-looking names were masked; a password in
    a URL, a positional argument, the exception, the traceback or a log line was shown,
    and the admin showed the raw arguments."""
    pages = [
        reverse("carrot:tasks", args=["failed"]),
        reverse("carrot:task", args=[secret_row.uuid]) + "?level=DEBUG",
        reverse("admin:carrot_messagelog_change", args=[secret_row.pk]),
    ]
    for url in pages:
        body = superuser.get(url).content.decode()
        assert SECRET not in body, url
        assert "********" in body, url


@pytest.mark.django_db(transaction=True)
def test_purge_fails_exactly_the_tasks_whose_messages_it_removed(superuser, broker):
    """Before: purge marked every PUBLISHED row of the queue FAILED, also tasks waiting in
    a delay queue and tasks still in the outbox."""
    waiting = [add.delay(i, i) for i in range(3)]
    later = add.apply_async(args=(9, 9), countdown=300)  # in default.delay.*, not in default
    unpublished = MessageLog(task="tests.testapp.tasks.add", task_args=[7, 7])
    with transaction.atomic():
        insert_with_entries([unpublished], "default")  # committed, not handed over yet
    assert broker.count("default") == 3
    response = superuser.post(
        reverse("carrot:purge", args=["default"]),
        headers={"HX-Request": "true", "HX-Target": "task-table"},
    )
    assert "Purged 3 message(s)" in response.content.decode()
    assert broker.count("default") == 0
    statuses = dict(MessageLog.objects.values_list("pk", "status"))
    assert [statuses[log.pk] for log in waiting] == ["FAILED"] * 3
    assert statuses[later.pk] == "PUBLISHED"
    assert statuses[unpublished.pk] == "PUBLISHED"
    assert OutboxEntry.objects.filter(pk=unpublished.pk).exists()


def test_destructive_actions_without_javascript_ask_first(superuser, secret_row):
    """Before: the bulk buttons' hx-confirm never fired (the form issued the request), and
    a plain form post deleted at once."""
    bulk = reverse("carrot:bulk", args=["failed"])
    for url, data in [
        (bulk + "?scope=filter", {"action": "delete"}),
        (bulk, {"action": "delete", "ids": [str(secret_row.uuid)]}),
        (reverse("carrot:delete", args=[secret_row.uuid]), {}),
        (reverse("carrot:purge", args=["default"]), {}),
    ]:
        page = superuser.post(url, data)
        assert page.status_code == 200 and 'name="confirmed" value="yes"' in page.content.decode()
    assert MessageLog.objects.filter(pk=secret_row.pk).exists()


def test_the_question_for_a_bulk_action_by_filter_counts_its_tasks(superuser, secret_row):
    url = reverse("carrot:bulk_question", args=["failed"])
    assert superuser.get(url, {"action": "delete", "scope": "filter"}).json() == {
        "question": "Delete all 1 failed task?"
    }
    filtered = superuser.get(url, {"action": "requeue", "scope": "filter", "q": "nothing-here"})
    assert filtered.json() == {"question": "Requeue 0 failed tasks matching the filter?"}
