"""The monitor's dead-letter page (issue 14, part 3) against the real broker, database and
workers: what the gate rejected is listed with its reason, re-driven or deleted, and the
dead-letter queue and the "Message rejected" rows agree after each action."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import struct
import uuid

import pika
import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from carrot.models import MessageLog
from carrot.models.lifecycle import REJECTED_TYPE, rejected
from tests.harness import finished, wait_until
from tests.testapp.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "hunter2-sesame"
ADD = "tests.testapp.tasks.add"
ON_OTHER = "tests.testapp.tasks.on_other_queue"
PAGE = reverse("carrot:dead_letters")
XSS = '<img src=x onerror="alert(1)">'


def redrive_url(queue: str = "default") -> str:
    return reverse("carrot:dead_letter_redrive", args=[queue])


def delete_url(queue: str = "default") -> str:
    return reverse("carrot:dead_letter_delete", args=[queue])


def envelope(*args, **kwargs) -> bytes:
    return json.dumps({"args": list(args), "kwargs": kwargs}).encode()


@pytest.fixture
def admin():
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    return client


def rejected_rows(queue: str = "default"):
    return MessageLog.objects.filter(status="FAILED", exception_type=REJECTED_TYPE, queue=queue)


def listed(client: Client, query: dict | None = None) -> dict[str, str]:
    """Return {message id (or "" when it has none): key} of the messages on the page."""
    body = client.get(PAGE, query or {}).content.decode()
    return {m: k for k, m in re.findall(r'id="dl-([0-9a-f]{32})" data-message-id="([^"]*)"', body)}


def dead_letter(broker, queue: str = "default", task: str = ADD, body: bytes | None = None, **p):
    """Put a message straight into a dead-letter queue, as if dead-lettered long ago."""
    broker.channel.queue_declare(f"{queue}.dlq", durable=True)
    props = {"type": task, "app_id": "carrot", **p}
    return broker.publish(f"{queue}.dlq", envelope(2, 3) if body is None else body, **props)


@pytest.fixture
def rejections(worker, broker):
    """Three messages sent by hand that the worker's gate dead-letters: a body that is not
    JSON, one without a message_id (its row gets a fresh id) and an unregistered task."""
    not_json = broker.publish("default", b"{not json", type=ADD)
    broker.publish(
        "default",
        envelope(f"postgres://app:{SECRET}@db/shop", password=SECRET),
        type=ADD,
        message_id=None,
    )
    unknown = broker.publish(
        "default", envelope(1, api_token=SECRET, note="visible-note"), type="nope.missing"
    )
    wait_until(lambda: rejected_rows().count() == 3, 20, message="three rejected rows")
    wait_until(lambda: broker.count("default.dlq") == 3, 20, message="three dead letters")
    return {"not_json": not_json, "unknown": unknown}


# ------------------------------------------------------------------ the list


def test_messages_the_gate_rejected_are_listed_with_reason_task_masked_arguments_and_time(
    admin, rejections
):
    body = admin.get(PAGE).content.decode()
    assert "default.dlq" in body and "3 messages" in body
    assert "message body is not JSON" in body
    assert "the message has no message_id property" in body
    assert "&#x27;nope.missing&#x27; is not a registered task" in body
    assert "nope.missing" in body and ADD in body
    assert SECRET not in body and "********" in body and "visible-note" in body
    assert body.count("<time datetime=") >= 3
    # Each message is paired with its rejected row, also the one without a message_id.
    assert body.count('class="status status-failed"') == 3
    assert "no longer in default.dlq" not in body
    # None of them would pass the gate now: re-drive is disabled, with the reason.
    assert body.count('blocked">Cannot re-drive: it would be rejected again') == 3
    assert re.search(r"<button[^>]*disabled[^>]*>Re-drive</button>", body)


def test_delete_removes_the_message_and_its_row_so_the_queue_and_rows_agree(
    admin, rejections, broker
):
    keys = listed(admin)
    assert len(keys) == 3
    row = MessageLog.objects.get(uuid=rejections["unknown"])
    response = admin.post(delete_url(), {"key": keys[rejections["unknown"]], "confirmed": "yes"})
    assert response.status_code == 302
    assert broker.count("default.dlq") == 2
    assert not MessageLog.objects.filter(pk=row.pk).exists()
    # The message without a message_id: its row was paired by the page.
    no_id = admin.get(PAGE).content.decode()
    (key,) = re.findall(r'id="dl-([0-9a-f]{32})" data-message-id=""', no_id)
    (row_id,) = re.findall(rf'value="{key}"><input type="hidden" name="row" value="([^"]+)"', no_id)
    admin.post(delete_url(), {"key": key, "row": row_id, "confirmed": "yes"})
    assert broker.count("default.dlq") == 1
    assert rejected_rows().count() == 1
    page = admin.post(
        delete_url(),
        {"key": keys[rejections["not_json"]]},
        headers={"HX-Request": "true", "HX-Target": "dead-letters"},
    ).content.decode()
    assert "Deleted 1 message(s) and 1 rejected task row(s)." in page
    assert 'hx-swap-oob="true"' in page and "Nothing was dead-lettered here." in page
    assert broker.count("default.dlq") == 0 and not rejected_rows().exists()
    again = admin.post(delete_url(), {"key": keys[rejections["not_json"]], "confirmed": "yes"})
    assert again.status_code == 302  # already gone: a notice, not an error page
    assert "no longer in default.dlq" in admin.get(PAGE).content.decode()


def test_redrive_is_refused_for_an_unregistered_task(admin, rejections, broker):
    key = listed(admin)[rejections["unknown"]]
    response = admin.post(
        redrive_url(), {"key": key}, headers={"HX-Request": "true", "HX-Target": "dead-letters"}
    )
    body = response.content.decode()
    assert "cannot be re-driven: it would be rejected again" in body
    assert "is not a registered task" in body
    assert broker.count("default.dlq") == 3 and broker.count("default") == 0
    row = MessageLog.objects.get(uuid=rejections["unknown"])
    assert row.status == "FAILED" and row.exception_type == REJECTED_TYPE


def test_redrive_of_a_rejected_registered_task_runs_it_with_the_message_arguments(
    admin, worker_factory, broker
):
    """The worker's consumer hook raised on this message, so it was rejected; the row it
    wrote has no arguments. Re-driven once that worker is gone, a worker runs it with the
    arguments the message carried."""
    raising = worker_factory(
        "--no-scheduler", CARROT_TEST_OTHER_CONSUMER="tests.testapp.consumers.RaisingConsumer"
    ).wait_ready()
    key = f"explode-{uuid.uuid4()}"
    message_id = broker.publish("other", envelope(key), type=ON_OTHER)
    row = wait_until(lambda: rejected_rows("other").filter(uuid=message_id).first(), 20)
    assert "get_task_type raised" in row.exception and row.task_args == []
    wait_until(lambda: broker.count("other.dlq") == 1, 10)
    raising.signal(signal.SIGTERM)
    assert raising.wait(30) == 0
    page = admin.get(PAGE).content.decode()
    assert "get_task_type raised" in page and key in page
    message_key = listed(admin)[message_id]
    enabled = rf'value="{message_key}">.*?<button type="submit" class="button small">'
    assert re.search(enabled, page, re.S)
    response = admin.post(redrive_url("other"), {"key": message_key, "confirmed": "yes"})
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.status == "PUBLISHED" and row.task_args == [key] and row.exception == ""
    assert broker.count("other.dlq") == 0 and broker.count("other") == 1
    notices = admin.get(PAGE).content.decode()
    assert "Re-drove tests.testapp.tasks.on_other_queue" in notices
    worker_factory("--no-scheduler").wait_ready()
    assert finished(row).status == "COMPLETED"
    assert Effect.objects.filter(key=key).count() == 1
    assert not rejected_rows("other").exists()


def test_a_message_without_a_row_is_redriven_under_its_id(admin, broker):
    message_id = dead_letter(broker, task=ADD)
    page = admin.get(PAGE).content.decode()
    assert '<span class="muted">none</span>' in page  # no task row
    key = listed(admin)[message_id]
    admin.post(redrive_url(), {"key": key, "confirmed": "yes"})
    row = MessageLog.objects.get(uuid=message_id)
    assert row.status == "PUBLISHED" and row.task_args == [2, 3] and row.queue == "default"
    assert broker.count("default.dlq") == 0 and broker.count("default") == 1


def test_a_stray_copy_of_a_task_that_ran_can_be_deleted_but_not_redriven(admin, broker):
    done = MessageLog.objects.create(task=ADD, status="COMPLETED", completion_time=timezone.now())
    dead_letter(broker, task=ADD, message_id=str(done.uuid))
    page = admin.get(PAGE).content.decode()
    assert "Cannot re-drive: its task is COMPLETED (this is a stray copy)" in page
    key = listed(admin)[str(done.uuid)]
    admin.post(redrive_url(), {"key": key, "confirmed": "yes"})
    assert broker.count("default.dlq") == 1 and broker.count("default") == 0
    admin.post(delete_url(), {"key": key, "confirmed": "yes"})
    assert broker.count("default.dlq") == 0
    assert MessageLog.objects.get(pk=done.pk).status == "COMPLETED"  # not a rejected row


def test_a_rejected_row_whose_message_is_gone_is_listed_and_can_be_deleted(admin, broker):
    row = MessageLog.objects.create(
        task=ADD,
        status="FAILED",
        queue="default",
        exception=rejected("message body is not JSON"),
        exception_type=REJECTED_TYPE,
        failure_time=timezone.now(),
    )
    page = admin.get(PAGE).content.decode()
    assert "Rejected tasks whose message is no longer in default.dlq" in page
    assert f'id="rejected-{row.uuid}"' in page
    admin.post(delete_url(), {"row": str(row.uuid), "confirmed": "yes"})
    assert not MessageLog.objects.filter(pk=row.pk).exists()


class PoisonProperties(pika.BasicProperties):
    """Encodes a header pika's decoder chokes on: a timestamp past the year 9999."""

    def encode(self):
        encoded = b"".join(super().encode())
        good = b"T" + struct.pack(">Q", 946684800)  # 2000-01-01, as encoded for the header
        return [encoded.replace(good, b"T" + struct.pack(">Q", 2**63))]


def test_a_message_pika_cannot_decode_is_listed_and_can_be_deleted(admin, broker):
    dead_letter(broker)  # the queue exists
    poison_id = str(uuid.uuid4())
    properties = PoisonProperties(
        content_type="application/json",
        message_id=poison_id,
        type=ADD,
        headers={"when": dt.datetime(2000, 1, 1, tzinfo=dt.UTC)},
    )
    broker.channel.basic_publish("", "default.dlq", envelope(1, 2), properties)
    after = dead_letter(broker)
    keys = listed(admin)
    assert set(keys) >= {poison_id, after}  # the messages behind it are listed too
    assert "its headers cannot be decoded" in admin.get(PAGE).content.decode()
    admin.post(delete_url(), {"key": keys[poison_id], "confirmed": "yes"})
    assert broker.count("default.dlq") == 2 and poison_id not in listed(admin)


def test_task_names_from_messages_are_escaped(admin, broker):
    dead_letter(broker, task=XSS, body=envelope(XSS))
    body = admin.get(PAGE).content.decode()
    assert XSS not in body and "&lt;img src=x" in body


def test_browsing_leaves_every_message_in_place_and_in_order(broker):
    from carrot.broker.dead_letters import browse, holding
    from carrot.conf import get_config

    config = get_config()
    queue = config.queue("default")
    ids = [dead_letter(broker, body=envelope(i)) for i in range(5)]
    (first,) = browse([queue], config, start=0, limit=2)
    assert [x.delivery.message_id for x in first.letters] == ids[:2]
    assert (first.waiting, [x.position for x in first.letters]) == (5, [1, 2])
    (later,) = browse([queue], config, start=2, limit=2)
    assert [x.delivery.message_id for x in later.letters] == ids[2:4]
    assert broker.count("default.dlq") == 5
    with holding(queue, config, lambda x: x.delivery.message_id in ids[1:3], first=False) as held:
        assert [x.delivery.message_id for x in held.letters] == ids[1:3] and held.complete
        held.ack(held.letters[0])
    (rest,) = browse([queue], config)
    assert [x.delivery.message_id for x in rest.letters] == [ids[0], *ids[2:]]


def test_a_long_dead_letter_queue_is_shown_a_page_at_a_time(admin, broker):
    broker.channel.queue_declare("default.dlq", durable=True)
    for i in range(105):
        broker.publish("default.dlq", envelope(i), type=ADD)
    body = admin.get(PAGE).content.decode()
    assert "messages 1–100 of 105" in body and body.count('id="dl-') == 100
    assert "?queue=default&amp;start=100" in body
    second = admin.get(PAGE, {"queue": "default", "start": "100"}).content.decode()
    assert "messages 101–105 of 105" in second and second.count('id="dl-') == 5
    assert "other.dlq" not in second and "?queue=default&amp;start=0" in second
    assert broker.count("default.dlq") == 105


# ------------------------------------------------------------------ the rules


def test_staff_only_and_actions_need_their_permission(client, broker):
    message_id = dead_letter(broker)
    assert client.get(PAGE).status_code == 302  # anonymous: to the login page
    assert client.post(redrive_url(), {"key": "0" * 32}).status_code == 302
    client.force_login(User.objects.create_user("plain", password="pw"))
    assert client.get(PAGE).status_code == 403
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(viewer)
    page = client.get(PAGE).content.decode()
    assert page.count(">Re-drive<") == 0 and page.count(">Delete<") == 0
    key = re.search(r'id="dl-([0-9a-f]{32})"', page).group(1)
    for url in (redrive_url(), delete_url()):
        assert client.post(url, {"key": key, "confirmed": "yes"}).status_code == 403
    assert broker.count("default.dlq") == 1
    assert not MessageLog.objects.filter(uuid=message_id).exists()


def test_actions_are_post_only_and_need_the_csrf_token(broker):
    dead_letter(broker)
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    page = client.get(PAGE)
    key = re.search(r'id="dl-([0-9a-f]{32})"', page.content.decode()).group(1)
    for url in (redrive_url(), delete_url()):
        assert client.get(url).status_code == 405
        assert client.post(url, {"key": key, "confirmed": "yes"}).status_code == 403
    assert broker.count("default.dlq") == 1 and broker.count("default") == 0
    token = page.cookies["csrftoken"].value
    response = client.post(
        delete_url(), {"key": key, "confirmed": "yes"}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 302 and broker.count("default.dlq") == 0


def test_without_javascript_each_action_asks_first(admin, broker):
    dead_letter(broker)
    key = next(iter(listed(admin).values()))
    for url in (redrive_url(), delete_url()):
        page = admin.post(url, {"key": key})
        assert page.status_code == 200
        body = page.content.decode()
        assert 'name="confirmed" value="yes"' in body and f'value="{key}"' in body
    assert broker.count("default.dlq") == 1 and broker.count("default") == 0


ODD = ["", "²", "9" * 5000, "-1", "150", "a\x00b", "x" * 20_000, "' OR 1=1 --", "☃", "[[["]


def test_odd_query_strings_and_posts_are_notices_not_500s(broker):
    dead_letter(broker)
    client = Client(raise_request_exception=False)
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    for value in ODD:
        for query in ({"queue": value}, {"queue": "default", "start": value}, {"start": value}):
            response = client.get(PAGE, query)
            assert response.status_code == 200, (query, response.status_code)
        for url in (redrive_url(), delete_url(), redrive_url(value or "x"), delete_url("nope")):
            data = {"key": value, "row": value, "confirmed": "yes", "queue_shown": value}
            for headers in ({}, {"HX-Request": "true", "HX-Target": "dead-letters"}):
                code = client.post(url, data | {"start": value}, headers=headers).status_code
                assert code in (200, 302), (url, value[:20], code)
    assert broker.count("default.dlq") == 1
    body = client.get(PAGE, {"queue": "nope"}).content.decode()
    assert "There is no queue &#x27;nope&#x27;; showing every queue." in body
    assert "default.dlq" in body and "other.dlq" in body


def test_a_broker_that_cannot_be_reached_is_shown_on_the_page(admin, broker, settings):
    row = MessageLog.objects.create(
        task=ADD,
        status="FAILED",
        exception=rejected("message body is not JSON"),
        exception_type=REJECTED_TYPE,
    )
    carrot = dict(settings.CARROT, default_broker="amqp://guest:guest@127.0.0.1:1/")
    with override_settings(CARROT=carrot):
        response = admin.get(PAGE)
        body = response.content.decode()
        assert response.status_code == 200
        assert "The dead-letter queue cannot be read" in body and "is unavailable" in body
        assert f'id="rejected-{row.uuid}"' in body  # the rows are still shown, read-only
        key = "a" * 32
        response = admin.post(redrive_url(), {"key": key, "confirmed": "yes"}, follow=True)
        assert response.status_code == 200
        assert "Nothing was re-driven" in response.content.decode()
        response = admin.post(delete_url(), {"row": str(row.uuid), "confirmed": "yes"}, follow=True)
        assert "Nothing was deleted" in response.content.decode()
    assert MessageLog.objects.filter(pk=row.pk).exists()


def test_deleting_a_message_takes_every_copy_of_it_with_its_row(admin, broker):
    # The outbox published it twice (a lost confirm), and the gate rejected both copies.
    row = MessageLog.objects.create(
        task=ADD,
        queue="default",
        status="FAILED",
        exception=rejected("its body is not JSON"),
        exception_type=REJECTED_TYPE,
        failure_time=timezone.now(),
    )
    for _ in range(2):
        dead_letter(broker, body=b"{cut", message_id=str(row.uuid))
    wait_until(lambda: broker.count("default.dlq") == 2, 5)
    key = listed(admin)[str(row.uuid)]
    admin.post(delete_url(), {"key": key, "confirmed": "yes"})
    assert broker.count("default.dlq") == 0  # no copy is left behind without its row
    assert not MessageLog.objects.filter(pk=row.pk).exists()


def test_bodies_that_cannot_be_masked_are_described_not_shown(admin, broker):
    from carrot.conf import get_config

    too_big = b'{"args": [], "kwargs": {"password": "' + b"p" * get_config().max_message_bytes
    dead_letter(broker, body=too_big)
    dead_letter(broker, body=b'{"args": [], "kwargs": {"password": "two words", "x": 1')
    page = admin.get(PAGE).content.decode()
    assert "larger than max_message_bytes" in page
    assert "mentions a secret-looking name: not shown" in page
    assert "two words" not in page and "words" not in page and "ppppp" not in page
