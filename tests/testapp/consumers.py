"""A seed-style custom consumer with a failure callback."""

import os

from carrot.consumer import Consumer


def record_failure(log, exception):
    from tests.testapp.models import Effect

    Effect.objects.create(key=f"failure-callback:{log.uuid}:{exception}", pid=os.getpid())


class RecordingConsumer(Consumer):
    def __init__(
        self, host, queue, logger, name, durable=True, queue_arguments=None, exchange_arguments=None
    ):
        super().__init__(host, queue, logger, name, durable, queue_arguments, exchange_arguments)
        self.add_failure_callback(record_failure)


class RaisingConsumer(Consumer):
    """A seed-style ``get_task_type`` override that raises on a malformed body."""

    def get_task_type(self, properties, body):
        if b"explode" in body:
            raise ValueError("this body makes the hook raise")
        return super().get_task_type(properties, body)
