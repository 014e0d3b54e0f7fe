"""RabbitMQ through pika: the only package that imports pika.

Everything above this module sees carrot's own types (``Delivery``) and errors
(``BrokerUnavailable``, ``PublishError``, ``QueueMismatch``); pika exceptions are translated
here. pika connections belong to one thread: publishers keep one connection per thread,
and each consumer owns its connection and is handed acks through
``add_callback_threadsafe``.
"""

from carrot.broker.connection import (
    MAX_DELAY_BUCKET,
    START_HINT,
    check_connection,
    connect,
    connection_parameters,
    declare_delay_queue,
    declare_queue,
    delay_bucket,
    delay_queue_name,
    purge_queue,
    queue_arguments,
    queue_depths,
    unavailable,
)
from carrot.broker.consuming import ConsumerChannel, Delivery
from carrot.broker.publishing import Publisher, publisher

__all__ = [
    "MAX_DELAY_BUCKET",
    "START_HINT",
    "ConsumerChannel",
    "Delivery",
    "Publisher",
    "check_connection",
    "connect",
    "connection_parameters",
    "declare_delay_queue",
    "declare_queue",
    "delay_bucket",
    "delay_queue_name",
    "publisher",
    "purge_queue",
    "queue_arguments",
    "queue_depths",
    "unavailable",
]
