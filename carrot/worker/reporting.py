"""Telling the outside world what became of an attempt: the worker's log line, the
Prometheus counters and the end of its OpenTelemetry span (``carrot.observability``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from carrot.observability import metrics, tracing
from carrot.worker.attempts import Record, log_outcome
from carrot.worker.runner import Outcome

if TYPE_CHECKING:
    from carrot.worker.pool import Work


def report(logger: logging.Logger, work: Work, outcome: Outcome, record: Record) -> None:
    """Report an attempt whose outcome is committed."""
    queue, task = work.delivery.queue, work.task
    log_outcome(logger, work.message_id, queue, task, outcome, record)
    name = record.kind.outcome
    metrics.task_finished(task.name, queue, name, outcome.duration)
    error, retry_in = outcome.error, record.retry_in
    tracing.end_run(work.span, name, error=error, description=outcome.exception, retry_in=retry_in)
