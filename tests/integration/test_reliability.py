"""Faults an adversarial review reproduced (issue 12), each through real workers.

Every test here failed before its fix; see the docstring of each for what it was.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import struct
import threading
import time
import uuid
from io import StringIO

import pika
import pytest
from django.core.management import call_command
from django.db import connection

from carrot.exceptions import BrokerError
from carrot.models import MessageLog
from tests.harness import finished, wait_until
from tests.testapp.tasks import add, on_other_queue, record

pytestmark = pytest.mark.django_db(transaction=True)


def body(*args, **kwargs) -> bytes:
    return json.dumps({"args": list(args), "kwargs": kwargs}).encode()


@pytest.fixture
def hand_made_other(broker):
    """Queue ``other`` made by hand with arguments carrot does not declare, as a process
    that starts now finds it (its relay has declared nothing yet)."""
    from carrot.broker.relays import relays

    relays.stop_all(1)
    broker.delete("other", "other.dlq")
    broker.channel.queue_declare("other", durable=True, arguments={"x-max-priority": 255})
    yield
    broker.delete("other", "other.dlq")
    relays.stop_all(1)  # forget that 'other' was refused


def test_a_queue_that_cannot_be_declared_stops_no_other_queue(broker, hand_made_other):
    """Before: the message for 'other' stayed at the head of the relay's pending list; every
    reconnect declared it, failed and closed the connection, and delay() to 'default'
    raised until the process restarted (59 of 60 failed)."""
    with contextlib.suppress(BrokerError):
        on_other_queue.apply_async(args=("x",))
    for i in range(60):
        add.delay(i, i)  # none of these may raise
    assert broker.count("default") == 60
    bad = MessageLog.objects.get(queue="other")
    wait_until(lambda: MessageLog.objects.get(pk=bad.pk).status == "FAILED", 10)
    reason = MessageLog.objects.get(pk=bad.pk).exception
    assert reason.startswith("Not published: ") and "other arguments" in reason
    assert "rabbitmqctl delete_queue other" in reason


def test_the_health_check_names_a_queue_that_cannot_be_declared(hand_made_other):
    out, err = StringIO(), StringIO()
    with pytest.raises(SystemExit) as exit_:
        call_command("carrot_health", stdout=out, stderr=err)
    assert exit_.value.code == 1
    assert "queue 'other'" in err.getvalue() and "rabbitmqctl delete_queue other" in err.getvalue()


def test_the_relay_names_a_queue_that_cannot_be_declared_when_it_connects(hand_made_other, caplog):
    """The refusal is in the log as soon as the relay connects, before any message for the
    queue, and a delay() to it fails at once with the reason."""
    from carrot.broker.relays import relays

    relays.stop_all(1)
    add.delay(1, 1)  # connects the relay; 'other' is declared at once, and refused
    assert any("queue 'other' exists" in r.getMessage() for r in caplog.records)
    with pytest.raises(BrokerError, match="other arguments"):
        on_other_queue.delay("x")
    row = MessageLog.objects.get(queue="other")
    assert row.status == "FAILED" and row.exception.startswith("Not published: ")


class PoisonProperties(pika.BasicProperties):
    """Encodes a header pika's decoder chokes on: a timestamp past the year 9999."""

    def encode(self):
        encoded = b"".join(super().encode())
        good = b"T" + struct.pack(">Q", 946684800)  # 2000-01-01, as encoded for the header
        return [encoded.replace(good, b"T" + struct.pack(">Q", 2**63))]


def test_a_message_pika_cannot_decode_is_dead_lettered_and_the_queue_keeps_flowing(worker, broker):
    """Before: pika raised while decoding the message's properties; the consumer's
    connection dropped, the message went back to the head of the queue, and every worker
    reconnected to the same message: the queue stopped."""
    message_id = str(uuid.uuid4())
    properties = PoisonProperties(
        content_type="application/json",
        message_id=message_id,
        type="tests.testapp.tasks.add",
        delivery_mode=2,
        headers={"when": dt.datetime(2000, 1, 1, tzinfo=dt.UTC)},
    )
    broker.channel.basic_publish("", "default", body(1, 2), properties)
    control = add.delay(2, 3)
    assert finished(control).status == "COMPLETED"
    rejected = wait_until(
        lambda: MessageLog.objects.filter(uuid=message_id, status="FAILED").first(), 20
    )
    assert rejected.status == "FAILED"
    assert rejected.exception.startswith("Message rejected: ")
    assert "cannot be decoded" in rejected.exception
    wait_until(lambda: broker.count("default.dlq") == 1, 10)
    assert "reconnecting" not in worker.log()
    assert worker.proc.poll() is None


def test_a_raising_consumer_hook_dead_letters_only_its_message(worker_factory, broker):
    """Before: the exception escaped the recorder's step; the deliveries it had taken were
    never run or settled, so the prefetch slot leaked and the queue stalled."""
    proc = worker_factory(
        "--no-scheduler", CARROT_TEST_OTHER_CONSUMER="tests.testapp.consumers.RaisingConsumer"
    ).wait_ready()
    bad_id = broker.publish("other", body("explode"), type="tests.testapp.tasks.on_other_queue")
    logs = [on_other_queue.delay(f"after-{i}") for i in range(3)]
    for log in logs:
        assert finished(log).status == "COMPLETED"
    row = wait_until(lambda: MessageLog.objects.filter(uuid=bad_id).first(), 10)
    assert row.status == "FAILED" and "get_task_type raised" in row.exception
    assert broker.count("other.dlq") == 1
    assert not MessageLog.objects.in_progress().exists()
    proc.signal(signal.SIGTERM)
    assert proc.wait(30) == 0


@pytest.mark.slow  # ~8 s; keeps make test under 15 minutes
def test_sigterm_under_a_steady_stream_of_messages_exits_promptly(worker_factory, broker):
    """Before: a delivery that reached the worker after it stopped taking work was counted
    in flight and never released; SIGTERM then waited out the whole shutdown_timeout and
    exited 1 (2 of 3 trials)."""
    for trial in range(3):
        proc = worker_factory("--no-scheduler").wait_ready()
        stop = threading.Event()

        def publish(trial=trial, stop=stop):
            n = 0
            while not stop.is_set():
                record.delay(f"stream-{trial}-{n}")
                n += 1
                time.sleep(0.05)
            connection.close()

        publisher = threading.Thread(target=publish)
        publisher.start()
        try:
            time.sleep(1.5)
            proc.signal(signal.SIGTERM)
            code = proc.wait(30)
        finally:
            stop.set()
            publisher.join()
        assert code == 0, proc.log()[-3000:]
        assert "still running" not in proc.log()
