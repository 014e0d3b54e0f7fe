"""The adaptive prefetch with real workers: fast for short tasks, and no short task waits
behind a long one in a worker while another worker could run it."""

from __future__ import annotations

import pytest

from carrot.models import MessageLog
from tests.harness import finished
from tests.testapp.tasks import on_other_queue, sleep_then_record

pytestmark = pytest.mark.django_db(transaction=True)

LONG = 4.0  # seconds the long task runs


def test_short_tasks_never_wait_behind_a_long_one_while_another_worker_is_free(worker_factory):
    """Two workers consume ``other`` (concurrency 1, prefetch left to carrot). A warm-up
    of short tasks grows both prefetch windows, so the worker that takes the long task
    also receives a share of the short ones published right after it. Measured: when
    each short task started, against when the long one started and ended. With a fixed
    large prefetch the long task's worker keeps its share until the long task ends; the
    adaptive one gives it back within a step (about 0.2 s)."""
    workers = [
        worker_factory("--no-scheduler", "--queues", "other").wait_ready(queues=1) for _ in range(2)
    ]
    for log in [on_other_queue.delay(f"warm-{i}") for i in range(300)]:
        finished(log)
    for proc in workers:
        # Both windows grew past the concurrency while the tasks took milliseconds (to
        # about 100 on SQLite; on PostgreSQL each task's commit takes ~15 ms: about 7).
        proc.wait_for_log(r"prefetch of 'other' is now ([3-9]|\d{2,})\b")

    long = sleep_then_record.apply_async(args=("long", LONG), queue="other")
    shorts = [on_other_queue.delay(f"short-{i}") for i in range(60)]

    long = finished(long, timeout=30)
    shorts = [finished(log) for log in shorts]
    assert long.status == "COMPLETED"
    assert {log.status for log in shorts} == {"COMPLETED"}
    # The long task runs for LONG seconds; every short one published after it ran
    # meanwhile, most of them on the other worker, none waiting out the long task.
    waits = sorted((log.start_time - log.publish_time).total_seconds() for log in shorts)
    late = [log for log in shorts if log.start_time >= long.completion_time]
    assert not late, f"{len(late)} short task(s) waited for the long one; waits {waits}"
    assert waits[-1] < LONG / 2, f"a short task waited {waits[-1]:.2f}s; waits {waits}"
    others = [log for log in shorts if log.worker != long.worker]
    assert len(others) >= len(shorts) // 2
    assert MessageLog.objects.filter(status=MessageLog.IN_PROGRESS).count() == 0
