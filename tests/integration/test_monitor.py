"""The monitor through the Django test client: access, CSRF, escaping, forms, actions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.urls import URLResolver, get_resolver, resolve, reverse
from django.utils import timezone

from carrot.models import MessageLog, ScheduledTask
from carrot.monitor.filters import PAGE_SIZE

pytestmark = pytest.mark.django_db

XSS = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']
ACTIONS = {
    "requeue",
    "delete",
    "bulk",
    "purge",
    "schedule_delete",
    "schedule_toggle",
    "schedule_run",
    "dead_letter_redrive",
    "dead_letter_delete",
}


@pytest.fixture
def rows():
    failed = MessageLog.objects.create(
        task="tests.testapp.tasks.add",
        status="FAILED",
        task_args=[1, XSS[0]],
        task_kwargs={
            "note": XSS[1],
            "password": "pass-word-value",
            "api_token": "api-token-value",
            "nested": {"secret_key": "deep-secret-value"},
        },
        exception=f"ValueError: {XSS[0]}",
        traceback=f"Traceback: {XSS[1]}",
        log=[
            {
                "time": "2025-01-01T00:00:00+00:00",
                "level": "INFO",
                "levelno": 20,
                "logger": "carrot",
                "message": XSS[0],
            },
            {
                "time": "2025-01-01T00:00:01+00:00",
                "level": "DEBUG",
                "levelno": 10,
                "logger": "carrot",
                "message": "debug detail",
            },
        ],
        failure_time=timezone.now(),
        attempts=1,
    )
    completed = MessageLog.objects.create(
        task="tests.testapp.tasks.add",
        status="COMPLETED",
        output={"html": XSS[0]},
        completion_time=timezone.now(),
    )
    schedule = ScheduledTask.objects.create(
        task_name=f"nightly {XSS[1]}",
        task="tests.testapp.tasks.record",
        interval_type="hours",
        interval_count=1,
        task_kwargs={"key": XSS[0], "password": "pass-word-value"},
        next_run_at=timezone.now() + timedelta(hours=1),
    )
    return {"failed": failed, "completed": completed, "schedule": schedule}


@pytest.fixture
def staff(client):
    user = User.objects.create_superuser("admin", "a@example.com", "pw")
    client.force_login(user)
    return client


def all_urls(rows):
    out = []
    resolver = get_resolver()
    (carrot,) = [
        p for p in resolver.url_patterns if isinstance(p, URLResolver) and p.namespace == "carrot"
    ]
    values = {
        "pk": rows["failed"].uuid,
        "slug": "failed",
        "name": "default",
        "queue": "default",
        "version": "1",
    }
    for pattern in carrot.url_patterns:
        kwargs = {}
        for key in pattern.pattern.converters:
            if key == "pk" and pattern.name.startswith("schedule"):
                kwargs[key] = rows["schedule"].pk
            elif key == "name" and pattern.name == "asset":
                kwargs[key] = "carrot.css"
            else:
                kwargs[key] = values[key]
        out.append((pattern.name, reverse(f"carrot:{pattern.name}", kwargs=kwargs)))
    assert len(out) >= 20
    return out


# ------------------------------------------------------------------ access


def test_every_url_refuses_anonymous_users(client, rows):
    for name, url in all_urls(rows):
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code in (302, 403, 405), (name, method, response.status_code)
            if response.status_code == 302:
                assert response["Location"].startswith("/admin/login/"), name


def test_htmx_requests_from_anonymous_users_are_sent_to_login(client, rows):
    response = client.get(
        reverse("carrot:tasks", args=["failed"]),
        headers={
            "HX-Request": "true",
            "HX-Target": "task-table",
            "HX-Current-URL": "http://testserver/carrot/failed/?q=x&queue=default",
        },
    )
    assert response.status_code == 200
    # The page the user was on comes back after login, its whole query string included.
    assert response["HX-Redirect"] == (
        "/admin/login/?next=/carrot/failed/%3Fq%3Dx%26queue%3Ddefault"
    )


def test_logged_in_non_staff_users_get_403_everywhere(client, rows):
    client.force_login(User.objects.create_user("plain", password="pw"))
    for name, url in all_urls(rows):
        response = client.post(url) if name in ACTIONS else client.get(url)
        assert response.status_code in (403, 405), (name, response.status_code)


def test_staff_without_permissions_can_look_but_not_act(client, rows):
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(reverse("carrot:tasks", args=["failed"])).status_code == 200
    for name, url in all_urls(rows):
        if name in ACTIONS:
            assert client.post(url).status_code == 403, name
    assert client.post(reverse("carrot:schedule_create"), {}).status_code == 403
    assert MessageLog.objects.get(pk=rows["failed"].pk).status == "FAILED"
    bulk = reverse("carrot:bulk", args=["failed"])
    selected = {"ids": [str(rows["failed"].uuid)]}
    user.user_permissions.add(Permission.objects.get(codename="change_messagelog"))
    assert client.post(bulk, {"action": "delete", **selected}).status_code == 403
    assert MessageLog.objects.filter(pk=rows["failed"].pk).exists()  # delete needs its own perm
    user.user_permissions.set([Permission.objects.get(codename="delete_messagelog")])
    user = User.objects.get(pk=user.pk)  # drop the permission cache
    client.force_login(user)
    assert client.post(bulk, {"action": "requeue", **selected}).status_code == 403
    confirmed = {"action": "delete", "confirmed": "yes", **selected}
    assert client.post(bulk, confirmed).status_code == 302
    assert not MessageLog.objects.filter(pk=rows["failed"].pk).exists()


def test_get_on_every_action_is_405_and_changes_nothing(staff, rows):
    for name, url in all_urls(rows):
        if name in ACTIONS:
            assert staff.get(url).status_code == 405, name
    assert MessageLog.objects.count() == 2
    assert ScheduledTask.objects.count() == 1


def test_posts_without_a_csrf_token_are_refused(rows):
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    for name, url in all_urls(rows):
        if name in ACTIONS:
            assert client.post(url).status_code == 403, name
    assert MessageLog.objects.filter(pk=rows["failed"].pk).exists()
    # With the header htmx sends, the same POST works.
    page = client.get(reverse("carrot:tasks", args=["failed"]))
    token = page.cookies["csrftoken"].value
    response = client.post(
        reverse("carrot:delete", args=[rows["failed"].uuid]),
        {"confirmed": "yes"},
        headers={"X-CSRFToken": token},
    )
    assert response.status_code == 302
    assert not MessageLog.objects.filter(pk=rows["failed"].pk).exists()


def test_no_view_is_csrf_exempt(rows):
    for name, url in all_urls(rows):
        assert not getattr(resolve(url).func, "csrf_exempt", False), name


@override_settings(
    CARROT={"monitor_authentication": ["tests.integration.test_monitor.allow_header"]}
)
def test_monitor_authentication_decorators_replace_the_staff_check(client, rows):
    url = reverse("carrot:tasks", args=["failed"])
    assert client.get(url).status_code == 403
    assert client.get(url, headers={"X-Allow": "yes"}).status_code == 200


def allow_header(view):
    from django.http import HttpResponseForbidden

    def wrapped(request, *args, **kwargs):
        if request.headers.get("X-Allow") != "yes":
            return HttpResponseForbidden("no")
        return view(request, *args, **kwargs)

    return wrapped


def test_a_public_monitor_needs_the_explicit_opt_in(client, rows):
    url = reverse("carrot:tasks", args=["failed"])
    with override_settings(CARROT={"monitor_public": True}):
        assert client.get(url).status_code == 200
    assert client.get(url).status_code == 302


# ------------------------------------------------------------------ escaping and masking


def pages(staff, rows):
    failed, schedule = rows["failed"], rows["schedule"]
    detail = reverse("carrot:task", args=[failed.uuid])
    completed_detail = reverse("carrot:task", args=[rows["completed"].uuid])
    hx = {"HX-Request": "true"}
    yield staff.get(reverse("carrot:tasks", args=["failed"]))
    yield staff.get(reverse("carrot:tasks", args=["completed"]))
    yield staff.get(
        reverse("carrot:tasks", args=["failed"]), headers=hx | {"HX-Target": "task-table"}
    )
    yield staff.get(detail)
    yield staff.get(completed_detail)
    yield staff.get(f"{detail}?level=DEBUG", headers=hx | {"HX-Target": "task-log"})
    yield staff.get(detail, headers=hx | {"HX-Target": "task-detail"})
    yield staff.get(reverse("carrot:schedules"))
    yield staff.get(reverse("carrot:schedules"), headers=hx | {"HX-Target": "schedule-table"})
    yield staff.get(reverse("carrot:schedule_edit", args=[schedule.pk]))
    yield staff.get(reverse("carrot:counts"))


def test_task_data_is_escaped_in_every_page_and_fragment(staff, rows):
    for response in pages(staff, rows):
        body = response.content.decode()
        assert response.status_code == 200
        for payload in XSS:
            assert payload not in body, response.wsgi_request.path
    detail = staff.get(reverse("carrot:task", args=[rows["failed"].uuid])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail


def test_secret_looking_kwargs_are_masked_in_every_page(staff, rows):
    for response in pages(staff, rows):
        body = response.content.decode()
        # Hyphenated values cannot turn up by chance inside a random CSRF token.
        for secret in ("pass-word-value", "api-token-value", "deep-secret-value"):
            assert secret not in body, (secret, response.wsgi_request.path)
    detail = staff.get(reverse("carrot:task", args=[rows["failed"].uuid])).content.decode()
    assert "********" in detail


# ------------------------------------------------------------------ lists


def make_logs(n, **fields):
    defaults = {
        "task": "tests.testapp.tasks.add",
        "status": "PUBLISHED",
        "publish_time": timezone.now(),
    }
    return MessageLog.objects.bulk_create(
        [MessageLog(**(defaults | fields), task_args=[i]) for i in range(n)]
    )


def ids_in(response):
    return [row["log"].id for row in response.context["rows"]]


def test_lists_are_newest_first_and_paginated_by_keyset(staff):
    make_logs(PAGE_SIZE * 2 + 5)
    url = reverse("carrot:tasks", args=["queued"])
    first = staff.get(url)
    ids = ids_in(first)
    assert ids == sorted(ids, reverse=True) and len(ids) == PAGE_SIZE
    older = first.context["older"]
    second = staff.get(f"{url}?before={older}")
    assert max(ids_in(second)) < min(ids)
    newer = second.context["newer"]
    back = staff.get(f"{url}?after={newer}")
    assert ids_in(back) == ids
    last = staff.get(f"{url}?before={second.context['older']}")
    assert len(ids_in(last)) == 5 and last.context["older"] is None


def test_search_by_task_arguments_and_id_and_filter_by_queue_and_task(staff):
    a = make_logs(1, queue="other")[0]
    a.task_kwargs = {"customer": "ACME-42"}
    a.save()
    b = MessageLog.objects.create(task="tests.testapp.tasks.record", status="PUBLISHED")
    url = reverse("carrot:tasks", args=["queued"])
    assert ids_in(staff.get(url, {"q": "acme-42"})) == [a.id]
    assert ids_in(staff.get(url, {"q": "record"})) == [b.id]
    assert ids_in(staff.get(url, {"q": str(b.uuid)})) == [b.id]
    assert ids_in(staff.get(url, {"queue": "other"})) == [a.id]
    assert ids_in(staff.get(url, {"task": "tests.testapp.tasks.record"})) == [b.id]


def test_counts_are_capped_instead_of_counting_everything(staff, monkeypatch):
    monkeypatch.setattr("carrot.monitor.common.COUNT_CAP", 3)
    make_logs(5)
    body = staff.get(reverse("carrot:counts")).content.decode()
    assert 'data-count="queued">3+<' in body


def test_unknown_tabs_are_404(staff):
    assert staff.get("/ops/carrot/tasks/nope/").status_code == 404


# ------------------------------------------------------------------ detail


def test_detail_shows_everything_and_filters_the_log(staff, rows):
    url = reverse("carrot:task", args=[rows["failed"].uuid])
    body = staff.get(url).content.decode()
    for text in ("tests.testapp.tasks.add", "Traceback", "ValueError", "Attempts"):
        assert text in body
    assert "debug detail" not in body  # INFO and above by default
    debug = staff.get(f"{url}?level=DEBUG", headers={"HX-Request": "true", "HX-Target": "task-log"})
    assert "debug detail" in debug.content.decode()
    assert 'id="task-log"' in debug.content.decode()


def test_detail_polls_until_finished_then_stops_with_286(staff, rows):
    running = MessageLog.objects.create(task="tests.testapp.tasks.add", status="IN_PROGRESS")
    url = reverse("carrot:task", args=[running.uuid])
    hx = {"HX-Request": "true", "HX-Target": "task-detail"}
    assert 'hx-trigger="every 2s' in staff.get(url).content.decode()
    MessageLog.objects.filter(pk=running.pk).update(status="COMPLETED")
    final = staff.get(url, {"seen": "IN_PROGRESS"}, headers=hx)
    assert final.status_code == 200
    assert "hx-trigger" not in final.content.decode()  # the final state, without polling
    assert staff.get(url, {"seen": "COMPLETED"}, headers=hx).status_code == 286
    running.delete()
    assert staff.get(url, headers=hx).status_code == 286
    assert staff.get(url).status_code == 404


# ------------------------------------------------------------------ actions


@pytest.mark.django_db(transaction=True)
def test_requeue_from_the_detail_page(staff, rows, broker):
    url = reverse("carrot:requeue", args=[rows["failed"].uuid])
    response = staff.post(url, headers={"HX-Request": "true", "HX-Target": "task-detail"})
    body = response.content.decode()
    assert response.status_code == 200
    assert "Requeued tests.testapp.tasks.add" in body and 'hx-swap-oob="true"' in body
    assert MessageLog.objects.get(pk=rows["failed"].pk).status == "PUBLISHED"
    assert broker.count("default") == 1
    again = staff.post(url, headers={"HX-Request": "true", "HX-Target": "task-detail"})
    assert "Only failed tasks can be requeued" in again.content.decode()
    assert broker.count("default") == 1


def test_delete_removes_the_row_and_redirects(staff, rows):
    url = reverse("carrot:delete", args=[rows["failed"].uuid])
    response = staff.post(url, headers={"HX-Request": "true", "HX-Target": "task-detail"})
    assert response["HX-Redirect"] == reverse("carrot:tasks", args=["failed"])
    assert not MessageLog.objects.filter(pk=rows["failed"].pk).exists()


def test_running_tasks_cannot_be_deleted(staff):
    running = MessageLog.objects.create(task="tests.testapp.tasks.add", status="IN_PROGRESS")
    staff.post(reverse("carrot:delete", args=[running.uuid]))
    assert MessageLog.objects.filter(pk=running.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_bulk_requeue_selected_and_delete_matching_filter(staff, broker):
    failed = make_logs(4, status="FAILED")
    MessageLog.objects.filter(pk=failed[3].pk).update(task="tests.testapp.tasks.record")
    url = reverse("carrot:bulk", args=["failed"])
    hx = {"HX-Request": "true", "HX-Target": "task-table"}
    response = staff.post(
        url, {"action": "requeue", "ids": [str(failed[0].uuid), str(failed[1].uuid)]}, headers=hx
    )
    assert "Requeued 2 tasks." in response.content.decode()
    assert broker.count("default") == 2
    response = staff.post(
        url, {"action": "delete", "scope": "filter", "task": "tests.testapp.tasks.add"}, headers=hx
    )
    assert "Deleted 1 task." in response.content.decode()
    assert list(MessageLog.objects.failed().values_list("pk", flat=True)) == [failed[3].pk]
    assert 'id="task-table"' in response.content.decode()


def test_delete_all_completed(staff):
    make_logs(3, status="COMPLETED")
    make_logs(2, status="FAILED")
    url = reverse("carrot:bulk", args=["completed"]) + "?scope=filter"
    page = staff.post(url, {"action": "delete"})  # without JavaScript: asked first
    assert "Delete all 3 completed tasks?" in page.content.decode()
    assert MessageLog.objects.completed().count() == 3
    staff.post(url, {"action": "delete", "confirmed": "yes"})
    assert MessageLog.objects.completed().count() == 0
    assert MessageLog.objects.failed().count() == 2


def test_bulk_without_a_selection_says_so(staff):
    response = staff.post(
        reverse("carrot:bulk", args=["failed"]),
        {"action": "requeue"},
        headers={"HX-Request": "true", "HX-Target": "task-table"},
    )
    assert "Select some tasks first." in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_purge_a_queue_drops_its_messages_and_marks_their_tasks(staff, broker):
    from tests.testapp.tasks import add

    logs = [add.delay(i, i) for i in range(3)]
    assert broker.count("default") == 3
    response = staff.post(
        reverse("carrot:purge", args=["default"]),
        headers={"HX-Request": "true", "HX-Target": "task-table"},
    )
    assert "Purged 3 message(s)" in response.content.decode()
    assert broker.count("default") == 0
    for log in logs:
        log.refresh_from_db()
        assert log.status == "FAILED" and "Purged from queue" in log.exception
    assert staff.post(reverse("carrot:purge", args=["nope"]), follow=True).status_code == 200


def test_a_3mb_post_is_a_400_not_a_500(staff, rows):
    response = staff.post(reverse("carrot:schedule_create"), {"task_kwargs": "x" * 3_000_000})
    assert response.status_code == 400


# ------------------------------------------------------------------ schedules


def form_data(**overrides):
    data = {
        "task_name": "hourly report",
        "task": "tests.testapp.tasks.record",
        "kind": "interval",
        "interval_count": "2",
        "interval_type": "hours",
        "cron": "",
        "timezone": "",
        "queue": "",
        "priority": "",
        "task_args": "[]",
        "task_kwargs": '{"key": "k"}',
        "active": "on",
    }
    data.update(overrides)
    return data


def test_create_a_schedule(staff):
    response = staff.post(reverse("carrot:schedule_create"), form_data())
    assert response.status_code == 302
    row = ScheduledTask.objects.get()
    assert (row.task_name, row.interval_type, row.interval_count, row.task_kwargs) == (
        "hourly report",
        "hours",
        2,
        {"key": "k"},
    )
    assert row.source == "user" and row.active
    assert row.next_run_at > timezone.now() + timedelta(hours=1, minutes=59)


def test_create_a_cron_schedule_in_a_timezone(staff):
    staff.post(
        reverse("carrot:schedule_create"),
        form_data(kind="cron", cron="0  3 * * *", timezone="Europe/Berlin"),
    )
    row = ScheduledTask.objects.get()
    assert (row.cron, row.timezone, row.interval_count) == ("0 3 * * *", "Europe/Berlin", None)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("task_kwargs", "{a:1}", "Not valid JSON: Expecting property name"),
        ("task_kwargs", '{"a":}', "Not valid JSON"),
        ("task_kwargs", '{"a": 1,}', "Not valid JSON"),
        ("task_kwargs", "[1]", "Enter a JSON object"),
        ("task_args", '{"a": 1}', "Enter a JSON list"),
        ("task_args", "[" * 30 + "]" * 30, "nested more than 20"),
        ("task_args", "[" + "1," * 40000 + "1]", "longer than 64 KB"),
        ("task_args", "[" + "1" * 5000 + "]", "Not valid JSON"),
        ("task", "os.system", "Select a valid choice"),
        ("task", "carrot.utilities.publish_message", "Select a valid choice"),
        ("task", "", "This field is required"),
        ("interval_count", "0", "greater than or equal to 1"),
        ("cron", "61 * * * *", "not a valid cron"),
        ("cron", "* * *", "expected 5 fields"),
        ("timezone", "Mars/Base", "Select a valid choice"),
        ("priority", "99", "accepts priorities up to 10"),
    ],
)
def test_bad_input_is_a_form_error_not_a_500(staff, field, value, message):
    data = form_data(**{field: value})
    if field in ("cron", "timezone"):
        data.update(kind="cron", cron=data["cron"] or "* * * * *")
    response = staff.post(reverse("carrot:schedule_create"), data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ScheduledTask.objects.exists()


def test_editing_keeps_masked_secrets_and_reschedules(staff, rows):
    schedule = rows["schedule"]
    url = reverse("carrot:schedule_edit", args=[schedule.pk])
    page = staff.get(url).content.decode()
    assert "pass-word-value" not in page and "********" in page
    posted = json.dumps({"key": "new", "password": "********"})
    response = staff.post(
        url,
        form_data(
            task_name="renamed", interval_type="minutes", interval_count="5", task_kwargs=posted
        ),
    )
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.task_kwargs == {"key": "new", "password": "pass-word-value"}
    assert schedule.task_name == "renamed"
    assert schedule.next_run_at <= timezone.now() + timedelta(minutes=5)


def test_editing_keeps_masked_secrets_inside_positional_arguments(staff):
    schedule = ScheduledTask.objects.create(
        task_name="with a token",
        task="tests.testapp.tasks.record",
        interval_type="minutes",
        interval_count=1,
        task_args=["x", {"token": "tok-en-value"}],
    )
    url = reverse("carrot:schedule_edit", args=[schedule.pk])
    page = staff.get(url).content.decode()
    assert "tok-en-value" not in page
    posted = json.dumps(["y", {"token": "********"}])
    response = staff.post(url, form_data(task_name="with a token", task_args=posted))
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.task_args == ["y", {"token": "tok-en-value"}]


def test_schedules_declared_in_code_are_read_only(staff):
    row = ScheduledTask.objects.create(
        task_name="code one",
        task="tests.testapp.tasks.add",
        interval_type="minutes",
        interval_count=1,
        source="code",
    )
    page = staff.get(reverse("carrot:schedule_edit", args=[row.pk])).content.decode()
    assert "declared in code" in page and "<fieldset disabled>" in page
    staff.post(reverse("carrot:schedule_edit", args=[row.pk]), form_data(task_name="hijack"))
    staff.post(reverse("carrot:schedule_delete", args=[row.pk]))
    row.refresh_from_db()
    assert row.task_name == "code one"


def test_pause_and_resume_without_a_burst(staff, rows):
    schedule = rows["schedule"]
    ScheduledTask.objects.filter(pk=schedule.pk).update(
        next_run_at=timezone.now() - timedelta(days=1)
    )
    url = reverse("carrot:schedule_toggle", args=[schedule.pk])
    staff.post(url)
    schedule.refresh_from_db()
    assert not schedule.active
    staff.post(url)
    schedule.refresh_from_db()
    assert schedule.active
    assert schedule.next_run_at > timezone.now() + timedelta(minutes=59)


@pytest.mark.django_db(transaction=True)
def test_run_now_and_delete_from_the_list(staff, rows, broker):
    schedule = rows["schedule"]
    hx = {"HX-Request": "true", "HX-Target": "schedule-table"}
    response = staff.post(reverse("carrot:schedule_run", args=[schedule.pk]), headers=hx)
    assert "Published tests.testapp.tasks.record now" in response.content.decode()
    log = MessageLog.objects.get(schedule=schedule)
    assert log.task_kwargs["password"] == "pass-word-value"  # the real value is published
    assert broker.count("default") == 1
    staff.post(reverse("carrot:schedule_delete", args=[schedule.pk]), headers=hx)
    assert not ScheduledTask.objects.exists()


def test_preview_shows_the_next_runs_or_the_error(staff):
    url = reverse("carrot:schedule_preview")
    ok = staff.get(url, {"kind": "cron", "cron": "0 3 * * *", "timezone": "Europe/Berlin"})
    assert ok.content.decode().count("<li>") == 5 and "Europe/Berlin" in ok.content.decode()
    # In the schedule's zone (03:00 in Berlin), not the site's (UTC here).
    assert ok.content.decode().count(" 03:00:00 CE") == 5
    bad = staff.get(url, {"kind": "interval", "interval_count": "x", "interval_type": "hours"})
    assert "whole number" in bad.content.decode()


def test_unknown_tasks_show_as_disabled(staff):
    ScheduledTask.objects.create(
        task_name="stale", task="gone.tasks.old", interval_type="minutes", interval_count=1
    )
    assert "disabled: unknown task" in staff.get(reverse("carrot:schedules")).content.decode()


def test_next_run_is_shown_in_the_schedules_time_zone(staff):
    ScheduledTask.objects.create(
        task_name="berlin",
        task="tests.testapp.tasks.record",
        cron="30 4 * * *",
        timezone="Europe/Berlin",
        next_run_at=datetime(2025, 7, 1, 2, 30, tzinfo=UTC),  # 04:30 CEST
    )
    page = staff.get(reverse("carrot:schedules")).content.decode()
    assert "2025-07-01 04:30:00 CEST" in page


# ------------------------------------------------------------------ assets


def test_assets_are_local_cached_and_protected(staff):
    response = staff.get(reverse("carrot:asset", args=["2.0", "htmx.min.js"]))
    assert response.status_code == 200
    assert "immutable" in response["Cache-Control"]
    assert b"htmx" in b"".join(response.streaming_content)
    assert staff.get(reverse("carrot:asset", args=["2.0", "settings.py"])).status_code == 404
    assert staff.get("/ops/carrot/assets/2.0/..%2Fsettings.py").status_code == 404
    anonymous = Client()
    assert anonymous.get(reverse("carrot:asset", args=["2.0", "carrot.css"])).status_code == 302


def test_pages_load_nothing_from_other_origins(staff, rows):
    for response in pages(staff, rows):
        body = response.content.decode()
        assert "http://" not in body and "https://" not in body, response.wsgi_request.path


def test_relative_times_read_naturally():
    from carrot.templatetags.carrot_monitor import relative

    now = timezone.now()
    assert relative(now) == "just now"
    assert relative(now - timedelta(seconds=42)) == "42 s ago"
    assert relative(now - timedelta(minutes=3, seconds=10)) == "3 min ago"
    assert relative(now - timedelta(hours=5)) == "5 h ago"
    assert relative(now - timedelta(days=2)) == "2 d ago"
    assert relative(now + timedelta(minutes=59, seconds=58)) == "in 60 min"
    assert relative(None) == ""
