"""Built-in tasks. ``cleanup`` runs hourly unless CARROT['completed_retention'] is None."""

from __future__ import annotations

import logging

from django.utils import timezone

from carrot.conf import get_config
from carrot.models import MessageLog
from carrot.tasks import task

logger = logging.getLogger("carrot")

MAX_BATCHES_PER_RUN = 100


@task
def cleanup() -> int:
    """Delete COMPLETED MessageLogs older than CARROT['completed_retention'], in batches."""
    config = get_config()
    retention = config.completed_retention
    if retention is None:
        logger.info("CARROT['completed_retention'] is None: keeping completed tasks")
        return 0
    cutoff = timezone.now() - retention
    batch = config.scheduler.cleanup_batch_size
    deleted = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        ids = list(
            MessageLog.objects.filter(status=MessageLog.COMPLETED, completion_time__lt=cutoff)
            .order_by("id")
            .values_list("id", flat=True)[:batch]
        )
        if not ids:
            break
        MessageLog.objects.filter(id__in=ids).delete()
        deleted += len(ids)
    logger.info("Deleted %d completed tasks older than %s", deleted, retention)
    return deleted
