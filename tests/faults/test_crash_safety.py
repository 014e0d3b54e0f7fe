"""A process killed between committing a publish and publishing it never strands a task,
whichever way the task was sent: the row and its outbox entry were committed together,
and a worker's outbox sweeper publishes the entry once it is older than the grace period.

Each test runs the entry point in a process of its own whose relay never publishes (as if
it died first), kills that process with SIGKILL, then starts a worker and waits.
"""

from __future__ import annotations

import signal
import textwrap
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from carrot.models import MessageLog, OutboxEntry, ScheduledTask
from carrot.publishing.sweeper import OUTBOX_GRACE
from tests.harness import assert_settled, django_shell, finished, queue_stats, wait_until
from tests.testapp.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)

NEVER_PUBLISH = (
    "import os, signal\n"
    "from carrot.broker.relay import Relay\n"
    "Relay.submit = lambda self, items: None  # dies before its relay publishes\n"
)


def killed_after(code: str) -> None:
    """Run ``code`` in a new process whose relay publishes nothing, then SIGKILL it."""
    script = NEVER_PUBLISH + textwrap.dedent(code) + "\nos.kill(os.getpid(), signal.SIGKILL)\n"
    proc = django_shell(script, CARROT_TEST_PUBLISH_TIMEOUT="1")
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr


def stranded(keys: list[str]) -> list[MessageLog]:
    """The rows of ``keys``: committed, waiting in the outbox, not in RabbitMQ."""
    rows = [MessageLog.objects.get(task_args__0=key) for key in keys]
    assert [r.status for r in rows] == ["PUBLISHED"] * len(rows)
    assert OutboxEntry.objects.filter(message__in=rows).count() == len(rows)
    assert queue_stats("default", vhost=settings.TEST_VHOST)["ready"] == 0
    return rows


def recovered(rows: list[MessageLog], worker_factory, runs: int = 1) -> None:
    """Past the grace period, a worker's sweeper publishes them; each runs once."""
    OutboxEntry.objects.update(
        created_at=timezone.now() - OUTBOX_GRACE - timedelta(seconds=1), lease_until=None
    )
    worker_factory("--no-scheduler").wait_ready()
    for row in rows:
        assert finished(row, 40).status == "COMPLETED"
    wait_until(lambda: not OutboxEntry.objects.exists(), 10, message="the confirms")
    assert_settled([r.uuid for r in rows], duplicates_allowed=(runs - 1) * len(rows))


def test_delay(worker_factory):
    killed_after("from tests.testapp.tasks import record\nrecord.delay('delay')")
    recovered(stranded(["delay"]), worker_factory)


@pytest.mark.slow  # ~8 s each; make test keeps delay and requeue
def test_delay_many(worker_factory):
    killed_after(
        "from tests.testapp.tasks import record\n"
        "record.delay_many([(('many-1',), {}), (('many-2',), {})])"
    )
    recovered(stranded(["many-1", "many-2"]), worker_factory)


@pytest.mark.slow  # ~8 s each; make test keeps delay and requeue
def test_apply_async_with_a_countdown(worker_factory):
    killed_after(
        "from tests.testapp.tasks import record\n"
        "record.apply_async(args=('countdown',), countdown=1)"
    )
    recovered(stranded(["countdown"]), worker_factory)


@pytest.mark.slow  # ~8 s each; make test keeps delay and requeue
def test_a_custom_exchange(worker_factory, broker):
    broker.channel.exchange_declare("carrot-crash-x", "direct")
    broker.channel.queue_bind("default", "carrot-crash-x", "to-default")
    killed_after(
        "from carrot.utilities import publish_message\n"
        "publish_message('tests.testapp.tasks.record', 'exchange', exchange='carrot-crash-x',"
        " routing_key='to-default')"
    )
    recovered(stranded(["exchange"]), worker_factory)


@pytest.mark.slow  # ~8 s; keeps make test under 15 minutes
def test_a_requeue(worker_factory):
    row = MessageLog.objects.create(
        task="tests.testapp.tasks.record", status="FAILED", task_args=["requeue"]
    )
    killed_after(
        f"from carrot.models import MessageLog\nMessageLog.objects.get(pk={row.pk}).requeue()"
    )
    recovered(stranded(["requeue"]), worker_factory)


def schedule(key: str, due: bool = True) -> ScheduledTask:
    return ScheduledTask.objects.create(
        task_name=f"crash {key}",
        task="tests.testapp.tasks.record",
        interval_type="hours",
        interval_count=1,
        task_args=[key],
        next_run_at=timezone.now() - timedelta(seconds=1) if due else None,
    )


@pytest.mark.slow  # ~8 s each; make test keeps delay and requeue
def test_a_scheduled_tick(worker_factory):
    schedule("tick")
    killed_after(
        "from datetime import UTC, datetime\n"
        "from carrot.scheduling.scheduler import Scheduler\n"
        "Scheduler().publish_due(datetime.now(tz=UTC))"
    )
    recovered(stranded(["tick"]), worker_factory)
    assert ScheduledTask.objects.get().next_run_at > timezone.now()  # the tick was claimed


@pytest.mark.slow  # ~8 s each; make test keeps delay and requeue
def test_run_now(worker_factory):
    row = schedule("run-now", due=False)
    killed_after(
        "from carrot.models import ScheduledTask\n"
        "from carrot.scheduling.edits import run_now\n"
        f"run_now(ScheduledTask.objects.get(pk={row.pk}))"
    )
    recovered(stranded(["run-now"]), worker_factory)


@pytest.mark.slow  # ~8 s each; make test keeps delay and requeue
def test_a_worker_retry(worker_factory, broker):
    # A worker commits a failed attempt as a retry (row and outbox entry) and acks the
    # delivery, then dies before its relay publishes the retry.
    from tests.testapp.tasks import flaky

    log = flaky.delay("retry", 1)
    killed_after(
        f"""
        import time
        from carrot.models import MessageLog, OutboxEntry
        from carrot.worker.process import Worker
        worker = Worker(queues=["default"], scheduler=False)
        worker.start()
        rows = MessageLog.objects.filter(pk={log.pk}, status="PUBLISHED", attempts=1)
        deadline = time.monotonic() + 30
        while not (rows.exists() and OutboxEntry.objects.filter(pk={log.pk}).exists()):
            assert time.monotonic() < deadline, "the retry was not committed"
            time.sleep(0.05)
        time.sleep(0.5)  # the delivery's ack goes out
        """
    )
    (row,) = stranded(["retry"])
    assert row.eta is not None and "attempt 1 failed" in row.exception
    recovered([row], worker_factory, runs=2)
    assert MessageLog.objects.get(pk=row.pk).attempts == 2
    assert Effect.objects.filter(key="retry").count() == 2  # the failed run and the good one


@pytest.mark.slow  # ~8 s each; make test keeps delay and requeue
def test_a_sweeper(worker_factory):
    killed_after("from tests.testapp.tasks import record\nrecord.delay('swept')")
    OutboxEntry.objects.update(created_at=timezone.now() - OUTBOX_GRACE - timedelta(seconds=1))
    # A second process's sweeper leases the entry, then dies before publishing it.
    killed_after("from carrot.publishing.sweeper import sweep_outbox\nassert sweep_outbox() == 1")
    (row,) = stranded(["swept"])
    assert OutboxEntry.objects.get().lease_until > timezone.now()
    recovered([row], worker_factory)  # once the lease has run out
