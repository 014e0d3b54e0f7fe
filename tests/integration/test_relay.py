"""The relay on its own, against the real broker: many messages in flight, refusals that
stay with the messages that cause them, and a lost connection that loses nothing."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.conf import settings

from carrot.broker.outgoing import Outgoing, Receipt
from carrot.broker.relay import Relay
from carrot.conf import QueueConfig, get_config, parse_broker
from carrot.exceptions import PublishError
from tests.harness import rabbitmqctl, wait_until

BODY = b'{"args": [1, 2], "kwargs": {}}'


class Sink:
    """Records what the relay says about each message (its ref)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok: list[object] = []
        self.bad: dict[object, str] = {}

    def confirmed(self, items):
        with self.lock:
            self.ok.extend(i.ref for i in items)

    def refused(self, items):
        with self.lock:
            self.bad.update((i.ref, reason) for i, reason in items)


@pytest.fixture
def relay():
    config = get_config()
    relay = Relay(config.default_broker, config)
    yield relay
    relay.stop(2)


def message(ref, sink, queue=None, **options):
    return Outgoing(
        message_id=str(uuid.uuid4()),
        task="tests.testapp.tasks.add",
        body=BODY,
        priority=0,
        queue=queue or get_config().queue("default"),
        ref=ref,
        sink=sink,
        **options,
    )


def test_many_messages_in_flight_are_each_confirmed_once(relay, broker):
    sink = Sink()
    relay.submit([message(n, sink) for n in range(300)])
    assert relay.flush(20)
    assert sorted(sink.ok) == list(range(300)) and not sink.bad
    assert broker.count("default") == 300


def test_an_unroutable_message_is_refused_and_the_others_are_published(relay, broker):
    broker.channel.exchange_declare("carrot-test-unbound", "direct")
    sink = Sink()
    items = [message(n, sink) for n in range(10)]
    items.insert(5, message("lost", sink, exchange="carrot-test-unbound", routing_key="nowhere"))
    relay.submit(items)
    assert relay.flush(20)
    assert sorted(sink.ok) == list(range(10))
    assert "could not route" in sink.bad["lost"]
    assert broker.count("default") == 10


def test_a_missing_exchange_refuses_only_its_messages(relay, broker):
    sink = Sink()
    relay.submit([message(1, sink), message("x", sink, exchange="no-such-x"), message(2, sink)])
    assert relay.flush(20)
    assert sorted(sink.ok) == [1, 2]
    assert "the exchange 'no-such-x' does not exist" in sink.bad["x"]
    relay.submit([message(3, sink)])  # the relay goes on publishing
    assert relay.flush(20) and 3 in sink.ok
    with pytest.raises(PublishError, match="does not exist"):
        relay.ensure_ready(5, (message("y", sink, exchange="no-such-x").route,))


def test_a_queue_declared_with_other_arguments_refuses_only_its_messages(relay, broker):
    name = f"legacy-{uuid.uuid4().hex[:8]}"
    broker.channel.queue_declare(name, durable=True, arguments={"x-max-priority": 255})
    legacy = QueueConfig(name=name, broker=get_config().default_broker)
    sink = Sink()
    try:
        relay.submit([message(1, sink), message("legacy", sink, queue=legacy), message(2, sink)])
        assert relay.flush(20)
        assert sorted(sink.ok) == [1, 2]
        assert "other arguments than carrot declares" in sink.bad["legacy"]
        assert f"rabbitmqctl delete_queue {name}" in sink.bad["legacy"]
        assert relay.is_ready  # the connection stayed up for everyone else
    finally:
        broker.delete(name)


def test_receipts_tell_a_waiting_caller(relay, broker):
    broker.channel.exchange_declare("carrot-test-unbound", "direct")
    good, bad = Receipt(), Receipt()
    relay.submit(
        [
            message(1, None, receipt=good),
            message(2, None, receipt=bad, exchange="carrot-test-unbound", routing_key="x"),
        ]
    )
    assert good.wait(10) and good.refused is None
    assert bad.wait(10) and "could not route" in (bad.refused or "")


def test_messages_in_flight_when_the_connection_drops_are_published_again(relay, broker):
    sink = Sink()
    relay.submit([message(n, sink) for n in range(200)])
    rabbitmqctl("close_all_connections", "-p", settings.TEST_VHOST, "carrot test: drop them")
    relay.submit([message(n, sink) for n in range(200, 400)])
    assert relay.flush(30)
    assert sorted(set(sink.ok)) == list(range(400)) and not sink.bad
    broker.close()  # its connection was closed too
    # A message whose confirm was lost may be there twice; a worker runs it once.
    assert broker.count("default") >= 400


@pytest.fixture
def limited_user(broker):
    """A user who may not publish to the exchange ``carrot-forbidden``."""
    user = f"carrot-limited-{uuid.uuid4().hex[:6]}"
    vhost = settings.TEST_VHOST
    rabbitmqctl("add_user", user, "secret")
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", "^(?!carrot-forbidden).*", ".*")
    broker.channel.exchange_declare("carrot-forbidden", "direct")
    broker.channel.queue_bind("default", "carrot-forbidden", "to-default")
    yield parse_broker(f"amqp://{user}:secret@127.0.0.1:5672/{vhost}")
    rabbitmqctl("delete_user", user, check=False)


def test_a_message_the_broker_refuses_while_in_flight_is_found_and_refused(limited_user, broker):
    # Publishing to an exchange the user may not write to closes the channel, with many
    # other messages in flight: they are published again, one at a time, until the one
    # that closes the channel again is found and refused.
    config = get_config()
    relay = Relay(limited_user, config)
    queue = QueueConfig(name="default", broker=limited_user)
    sink = Sink()
    try:
        items = [message(n, sink, queue=queue) for n in range(50)]
        items.insert(
            25,
            message(
                "forbidden",
                sink,
                queue=queue,
                exchange="carrot-forbidden",
                routing_key="to-default",
            ),
        )
        relay.submit(items)
        assert relay.flush(30)
        assert sorted(set(sink.ok)) == list(range(50))
        assert "ACCESS_REFUSED" in sink.bad["forbidden"] or "403" in sink.bad["forbidden"]
        relay.submit([message("after", sink, queue=queue)])
        wait_until(lambda: "after" in sink.ok, 10)
    finally:
        relay.stop(2)
