"""Per-task capture of the ``carrot`` logger.

One handler sits on the ``carrot`` logger; each worker thread points it at the buffer of
the task it is running, so records from other threads never mix into a task's log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

CAPTURED_LOGGER = "carrot"
_formatter = logging.Formatter()


class LogBuffer:
    """The records one task emitted, as JSON-ready dicts, capped at ``max_records``."""

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
        self.records.append(
            {
                "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
                "level": record.levelname,
                "levelno": record.levelno,
                "logger": record.name,
                "message": message,
            }
        )

    def as_list(self) -> list[dict[str, Any]]:
        """Return the records, with a note when some were dropped."""
        if not self.dropped:
            return list(self.records)
        note = {
            "time": datetime.now(tz=UTC).isoformat(),
            "level": "WARNING",
            "levelno": logging.WARNING,
            "logger": CAPTURED_LOGGER,
            "message": f"{self.dropped} more log records were dropped "
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
