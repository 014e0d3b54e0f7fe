"""A consumer's window on the real broker: RabbitMQ applies a new prefetch only to a new
consumer, so ``set_prefetch`` consumes anew; 0 pauses, also across a reconnect."""

from __future__ import annotations

import time

import pytest

from carrot.broker.consuming import ConsumerChannel, Delivery, Settle
from carrot.conf import get_config

pytestmark = pytest.mark.django_db


@pytest.fixture
def consumer(broker):
    config = get_config()
    received: list[Delivery] = []
    channel = ConsumerChannel(
        config.queue("other"), config, received.append, prefetch=2, name="test-consuming"
    )
    channel.open()
    channel.received = received  # type: ignore[attr-defined]
    yield channel
    channel.close()


def pump(channel: ConsumerChannel, seconds: float = 0.5) -> list[Delivery]:
    """Run the channel's I/O on this thread for a while; return what it received."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        channel.process(0.05)
    return channel.received  # type: ignore[attr-defined,no-any-return]


def fill(broker, n: int) -> None:
    for i in range(n):
        broker.publish("other", f'{{"args": [{i}], "kwargs": {{}}}}'.encode())


def test_a_larger_prefetch_reaches_a_consumer_that_is_already_running(consumer, broker):
    fill(broker, 30)
    assert len(pump(consumer)) == 2  # the window it was opened with
    consumer.set_prefetch(10)
    assert len(pump(consumer)) == 12  # the old consumer's 2, unsettled, plus a new window
    consumer.settle_many([(d, Settle.ACK) for d in consumer.received])  # type: ignore[attr-defined]
    pump(consumer)
    assert broker.count("other") == 30 - 12 - 10


def test_zero_pauses_until_a_window_opens_again(consumer, broker):
    fill(broker, 10)
    first = list(pump(consumer))
    assert len(first) == 2
    consumer.set_prefetch(0)
    consumer.settle_many([(d, Settle.ACK) for d in first])
    assert len(pump(consumer)) == 2  # paused: acking frees nothing
    consumer.set_prefetch(3)
    assert len(pump(consumer)) == 5


def test_a_paused_consumer_stays_paused_after_a_reconnect(consumer, broker):
    fill(broker, 10)
    assert len(pump(consumer)) == 2
    consumer.set_prefetch(0)
    pump(consumer, 0.2)
    consumer.close()  # the connection drops: the broker requeues the two
    consumer.open()
    assert len(pump(consumer)) == 2  # nothing new while paused
    consumer.set_prefetch(4)
    assert len(pump(consumer)) == 6
