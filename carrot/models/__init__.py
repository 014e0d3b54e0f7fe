"""The models: MessageLog (one task call), ScheduledTask, OutboxEntry, WorkerHeartbeat,
TaskRollup and RollupMark (the statistics).

- ``lifecycle``: every MessageLog transition, defined once;
- ``querysets``: the transitions as ORM calls and as the worker's batched SQL;
- ``outbox`` and ``handover``: the one publishing path, from a committed row to RabbitMQ.
"""

from carrot.models.heartbeat import WorkerHeartbeat
from carrot.models.messagelog import CallArguments, MessageLog
from carrot.models.outbox import OutboxEntry
from carrot.models.rollups import RollupMark, TaskRollup
from carrot.models.schedule import ScheduledTask

__all__ = [
    "CallArguments",
    "MessageLog",
    "OutboxEntry",
    "RollupMark",
    "ScheduledTask",
    "TaskRollup",
    "WorkerHeartbeat",
]
