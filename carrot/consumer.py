"""The seed's consumer API, over ``carrot.worker``.

``CARROT['queues'][i]['consumer_class']`` names a subclass of ``Consumer``; it is built as
``Consumer(host, queue, logger, name)`` like in the seed and may override
``get_task_type``, ``get_message_log`` and ``fail``, or add failure callbacks.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils.module_loading import import_string

from carrot.worker.consumer import QueueConsumer, add_failure_callback

__all__ = ["Consumer", "ConsumerSet", "add_failure_callback"]


class Consumer(QueueConsumer):
    """Consume one queue with ``concurrency`` task threads and one connection."""


class ConsumerSet:
    """Start and stop a consumer for one queue with ``concurrency`` task threads."""

    def __init__(
        self,
        host: Any,
        queue: str,
        logger: logging.Logger | None = None,
        concurrency: int = 1,
        name: str = "consumer",
        consumer_class: str | type[QueueConsumer] = "carrot.consumer.Consumer",
    ) -> None:
        cls = import_string(consumer_class) if isinstance(consumer_class, str) else consumer_class
        self.consumer: QueueConsumer = cls(host, queue, logger, name)
        self.consumer.concurrency = concurrency
        self.queue = queue
        self.concurrency = concurrency

    def start_consuming(self) -> None:
        """Start consuming."""
        self.consumer.start_consuming()

    def stop_consuming(self, timeout: float | None = None) -> bool:
        """Stop taking messages and wait for the tasks in flight; return True when stopped."""
        self.consumer.stop_consuming()
        return self.consumer.join(timeout)
