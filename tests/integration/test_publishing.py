"""Publishing against the real broker: row first, publish after commit, clear failures."""

import json
import threading
import time
import uuid

import pytest
from django.conf import settings
from django.db import transaction
from django.test import override_settings

from carrot import BrokerUnavailable, PublishError, TaskNotRegistered
from carrot.broker.connection import connect
from carrot.broker.relays import relays
from carrot.broker.topology import declare_queue, queue_arguments
from carrot.conf import get_config
from carrot.exceptions import NotRequeueable, QueueMismatch
from carrot.models import MessageLog
from carrot.publishing.enqueue import enqueue
from tests.harness import django_shell
from tests.testapp.tasks import add, on_other_queue

pytestmark = pytest.mark.django_db(transaction=True)

DOWN = {"default_broker": "amqp://guest:guest@127.0.0.1:1/", "queues": [{"name": "other"}]}


def test_delay_writes_the_row_then_publishes_a_persistent_json_message(broker):
    log = add.delay(2, 3)
    row = MessageLog.objects.get()
    assert row.uuid == log.uuid
    assert (row.status, row.task, row.queue, row.task_args) == (
        "PUBLISHED",
        "tests.testapp.tasks.add",
        "default",
        [2, 3],
    )
    assert row.publish_time is not None
    properties, body = broker.get("default")
    assert properties.message_id == str(log.uuid)
    assert properties.type == "tests.testapp.tasks.add"
    assert properties.content_type == "application/json"
    assert properties.delivery_mode == 2
    assert properties.app_id == "carrot"
    assert json.loads(body) == {"args": [2, 3], "kwargs": {}}


def test_apply_async_routes_to_the_queue_with_the_priority(broker):
    log = on_other_queue.apply_async(args=("k",), priority=7)
    assert (log.queue, log.priority) == ("other", 7)
    properties, _ = broker.get("other")
    assert properties.priority == 7


def test_inside_a_transaction_publishing_waits_for_commit(broker):
    with transaction.atomic():
        log = add.delay(1, 1)
        time.sleep(0.2)
        assert broker.count("default") == 0  # count() flushed the relay: nothing was handed
    assert MessageLog.objects.filter(uuid=log.uuid).exists()
    assert broker.count("default") == 1


def test_a_rolled_back_transaction_publishes_nothing(broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        add.delay(1, 1)
        raise RuntimeError("roll back")
    time.sleep(0.2)
    assert broker.count("default") == 0
    assert not MessageLog.objects.exists()


def test_broker_down_raises_promptly_and_the_row_says_so():
    with override_settings(CARROT=DOWN):
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="connection refused") as info:
            add.delay(1, 2)
        assert time.monotonic() - started < 5
    assert "rabbitmq-server -detached" in str(info.value)
    row = MessageLog.objects.get()
    assert row.status == "FAILED"
    assert row.exception.startswith("Not published: ")
    assert "guest:***@" in row.exception


def test_broker_down_inside_atomic_raises_at_commit_and_keeps_the_row():
    with override_settings(CARROT=DOWN), pytest.raises(BrokerUnavailable), transaction.atomic():
        add.delay(1, 2)
    assert MessageLog.objects.get().status == "FAILED"


def test_delay_hands_over_to_one_relay_per_broker_and_clears_the_outbox(broker):
    from carrot.models import OutboxEntry
    from carrot.models.handover import flush

    logs = [add.delay(1, i) for i in range(50)]
    broker_config = get_config().default_broker
    assert len([r for r in relays.all() if r.broker == broker_config]) == 1
    assert flush(10)
    assert not OutboxEntry.objects.exists()  # every confirm deleted its entry
    assert broker.count("default") == 50
    assert {str(log.uuid) for log in logs} == {
        broker.get("default")[0].message_id for _ in range(50)
    }


def test_unroutable_messages_raise_instead_of_vanishing(broker):
    broker.channel.exchange_declare("carrot-test-unbound", "direct")
    with pytest.raises(PublishError, match="could not route"):
        enqueue(
            "tests.testapp.tasks.add",
            [1, 2],
            {},
            queue="default",
            exchange="carrot-test-unbound",
            routing_key="nowhere",
        )
    assert MessageLog.objects.get().status == "FAILED"


def test_missing_exchange_is_a_publish_error(broker):
    with pytest.raises(PublishError, match="does not exist"):
        enqueue("tests.testapp.tasks.add", [1, 2], {}, queue="default", exchange="no-such-x")


def test_unregistered_task_names_are_refused():
    with pytest.raises(TaskNotRegistered):
        enqueue("os.system", ["echo hi"], {}, queue="default")
    assert not MessageLog.objects.exists()


def test_queues_are_durable_with_priorities_and_a_dead_letter_queue(broker):
    add.delay(1, 1)
    queue = get_config().queue("default")
    args = queue_arguments(queue)
    assert args == {
        "x-max-priority": 10,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "default.dlq",
    }
    # Redeclaring with identical arguments succeeds; different ones are refused (406).
    broker.channel.queue_declare("default", durable=True, arguments=args)
    broker.channel.queue_declare("default.dlq", durable=True)
    with pytest.raises(Exception, match="inequivalent arg"):
        broker.channel.queue_declare("default", durable=False, arguments=args)


def test_a_queue_declared_differently_gives_a_clear_error(broker):
    name = f"legacy-{uuid.uuid4().hex[:8]}"
    broker.channel.queue_declare(name, durable=True, arguments={"x-max-priority": 255})
    with override_settings(CARROT={"default_broker": broker.url, "queues": [{"name": name}]}):
        conn = connect(
            get_config().default_broker, get_config(), heartbeat=None, name="t", doing="test"
        )
        try:
            with pytest.raises(QueueMismatch, match="rabbitmqctl delete_queue"):
                declare_queue(conn.channel(), get_config().queue(name))
        finally:
            conn.close()
    broker.delete(name, f"{name}.dlq")


def test_requeue_publishes_a_failed_task_again_under_the_same_id(broker):
    log = add.delay(1, 2)
    broker.purge("default")
    MessageLog.objects.filter(pk=log.pk).update(
        status="FAILED", exception="ValueError: x", traceback="tb", attempts=1
    )
    log.refresh_from_db()
    again = log.requeue()
    assert (again.status, again.exception, again.traceback) == ("PUBLISHED", "", "")
    assert again.uuid == log.uuid and again.attempts == 1
    properties, _ = broker.get("default")
    assert properties.message_id == str(log.uuid)
    with pytest.raises(NotRequeueable, match="Only failed tasks"):
        again.requeue()


def test_concurrent_requeues_publish_once(broker):
    log = add.delay(1, 2)
    broker.purge("default")
    MessageLog.objects.filter(pk=log.pk).update(status="FAILED")
    results = []

    def attempt():
        try:
            MessageLog.objects.get(pk=log.pk).requeue()
            results.append("ok")
        except NotRequeueable:
            results.append("refused")
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok", "refused", "refused", "refused"]
    time.sleep(0.2)
    assert broker.count("default") == 1


def test_requeue_refuses_rejected_messages_and_unknown_tasks():
    row = MessageLog.objects.create(task="os.system", status="FAILED", exception="x")
    with pytest.raises(NotRequeueable, match="not a registered task"):
        row.requeue()
    row = MessageLog.objects.create(
        task="tests.testapp.tasks.add", status="FAILED", exception="Message rejected: not JSON"
    )
    with pytest.raises(NotRequeueable, match="rejected before it ran"):
        row.requeue()


def test_relays_are_forgotten_in_a_forked_child():
    # A real fork (in a process of its own: forking pytest's threads would warn): the
    # child must not share the parent's relay, its socket or its thread.
    script = (
        "import os\n"
        "from carrot.broker.relays import relays\n"
        "relays._relays['x'] = 'parent-relay'\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if relays.all() == [] else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert relays.all() == ['parent-relay']\n"
        "relays._relays.clear()\n"
        "raise SystemExit(os.waitstatus_to_exitcode(status))\n"
    )
    proc = django_shell(script)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rows_without_a_routing_key_are_requeued_to_their_queue(broker):
    row = MessageLog.objects.create(
        task="tests.testapp.tasks.add", status="FAILED", queue="other", task_args=[1, 2]
    )
    assert row.routing_key == ""
    row.requeue()
    assert broker.count("other") == 1


def test_a_requeue_without_a_confirm_returns_and_stays_in_the_outbox(broker, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from carrot.broker.relay import Relay
    from carrot.models import OutboxEntry
    from carrot.publishing.sweeper import OUTBOX_GRACE, sweep_outbox

    row = MessageLog.objects.create(
        task="tests.testapp.tasks.add", status="FAILED", task_args=[1, 2]
    )
    # The connection breaks before RabbitMQ answers: the message never reaches it.
    monkeypatch.setattr(Relay, "submit", lambda self, items: None)
    with override_settings(CARROT={**settings.CARROT, "publish_timeout": 0.5}):
        row.requeue()  # no exception: the outbox guarantees it
    monkeypatch.undo()
    assert MessageLog.objects.get(pk=row.pk).status == "PUBLISHED"
    assert OutboxEntry.objects.filter(pk=row.pk).exists()
    assert broker.count("default") == 0
    assert sweep_outbox(timezone.now() + OUTBOX_GRACE + timedelta(seconds=1)) == 1
    assert broker.count("default") == 1
    assert not OutboxEntry.objects.exists()


def test_delay_many_publishes_every_call_and_validates_them_first(broker):
    logs = add.delay_many([((i, i), {}) for i in range(20)])
    assert len(logs) == 20 and MessageLog.objects.count() == 20
    assert broker.count("default") == 20
    with pytest.raises(TypeError, match="item 1 must be an"):
        add.delay_many([((1, 1), {}), (1, 2, 3)])
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        add.delay_many([((1, 1), {}), ((object(), 1), {})])
    assert MessageLog.objects.count() == 20  # nothing written for the refused batches


def test_delay_many_maps_every_returned_log_to_its_own_row_across_insert_batches(broker):
    # More calls than one multi-row INSERT takes, so the ids of several batches are mapped.
    logs = add.delay_many([((i, -i), {}) for i in range(1203)])
    args_by_pk = dict(MessageLog.objects.values_list("pk", "task_args"))
    assert len(args_by_pk) == 1203
    assert [args_by_pk[log.pk] for log in logs] == [[i, -i] for i in range(1203)]
    assert not any(log._state.adding for log in logs)
    assert broker.count("default") == 1203
    for _ in range(5):
        properties, body = broker.get("default")
        row = MessageLog.objects.get(uuid=properties.message_id)
        assert json.loads(body)["args"] == row.task_args
