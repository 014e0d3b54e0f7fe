"""WorkerHeartbeat: the workers that are alive, and what they consume."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone


class WorkerHeartbeat(models.Model):
    """A running worker process, refreshed every few seconds while it lives.

    The worker uses it to tell a task that is still running elsewhere from one whose
    worker died; ``carrot_status``, ``carrot_health`` and the monitor show it.
    """

    # A worker whose row is older than this is taken for dead.
    LEASE = timedelta(seconds=30)

    name = models.CharField(max_length=255, unique=True, help_text="host:pid:instance")
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list, blank=True)
    concurrency = models.JSONField(
        default=dict, blank=True, help_text="task threads per consumed queue"
    )
    scheduler = models.BooleanField(default=False)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name
