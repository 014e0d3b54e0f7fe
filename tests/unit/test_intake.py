"""The worker's intake, step by step, with a stub channel instead of RabbitMQ (the database
is real): the registry is the only gate, and every delivery a step takes ends settled."""

from __future__ import annotations

import importlib
import json
import logging
import sys
import threading
import uuid

import pytest
from django.utils import module_loading

from carrot.broker.consuming import Delivery, Settle
from carrot.models import MessageLog
from carrot.worker.consumer import QueueConsumer
from carrot.worker.intake import Intake
from carrot.worker.pool import TaskPool
from tests.harness import wait_until
from tests.testapp.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)


def body(*args, **kwargs) -> bytes:
    return json.dumps({"args": list(args), "kwargs": kwargs}).encode()


class StubChannel:
    """Stands in for ConsumerChannel to test the gate in-process (no broker involved)."""

    generation = 1

    def __init__(self):
        self.acked, self.requeued, self.dead = [], [], []

    def ack(self, delivery):
        self.acked.append(delivery)

    def requeue(self, delivery):
        self.requeued.append(delivery)

    def dead_letter(self, delivery):
        self.dead.append(delivery)

    def settle_many(self, items):
        for delivery, action in items:
            {Settle.ACK: self.ack, Settle.REQUEUE: self.requeue, Settle.REJECT: self.dead_letter}[
                action
            ](delivery)


def make_intake(consumer=None, threads=1):
    """An intake whose step takes up to ``threads`` deliveries (its prefetch)."""
    consumer = consumer or QueueConsumer(None, "default")
    logger = logging.getLogger("tests.intake")
    pool = TaskPool(
        "intake", threads, log_level=10, max_log_records=10, logger=logger, on_finished=lambda: None
    )
    return Intake(
        hooks=consumer,
        channel=StubChannel(),
        queue=consumer.queue,
        config=consumer.config,
        recorder=consumer.recorder,
        pool=pool,
        stop=threading.Event(),
        logger=logger,
    )


def step(deliveries, intake=None):
    """Run one live intake step on deliveries."""
    intake = intake or make_intake()
    for delivery in deliveries:
        intake.deliver(delivery)
    intake.step()
    return intake


def delivery_of(log, *, redelivered=False, tag=1, raw=None):
    return Delivery(
        tag=tag,
        generation=1,
        queue="default",
        redelivered=redelivered,
        body=raw if raw is not None else body(*log.task_args),
        message_id=str(log.uuid),
        type=log.task,
        content_type="application/json",
        app_id="carrot",
        priority=0,
        headers={},
    )


def published(*args):
    return MessageLog.objects.create(task="tests.testapp.tasks.record", task_args=list(args))


@pytest.mark.parametrize(
    "name", ["antigravity.fly", "os.system", "builtins.eval", "django.core.management.call_command"]
)
def test_unknown_task_names_import_nothing(name, monkeypatch):
    sys.modules.pop("antigravity", None)
    imported = []
    real_import = importlib.import_module

    def spy(n, *a):
        imported.append(n)
        return real_import(n, *a)

    # Both entry points: Django's import_string calls its own reference to import_module.
    monkeypatch.setattr(module_loading, "import_module", spy)
    monkeypatch.setattr(importlib, "import_module", spy)
    delivery = Delivery(
        tag=1,
        generation=1,
        queue="default",
        redelivered=False,
        body=body("x"),
        message_id=str(uuid.uuid4()),
        type=name,
        content_type="application/json",
        app_id="carrot",
        priority=0,
        headers={},
    )
    intake = step([delivery])
    assert intake.channel.dead == [delivery]
    assert imported == []
    assert "antigravity" not in sys.modules
    row = MessageLog.objects.get(uuid=delivery.message_id)
    assert row.status == "FAILED" and "not a registered task" in row.exception


# ------------------------------------------------------------------ every delivery settled


def test_an_unexpected_error_in_a_step_returns_every_delivery_it_held(monkeypatch):
    logs = [published(f"held-{n}") for n in range(3)]
    deliveries = [delivery_of(log, tag=n + 1) for n, log in enumerate(logs)]
    intake = make_intake(threads=3)

    def broken(*args):
        raise RuntimeError("a bug between the claim and the dispatch")

    monkeypatch.setattr(intake, "_dispatch", broken)
    step(deliveries, intake)
    assert intake.channel.requeued == deliveries
    assert intake.inflight == 0


def test_finished_tasks_a_failed_step_held_go_back_to_the_queue(monkeypatch):
    log = published("finished")
    intake = step([delivery_of(log)])
    intake.pool.start()
    wait_until(lambda: not intake.pool.finished.empty(), 10)

    def broken(*args):
        raise RuntimeError("a bug while turning outcomes into records")

    monkeypatch.setattr("carrot.worker.intake.record_for", broken)
    intake.step()
    assert intake.channel.requeued == [delivery_of(log)]
    assert (intake.inflight, intake._busy) == (0, 0)


class RaisingHooks(QueueConsumer):
    def get_task_type(self, properties, body):
        if b"explode" in body:
            raise ValueError("malformed")
        return super().get_task_type(properties, body)


def test_a_raising_hook_dead_letters_only_the_message_it_was_called_for():
    good, bad = published("good"), published("explode")
    intake = make_intake(RaisingHooks(None, "default"), threads=2)
    step([delivery_of(good, tag=1), delivery_of(bad, tag=2)], intake)
    assert intake.channel.dead == [delivery_of(bad, tag=2)]
    assert intake._busy == 1  # the good one was claimed and handed to a task thread
    bad.refresh_from_db()
    assert bad.status == "FAILED" and "get_task_type raised" in bad.exception


# ------------------------------------------------------------------ copies of one message


def test_a_fresh_and_a_redelivered_copy_in_one_batch_run_once():
    log = published("copies")
    fresh, again = delivery_of(log, tag=1), delivery_of(log, tag=2, redelivered=True)
    intake = step([fresh, again], make_intake(threads=2))
    assert intake._busy == 1  # one copy runs, the other waits for it
    intake.pool.start()
    wait_until(lambda: not intake.pool.finished.empty(), 10)
    intake.step()
    assert sorted(d.tag for d in intake.channel.acked) == [1, 2]
    log.refresh_from_db()
    assert (log.status, log.attempts) == ("COMPLETED", 1)
    assert Effect.objects.filter(key="copies").count() == 1


def test_a_django_task_given_up_on_finishes_with_task_finished():
    from carrot.backends import compat

    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append((task_result.id, task_result.status))

    compat.task_finished.connect(receiver)
    try:
        log = MessageLog.objects.create(
            task="tests.djangoapp.tasks.add",
            task_args=[1, 2],
            status="IN_PROGRESS",
            attempts=4,
            interruptions=3,  # CARROT_TEST_MAX_INTERRUPTIONS
            worker="gone:1:x",
        )
        intake = step([delivery_of(log, redelivered=True)])
        assert intake.channel.acked == [delivery_of(log, redelivered=True)]
    finally:
        compat.task_finished.disconnect(receiver)
    log.refresh_from_db()
    assert log.status == "FAILED" and log.exception_type == "carrot.exceptions.TaskInterrupted"
    assert seen == [(str(log.uuid), compat.TaskResultStatus.FAILED)]
