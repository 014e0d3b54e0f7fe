"""The observability room without services: its settings, its instruments, the W3C
context a publish stores and sends, and trace ids on log records."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from django.test import override_settings
from prometheus_client import REGISTRY

from carrot.conf import get_config, parse
from carrot.management.commands.carrot import JsonFormatter
from carrot.messages import ETA_HEADER
from carrot.models import MessageLog
from carrot.models.handover import outgoing
from carrot.observability import metrics, tracing
from carrot.worker.logcapture import LogBuffer
from tests.spans import in_memory


def ids(problems):
    return [p.id for p in problems]


# ---------------------------------------------------------------- settings


def test_metrics_are_off_and_tracing_on_by_default():
    config, problems = parse({})
    assert problems == []
    assert (config.metrics.port, config.metrics.address, config.metrics.token) == (
        None,
        "127.0.0.1",
        None,
    )
    assert config.tracing is True


def test_a_metrics_section_is_read():
    config, problems = parse(
        {"metrics": {"port": 9191, "address": "10.0.0.5", "token": "x" * 20}, "tracing": False}
    )
    assert problems == []
    assert (config.metrics.port, config.metrics.address) == (9191, "10.0.0.5")
    assert config.metrics.token == "x" * 20 and "x" * 20 not in repr(config)
    assert config.tracing is False


@pytest.mark.parametrize(
    ("section", "message", "problem"),
    [
        ("9191", "expected a dict", "carrot.E012"),
        ({"port": 0}, "expected a port number (1-65535) or None, got 0", "carrot.E012"),
        ({"port": "9191"}, "got '9191'", "carrot.E012"),
        ({"port": True}, "got True", "carrot.E012"),
        ({"address": ""}, "expected an address to listen on", "carrot.E012"),
        ({"token": "short"}, "at least 16 characters", "carrot.E012"),
        ({"prot": 9191}, "'prot'", "carrot.W001"),  # an unknown key, as everywhere
    ],
)
def test_a_bad_metrics_section_is_a_problem(section, message, problem):
    config, problems = parse({"metrics": section})
    assert ids(problems) == [problem]
    assert message in problems[0].msg
    assert config.metrics.port is None  # the default replaces what was wrong


def test_the_bad_values_use_e012():
    _, problems = parse({"metrics": {"port": -1, "token": 5}})
    assert ids(problems) == ["carrot.E012", "carrot.E012"]


# ---------------------------------------------------------------- instruments


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_instruments_record_only_once_enabled(monkeypatch):
    monkeypatch.setattr(metrics, "_instruments", None)
    metrics.task_started("unit.task", "q")
    metrics.task_finished("unit.task", "q", "completed", 0.5)
    metrics.ticks(published=1)
    assert not metrics.enabled()
    monkeypatch.undo()
    metrics.enable()  # once per process; later calls keep the same instruments
    metrics.enable()
    before = sample("carrot_tasks_total", task="unit.task", queue="q", outcome="completed")
    metrics.task_started("unit.task", "q")
    metrics.task_finished("unit.task", "q", "completed", 0.5)
    metrics.task_finished("unit.task", "q", "rejected", None)
    metrics.queue_state("q", running=3, prefetched=7)
    metrics.relay_state("h:5672", 11)
    metrics.confirmed([0.002, 0.003])
    metrics.reconnected("publisher")
    metrics.ticks(published=2, skipped=3)
    after = sample("carrot_tasks_total", task="unit.task", queue="q", outcome="completed")
    assert after == before + 1
    assert sample("carrot_tasks_total", task="unit.task", queue="q", outcome="rejected") >= 1
    assert sample("carrot_task_duration_seconds_bucket", task="unit.task", queue="q", le="0.5") >= 1
    assert sample("carrot_tasks_in_progress", queue="q") == 3
    assert sample("carrot_messages_prefetched", queue="q") == 7
    assert sample("carrot_relay_backlog_messages", broker="h:5672") == 11
    assert sample("carrot_publish_confirm_seconds_count") >= 2
    assert sample("carrot_broker_reconnects_total", connection="publisher") >= 1
    assert sample("carrot_scheduler_ticks_total", result="skipped") >= 3


def test_the_duration_buckets_go_from_a_millisecond_to_an_hour():
    assert metrics.DURATION_BUCKETS[0] == 0.001 and metrics.DURATION_BUCKETS[-1] == 3600.0
    assert list(metrics.DURATION_BUCKETS) == sorted(metrics.DURATION_BUCKETS)


# ---------------------------------------------------------------- tracing


def unsaved(**fields):
    return MessageLog(uuid=uuid.uuid4(), task="tests.testapp.tasks.add", queue="default", **fields)


def test_a_publish_span_stores_its_context_on_the_rows_and_in_the_headers():
    exporter = in_memory()
    exporter.clear()
    log = unsaved()
    with tracing.publishing([log]):
        pass
    (span,) = exporter.get_finished_spans()
    context = span.get_span_context()
    version, trace_id, span_id, flags = log.trace_context["traceparent"].split("-")
    assert (trace_id, span_id) == (
        format(context.trace_id, "032x"),
        format(context.span_id, "016x"),
    )
    headers = outgoing(log, written=None, body=b"{}", queue=get_config().queue("default")).headers
    assert headers == log.trace_context


def test_the_headers_keep_the_eta_beside_the_context():
    from datetime import timedelta

    from django.utils import timezone

    log = unsaved(eta=timezone.now() + timedelta(seconds=30))
    with tracing.publishing([log]):
        pass
    headers = outgoing(log, None, body=b"{}", queue=get_config().queue("default")).headers
    assert headers == {**log.trace_context, ETA_HEADER: int(log.eta.timestamp() * 1000)}


def test_tracing_off_stores_nothing():
    exporter = in_memory()
    exporter.clear()
    log = unsaved()
    with override_settings(CARROT={"tracing": False}), tracing.publishing([log]):
        assert not tracing.enabled()
    assert log.trace_context == {}
    assert exporter.get_finished_spans() == ()
    headers = outgoing(log, None, body=b"{}", queue=get_config().queue("default")).headers
    assert headers is None


def test_a_consumer_span_reads_bytes_headers_and_ends_with_its_outcome():
    exporter = in_memory()
    exporter.clear()
    log = unsaved()
    with tracing.publishing([log]):
        pass
    headers = {k: v.encode() for k, v in log.trace_context.items()}  # as pika may give them
    span = tracing.start_run(headers, queue="default", message_id="m", task="t", attempt=1)
    with tracing.current(span):
        pass
    tracing.end_run(span, "failed", error=ValueError("x"), description="ValueError: x")
    producer, consumer = exporter.get_finished_spans()
    assert consumer.parent.span_id == producer.get_span_context().span_id
    assert consumer.status.status_code.name == "ERROR"
    assert consumer.events[0].name == "exception"


def test_log_records_carry_the_ids_of_the_current_span():
    tracing.install_log_correlation()
    from opentelemetry import trace

    logger = logging.getLogger("carrot.unit")
    buffer = LogBuffer(logging.DEBUG, 10)
    outside = logger.makeRecord("carrot.unit", logging.INFO, __file__, 1, "outside", (), None)
    with trace.get_tracer("unit").start_as_current_span("work") as span:
        inside = logger.makeRecord("carrot.unit", logging.INFO, __file__, 1, "inside", (), None)
    context = span.get_span_context()
    assert inside.otelTraceID == format(context.trace_id, "032x")
    assert inside.otelSpanID == format(context.span_id, "016x")
    assert outside.otelTraceID == "0"
    buffer.add(outside)
    buffer.add(inside)
    first, second = buffer.as_list()
    assert "trace_id" not in first
    assert (second["trace_id"], second["span_id"]) == (inside.otelTraceID, inside.otelSpanID)
    data = json.loads(JsonFormatter().format(inside))
    assert (data["trace_id"], data["span_id"]) == (inside.otelTraceID, inside.otelSpanID)
    assert "trace_id" not in json.loads(JsonFormatter().format(outside))
