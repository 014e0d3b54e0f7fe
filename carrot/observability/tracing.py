"""OpenTelemetry spans for carrot (the optional ``opentelemetry-api``; the SDK and its
exporter are the project's choice).

- Publishing (``delay()``, ``delay_many()``, ``apply_async()``, Django's ``enqueue()``, a
  scheduled tick, a requeue): one PRODUCER span per call (one per batch for
  ``delay_many()``), whose W3C trace context is stored with each row (``trace_context``)
  and sent in the message's AMQP headers, every time the row is published: retries and
  the outbox sweeper's republish carry the same context.
- Running: one CONSUMER span per attempt, a child of the producer's context taken from the
  headers; it is current while the task runs (so the task's own spans and log records
  belong to it) and ends when the worker decided the attempt's outcome: a retry is an
  event on it, a failure is recorded with the exception and an ERROR status.
- Log records made while a span is current carry ``otelTraceID`` and ``otelSpanID`` (the
  names OpenTelemetry's logging instrumentation uses); the task's captured log lines
  keep them as ``trace_id`` and ``span_id``.

With ``opentelemetry-api`` absent, or ``CARROT['tracing'] = False``, every function here
returns at once and ``opentelemetry`` is never imported. With the API installed and no SDK
configured, spans are the API's non-recording ones.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from carrot.conf import get_config
from carrot.observability.metrics import installed
from carrot.version import __version__

AVAILABLE = installed("opentelemetry")
TRACER_NAME = "carrot"
SYSTEM = "rabbitmq"


class _Otel:
    """The parts of opentelemetry-api carrot uses, imported on first use."""

    def __init__(self) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.context = context
        self.propagate = propagate
        self.trace = trace
        self.producer = SpanKind.PRODUCER
        self.consumer = SpanKind.CONSUMER
        self.error = lambda text: Status(StatusCode.ERROR, text)

        # Before the project sets its TracerProvider this is a proxy, which then uses it.
        self._tracer = trace.get_tracer(TRACER_NAME, __version__)

    def tracer(self) -> Any:
        return self._tracer


_otel: _Otel | None = None


def _api() -> _Otel | None:
    """Return the OpenTelemetry API when tracing is on, else None."""
    global _otel
    if not AVAILABLE or not get_config().tracing:
        return None
    if _otel is None:
        _otel = _Otel()
    return _otel


def enabled() -> bool:
    return _api() is not None


class _HeaderGetter:
    """Read a W3C header from AMQP headers (a value may arrive as bytes)."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None:
            return None
        return [value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)]

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


_getter = _HeaderGetter()


def _messaging(operation: str, kind: str, queue: str) -> dict[str, Any]:
    return {
        "messaging.system": SYSTEM,
        "messaging.operation.type": kind,
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
    }


@contextmanager
def publishing(logs: Sequence[Any], *, trigger: str = "call") -> Iterator[None]:
    """Around publishing ``logs`` (unsaved or about to be republished rows): a PRODUCER
    span whose context each row keeps in ``trace_context``.

    ``trigger`` says who published: ``call``, ``schedule`` or ``requeue``.
    """
    otel = _api()
    if otel is None or not logs:
        yield
        return
    first = logs[0]
    attributes = _messaging("publish", "send", first.queue)
    attributes["messaging.rabbitmq.destination.routing_key"] = first.routing_key or first.queue
    attributes["carrot.task"] = first.task
    attributes["carrot.trigger"] = trigger
    if len(logs) == 1:
        attributes["messaging.message.id"] = str(first.uuid)
    else:
        attributes["messaging.batch.message_count"] = len(logs)
    with otel.tracer().start_as_current_span(
        f"publish {first.queue}", kind=otel.producer, attributes=attributes
    ):
        carrier: dict[str, str] = {}
        otel.propagate.inject(carrier)
        for log in logs:
            log.trace_context = carrier
        yield


def start_run(
    headers: Mapping[str, Any], *, queue: str, message_id: str, task: str, attempt: int
) -> Any:
    """Start the CONSUMER span of one attempt (not made current: see ``current``);
    return None when tracing is off."""
    otel = _api()
    if otel is None:
        return None
    parent = otel.propagate.extract(headers, getter=_getter)
    attributes = _messaging("process", "process", queue)
    attributes["messaging.message.id"] = message_id
    attributes["carrot.task"] = task
    attributes["carrot.attempt"] = attempt
    return otel.tracer().start_span(
        f"process {queue}", context=parent, kind=otel.consumer, attributes=attributes
    )


@contextmanager
def current(span: Any) -> Iterator[None]:
    """Make ``span`` the current span of this thread inside the block."""
    if span is None or _otel is None:
        yield
        return
    token = _otel.context.attach(_otel.trace.set_span_in_context(span))
    try:
        yield
    finally:
        _otel.context.detach(token)


def end_run(
    span: Any,
    outcome: str,
    *,
    error: BaseException | None = None,
    description: str = "",
    retry_in: float | None = None,
) -> None:
    """End an attempt's span with its outcome (any thread may end it)."""
    if span is None or _otel is None:
        return
    span.set_attribute("carrot.outcome", outcome)
    if outcome == "retried":
        event: dict[str, Any] = {"exception.message": description}
        if error is not None:
            event["exception.type"] = type(error).__qualname__
        if retry_in is not None:
            event["carrot.retry_in_seconds"] = round(retry_in, 3)
        span.add_event("retry", event)
    elif outcome == "failed":
        if error is not None:
            span.record_exception(error)
        else:
            span.add_event("exception", {"exception.message": description})
        span.set_status(_otel.error(description))
    span.end()


_correlating = False


def install_log_correlation() -> None:
    """Give every log record of this process the current trace and span ids (once)."""
    global _correlating
    otel = _api()
    if otel is None or _correlating:
        return
    _correlating = True
    previous = logging.getLogRecordFactory()
    get_current_span = otel.trace.get_current_span

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        context = get_current_span().get_span_context()
        if context.is_valid:
            record.otelTraceID = format(context.trace_id, "032x")
            record.otelSpanID = format(context.span_id, "016x")
        else:
            record.otelTraceID = record.otelSpanID = "0"
        return record

    logging.setLogRecordFactory(factory)


def log_ids(record: logging.LogRecord) -> dict[str, str]:
    """Return a record's trace and span ids (empty outside a span or without tracing)."""
    trace_id = getattr(record, "otelTraceID", "0")
    if trace_id == "0":
        return {}
    return {"trace_id": trace_id, "span_id": getattr(record, "otelSpanID", "0")}
