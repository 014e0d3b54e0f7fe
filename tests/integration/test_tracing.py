"""OpenTelemetry across a real RabbitMQ hop: the producer span in this process (the SDK's
in-memory exporter), the worker's consumer spans written to a file by its own SDK."""

from __future__ import annotations

import pytest
from django.db import transaction

from carrot.models import MessageLog, OutboxEntry
from tests.harness import finished, wait_until
from tests.spans import in_memory, read_spans
from tests.testapp.tasks import add, chatty, fail, whoami

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def producer_spans():
    exporter = in_memory()
    exporter.clear()
    yield exporter
    exporter.clear()


@pytest.fixture
def traced_worker(worker_factory, tmp_path):
    path = tmp_path / "worker-spans.jsonl"
    worker = worker_factory("--no-scheduler", CARROT_TEST_SPANS=str(path)).wait_ready()
    worker.spans = lambda: read_spans(path)
    return worker


def consumer_spans(worker, message_id: str, count: int = 1) -> list[dict]:
    def found():
        spans = [
            s
            for s in worker.spans()
            if s["kind"] == "CONSUMER" and s["attributes"].get("messaging.message.id") == message_id
        ]
        return spans if len(spans) >= count else None

    return wait_until(found, 20, message=f"{count} consumer span(s) of {message_id}")


def producer_span(exporter, message_id: str) -> dict:
    from tests.spans import as_dict

    spans = [as_dict(s) for s in exporter.get_finished_spans()]
    matching = [s for s in spans if s["attributes"].get("messaging.message.id") == message_id]
    assert len(matching) == 1, spans
    return matching[0]


def test_the_worker_span_continues_the_callers_trace(traced_worker, producer_spans):
    log = finished(add.delay(2, 3))
    assert log.status == "COMPLETED"
    uuid = str(log.uuid)
    producer = producer_span(producer_spans, uuid)
    assert producer["kind"] == "PRODUCER"
    assert producer["name"] == "publish default"
    assert producer["attributes"] == {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": "default",
        "messaging.rabbitmq.destination.routing_key": "default",
        "messaging.message.id": uuid,
        "carrot.task": add.name,
        "carrot.trigger": "call",
    }
    # The context went into the row, and from there into the AMQP headers.
    row = MessageLog.objects.get(pk=log.pk)
    assert row.trace_context["traceparent"].split("-")[1:3] == [
        producer["trace_id"],
        producer["span_id"],
    ]

    (consumer,) = consumer_spans(traced_worker, uuid)
    assert consumer["name"] == "process default"
    assert consumer["trace_id"] == producer["trace_id"]
    assert consumer["parent_id"] == producer["span_id"]
    assert consumer["attributes"] == {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "default",
        "messaging.message.id": uuid,
        "carrot.task": add.name,
        "carrot.attempt": 1,
        "carrot.outcome": "completed",
    }
    assert consumer["status"] == "UNSET"
    # The task's own log line carries the consumer span's ids.
    (line,) = [entry for entry in row.log if entry["message"] == "adding 2 and 3"]
    assert (line["trace_id"], line["span_id"]) == (consumer["trace_id"], consumer["span_id"])


def test_a_failure_is_an_error_with_its_exception(traced_worker, producer_spans):
    log = finished(fail.delay("on purpose"))
    assert log.status == "FAILED"
    (consumer,) = consumer_spans(traced_worker, str(log.uuid))
    assert consumer["status"] == "ERROR"
    assert consumer["description"] == "ValueError: on purpose"
    assert consumer["attributes"]["carrot.outcome"] == "failed"
    (event,) = [e for e in consumer["events"] if e["name"] == "exception"]
    assert event["attributes"]["exception.type"] == "ValueError"
    assert event["attributes"]["exception.message"] == "on purpose"
    assert "fail" in event["attributes"]["exception.stacktrace"]


def test_a_retry_is_an_event_and_every_attempt_has_the_same_parent(traced_worker, producer_spans):
    log = finished(whoami.delay(fail_first=True))
    assert (log.status, log.attempts) == ("COMPLETED", 2)
    producer = producer_span(producer_spans, str(log.uuid))
    first, second = sorted(
        consumer_spans(traced_worker, str(log.uuid), 2),
        key=lambda s: s["attributes"]["carrot.attempt"],
    )
    assert [first["parent_id"], second["parent_id"]] == [producer["span_id"]] * 2
    assert {first["trace_id"], second["trace_id"]} == {producer["trace_id"]}
    assert first["attributes"]["carrot.outcome"] == "retried"
    assert first["status"] == "UNSET"  # not a failure: it runs again
    (retry,) = [e for e in first["events"] if e["name"] == "retry"]
    assert retry["attributes"]["exception.type"] == "RuntimeError"
    assert retry["attributes"]["exception.message"] == "RuntimeError: first attempt fails"
    assert retry["attributes"]["carrot.retry_in_seconds"] == pytest.approx(0.1)
    assert second["attributes"]["carrot.outcome"] == "completed"


def test_a_call_inside_a_span_and_a_transaction(traced_worker, producer_spans):
    from opentelemetry import trace

    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("handle request") as request_span, transaction.atomic():
        log = chatty.delay()
    request = request_span.get_span_context()
    log = finished(log)
    producer = producer_span(producer_spans, str(log.uuid))
    assert producer["parent_id"] == format(request.span_id, "016x")
    (consumer,) = consumer_spans(traced_worker, str(log.uuid))
    assert consumer["trace_id"] == format(request.trace_id, "032x")
    assert {entry["span_id"] for entry in MessageLog.objects.get(pk=log.pk).log} == {
        consumer["span_id"]
    }


def test_delay_many_is_one_span_for_the_batch(traced_worker, producer_spans):
    logs = add.delay_many([((i, i), {}) for i in range(3)])
    spans = [s for s in producer_spans.get_finished_spans() if s.name == "publish default"]
    assert len(spans) == 1
    assert spans[0].attributes["messaging.batch.message_count"] == 3
    parent = format(spans[0].get_span_context().span_id, "016x")
    for log in logs:
        finished(log)
        (consumer,) = consumer_spans(traced_worker, str(log.uuid))
        assert consumer["parent_id"] == parent


def test_a_requeue_is_a_new_publish_in_a_new_trace(traced_worker, producer_spans):
    log = finished(fail.delay("first"))
    first = producer_span(producer_spans, str(log.uuid))
    producer_spans.clear()
    MessageLog.objects.get(pk=log.pk).requeue()
    requeue = producer_span(producer_spans, str(log.uuid))
    assert requeue["attributes"]["carrot.trigger"] == "requeue"
    assert requeue["trace_id"] != first["trace_id"]
    wait_until(lambda: len(consumer_spans(traced_worker, str(log.uuid), 2)) == 2, 20)
    latest = [
        s
        for s in consumer_spans(traced_worker, str(log.uuid), 2)
        if s["parent_id"] == requeue["span_id"]
    ]
    assert len(latest) == 1


def test_tracing_can_be_turned_off(traced_worker, producer_spans, settings):
    settings.CARROT = {**settings.CARROT, "tracing": False}
    log = add.delay(1, 1)
    assert producer_spans.get_finished_spans() == ()
    assert MessageLog.objects.get(pk=log.pk).trace_context == {}


def test_a_django_task_enqueue_is_traced_too(traced_worker, producer_spans):
    from tests.djangoapp import tasks as django_tasks

    result = django_tasks.add.enqueue(2, 3)
    log = finished(MessageLog.objects.get(uuid=result.id))
    assert log.status == "COMPLETED"
    producer = producer_span(producer_spans, str(log.uuid))
    (consumer,) = consumer_spans(traced_worker, str(log.uuid))
    assert consumer["parent_id"] == producer["span_id"]


def test_a_scheduled_tick_is_a_producer_span(producer_spans, broker):
    from datetime import timedelta

    from django.utils import timezone

    from carrot.models import ScheduledTask
    from carrot.scheduling.scheduler import Scheduler

    now = timezone.now()
    ScheduledTask.objects.create(
        task=add.name,
        task_name="tick",
        interval_type="seconds",
        interval_count=60,
        task_args=[1, 2],
        next_run_at=now - timedelta(seconds=1),
    )
    (log,) = Scheduler().publish_due(now)
    producer = producer_span(producer_spans, str(log.uuid))
    assert producer["attributes"]["carrot.trigger"] == "schedule"
    wait_until(lambda: broker.count("default") == 1, 10)  # confirmed: the outbox is settled
    wait_until(lambda: not OutboxEntry.objects.exists(), 10)
    assert (
        MessageLog.objects.get(pk=log.pk).trace_context["traceparent"].split("-")[2]
        == (producer["span_id"])
    )


def test_the_task_page_shows_the_trace_id(producer_spans, broker, client):
    from django.contrib.auth.models import User
    from django.urls import reverse

    log = add.delay(1, 2)
    producer = producer_span(producer_spans, str(log.uuid))
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    page = client.get(reverse("carrot:task", args=[log.uuid])).content.decode()
    assert "<dt>Trace</dt>" in page and producer["trace_id"] in page
    MessageLog.objects.filter(pk=log.pk).update(trace_context={"traceparent": "<b>x</b>"})
    page = client.get(reverse("carrot:task", args=[log.uuid])).content.decode()
    assert "<dt>Trace</dt>" not in page and "<b>x</b>" not in page
    wait_until(lambda: broker.count("default") == 1, 10)
    wait_until(lambda: not OutboxEntry.objects.exists(), 10)
