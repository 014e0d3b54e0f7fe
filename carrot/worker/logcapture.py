"""Per-task capture of the ``carrot`` logger.

One handler sits on the ``carrot`` logger; each worker thread points it at the buffer of
the task it is running, so records from other threads never mix into a task's log. While
the task runs, the live log (``livelog``) reads its buffer from another thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from carrot.observability import tracing

CAPTURED_LOGGER = "carrot"
_formatter = logging.Formatter()


class LogBuffer:
    """The records one task emitted, as JSON-ready dicts, capped at ``max_records``.

    Only the task's thread adds to it; any thread may read it meanwhile without a lock:
    records are only ever appended (never changed, reordered or removed), so a copy of
    the list is always a consistent prefix of the task's log.
    """

    def __init__(self, level: int, max_records: int) -> None:
        self.level = level
        self.max_records = max_records
        self.records: list[dict[str, Any]] = []
        self.dropped = 0

    def add(self, record: logging.LogRecord) -> None:
        if record.levelno < self.level:
            return
        if len(self.records) >= self.max_records:
            self.dropped += 1
            return
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{_formatter.formatException(record.exc_info)}"
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "levelno": record.levelno,
            "logger": record.name,
            "message": message,
        }
        entry.update(tracing.log_ids(record))  # with tracing on: trace_id, span_id
        self.records.append(entry)

    def emitted(self) -> int:
        """Return how many records reached the buffer so far, kept or dropped."""
        return len(self.records) + self.dropped

    def as_list(self) -> list[dict[str, Any]]:
        """Return the records, with a note when some were dropped."""
        dropped = self.dropped  # read once: the task's thread may still be adding
        if not dropped:
            return list(self.records)
        note = {
            "time": datetime.now(tz=UTC).isoformat(),
            "level": "WARNING",
            "levelno": logging.WARNING,
            "logger": CAPTURED_LOGGER,
            "message": f"{dropped} more log records were dropped "
            f"(CARROT['task_log_max_records'] = {self.max_records}).",
        }
        return [*self.records, note]


class TaskLogHandler(logging.Handler):
    """Send each record to the buffer of the task running in the emitting thread."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        buffer: LogBuffer | None = getattr(self._local, "buffer", None)
        if buffer is not None:
            buffer.add(record)

    @contextmanager
    def capture(self, level: int, max_records: int) -> Iterator[LogBuffer]:
        buffer = LogBuffer(level, max_records)
        self._local.buffer = buffer
        try:
            yield buffer
        finally:
            self._local.buffer = None


_handler = TaskLogHandler()
_install_lock = threading.Lock()


def install(level: int) -> TaskLogHandler:
    """Attach the capturing handler to the ``carrot`` logger (once) and let ``level`` through."""
    log = logging.getLogger(CAPTURED_LOGGER)
    with _install_lock:
        if _handler not in log.handlers:
            log.addHandler(_handler)
        if log.level == logging.NOTSET or log.level > level:
            log.setLevel(level)
    return _handler


def capture(level: int, max_records: int) -> Any:
    """Capture what the current thread logs to ``carrot`` inside a ``with`` block."""
    return install(level).capture(level, max_records)
