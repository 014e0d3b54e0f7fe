"""The live log's decisions (``carrot.worker.livelog``): which running tasks' logs are
written when, with an injected clock and writer; no broker, no database."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from django.db import OperationalError

from carrot.broker.consuming import Delivery
from carrot.tasks import Task
from carrot.worker import pool as pool_module
from carrot.worker.attempts import Claim
from carrot.worker.livelog import FLUSH_INTERVAL, LiveLog
from carrot.worker.logcapture import LogBuffer
from carrot.worker.pool import TaskPool, Work
from carrot.worker.runner import run_task

logger = logging.getLogger("tests.livelog")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Writer:
    """Record what would be written; write nothing for the rows in ``refuse``."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, int, dict[str, Any]]]] = []
        self.refuse: set[int] = set()
        self.error: Exception | None = None

    def __call__(self, rows: Any) -> set[int]:
        if self.error is not None:
            raise self.error
        self.calls.append(list(rows))
        return {pk for pk, _, _ in rows} - self.refuse

    def messages(self, call: int = -1) -> dict[int, list[str]]:
        return {pk: [r["message"] for r in v["log"]] for pk, _, v in self.calls[call]}


def emit(buffer: LogBuffer, message: str, level: int = logging.INFO) -> None:
    buffer.add(logging.LogRecord("carrot", level, __file__, 1, message, None, None))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def writer() -> Writer:
    return Writer()


@pytest.fixture
def live(clock: Clock, writer: Writer) -> LiveLog:
    return LiveLog(logger, interval=1.0, write=writer, clock=clock)


def test_the_interval_is_about_a_second():
    assert 0.5 <= FLUSH_INTERVAL <= 2.0


def test_a_task_that_ends_within_the_interval_is_never_written(live, clock, writer):
    buffer = LogBuffer(logging.DEBUG, 100)
    with live.watching(1, 1, buffer):
        emit(buffer, "one")
        clock.now += 0.99
        assert live.flush() == 0
    clock.now += 5
    assert live.flush() == 0
    assert writer.calls == []


def test_a_running_task_is_written_once_per_round_with_its_lines_so_far(live, clock, writer):
    buffer = LogBuffer(logging.DEBUG, 2000)
    with live.watching(7, 2, buffer):
        emit(buffer, "one")
        emit(buffer, "two")
        clock.now += 1.0
        assert live.flush() == 1
        assert writer.calls == [[(7, 2, {"log": buffer.as_list()})]]
        assert writer.messages() == {7: ["one", "two"]}
        clock.now += 1.0
        assert live.flush() == 0  # nothing new: nothing written
        for i in range(1000):  # a burst between two rounds is one write
            emit(buffer, f"burst {i}")
        clock.now += 1.0
        assert live.flush() == 1
        assert len(writer.calls) == 2
        assert len(writer.messages()[7]) == 1002
        assert writer.messages()[7][-1] == "burst 999"
    assert live.flush() == 0


def test_the_dropped_records_note_is_in_the_log_so_far(live, clock, writer):
    buffer = LogBuffer(logging.DEBUG, 3)
    with live.watching(1, 1, buffer):
        for i in range(5):
            emit(buffer, f"line {i}")
        clock.now += 1
        live.flush()
    assert writer.messages()[1][:3] == ["line 0", "line 1", "line 2"]
    assert writer.messages()[1][3].startswith("2 more log records were dropped")


def test_every_running_task_with_new_lines_goes_in_one_write(live, clock, writer):
    buffers = [LogBuffer(logging.DEBUG, 100) for _ in range(3)]
    with (
        live.watching(1, 1, buffers[0]),
        live.watching(2, 1, buffers[1]),
        live.watching(3, 4, buffers[2]),
    ):
        emit(buffers[0], "a")
        emit(buffers[2], "c")  # buffers[1] is quiet
        clock.now += 1.5
        assert live.flush() == 2
    assert len(writer.calls) == 1
    assert sorted((pk, attempt) for pk, attempt, _ in writer.calls[0]) == [(1, 1), (3, 4)]


def test_lines_below_the_level_are_not_news(live, clock, writer):
    buffer = LogBuffer(logging.INFO, 100)
    with live.watching(1, 1, buffer):
        emit(buffer, "quiet", logging.DEBUG)
        clock.now += 2
        assert live.flush() == 0
    assert writer.calls == []


def test_a_row_the_write_skipped_is_written_again_next_round(live, clock, writer):
    buffer = LogBuffer(logging.DEBUG, 100)
    with live.watching(5, 1, buffer):
        emit(buffer, "one")
        clock.now += 1
        writer.refuse = {5}  # locked by the recorder, or no longer IN_PROGRESS
        assert live.flush() == 0
        writer.refuse = set()
        clock.now += 1
        assert live.flush() == 1
    assert len(writer.calls) == 2


def test_a_database_error_is_logged_and_retried_next_round(live, clock, writer, caplog):
    buffer = LogBuffer(logging.DEBUG, 100)
    with live.watching(5, 1, buffer):
        emit(buffer, "one")
        clock.now += 1
        writer.error = OperationalError("the database went away")
        with caplog.at_level(logging.WARNING, logger.name):
            live._round()  # the thread's round: it survives
        assert "Could not write the logs of running tasks" in caplog.text
        assert "the database went away" in caplog.text
        writer.error = None
        clock.now += 1
        live._round()
    assert writer.messages() == {5: ["one"]}


def test_an_unexpected_error_does_not_end_the_thread(live, clock, writer, caplog):
    buffer = LogBuffer(logging.DEBUG, 100)
    with live.watching(5, 1, buffer):
        emit(buffer, "one")
        clock.now += 1
        writer.error = RuntimeError("surprise")
        with caplog.at_level(logging.ERROR, logger.name):
            live._round()
        assert "surprise" in caplog.text
        writer.error = None
        live._round()
    assert len(writer.calls) == 1


def test_the_thread_starts_and_stops(writer):
    live = LiveLog(logger, interval=0.01, write=writer)
    buffer = LogBuffer(logging.DEBUG, 100)
    with live.watching(9, 1, buffer):
        emit(buffer, "one")
        live.start()
        deadline = time.monotonic() + 5
        while not writer.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        live.stop(2)
    assert live._thread is not None and not live._thread.is_alive()
    assert writer.messages(0) == {9: ["one"]}


def test_reading_while_the_task_appends_sees_a_prefix():
    buffer = LogBuffer(logging.DEBUG, 50_000)
    done = threading.Event()

    def task_thread() -> None:
        for i in range(50_000):
            emit(buffer, str(i))
        done.set()

    thread = threading.Thread(target=task_thread)
    thread.start()
    seen = 0
    while seen < 50_000:
        emitted = buffer.emitted()
        records = buffer.as_list()
        assert len(records) >= emitted  # counted before the copy: never more than it holds
        if records:  # a prefix: the last record copied is the one at its index
            assert records[-1]["message"] == str(len(records) - 1)
        seen = len(records)
    thread.join()
    assert done.is_set()


def test_run_task_shows_the_buffer_while_the_task_runs():
    live = LiveLog(logger, interval=0.0, write=Writer())
    seen: list[Any] = []

    def body() -> str:
        logging.getLogger("carrot").info("inside")
        seen.extend((e.row_id, e.attempt, e.buffer.as_list()) for e in live._running)
        return "ok"

    task = Task(body, name="tests.livelog.body")
    outcome = run_task(
        task,
        [],
        {},
        log_level=logging.DEBUG,
        max_log_records=10,
        watch=lambda buffer: live.watching(3, 2, buffer),
    )
    assert outcome.succeeded and outcome.output == "ok"
    assert [(pk, attempt, [r["message"] for r in log]) for pk, attempt, log in seen] == [
        (3, 2, ["inside"])
    ]
    assert live._running == set()  # no longer running: never written again
    assert [r["message"] for r in outcome.log] == ["inside"]


def test_a_task_abandoned_past_its_time_limit_keeps_its_log_so_far(monkeypatch):
    monkeypatch.setattr(pool_module, "ABANDON_GRACE", 0.0)
    release = threading.Event()

    def blocked() -> str:
        logging.getLogger("carrot").info("before blocking")
        release.wait(10)  # blocked outside Python code: the time limit cannot interrupt it
        return "late"

    task = Task(blocked, name="tests.livelog.blocked", time_limit=0.05)
    pool = TaskPool(
        "abandon",
        1,
        log_level=logging.DEBUG,
        max_log_records=10,
        logger=logger,
        on_finished=lambda: None,
    )
    pool.start()
    delivery = Delivery(1, 1, "default", False, b"", "m-1", task.name, None, None, None, {})
    work = Work(delivery, Claim(True, 1, 1), task, [], {}, deadline=time.monotonic() + 0.05)
    try:
        pool.put(work)
        deadline = time.monotonic() + 5
        while (work.buffer is None or not work.buffer.records) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # past its limit
        pool.check_time_limits()
        finished, outcome = pool.finished.get(timeout=5)
    finally:
        release.set()
        pool.stop()
    assert finished is work and not outcome.succeeded
    assert "its thread was abandoned" in outcome.exception
    assert [r["message"] for r in outcome.log] == ["before blocking"]
