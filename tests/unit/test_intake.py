"""The registry is the only gate: a message naming anything else imports nothing, runs
nothing, and is dead-lettered and recorded. Through the worker's live intake step, with a
stub channel (no broker)."""

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


def step(deliveries):
    """Run the worker's live intake step on deliveries, with a stub channel."""
    consumer = QueueConsumer(None, "default")
    logger = logging.getLogger("tests.gate")
    pool = TaskPool(
        "gate", 1, log_level=10, max_log_records=10, logger=logger, on_finished=lambda: None
    )
    intake = Intake(
        hooks=consumer,
        channel=StubChannel(),
        queue=consumer.queue,
        config=consumer.config,
        recorder=consumer.recorder,
        pool=pool,
        stop=threading.Event(),
        logger=logger,
    )
    for delivery in deliveries:
        intake.deliver(delivery)
    intake._step()
    intake._flush_settlements()
    return intake


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
