"""TaskRollup: finished tasks summed per task and per minute or hour, for the statistics.

The statistics page and the overview's chart read these instead of MessageLog, so they
cost the same at a thousand rows and at millions (and outlive ``completed_retention``).
``carrot.models.statistics`` writes them, exactly once per minute of history, guarded by
the ``RollupMark`` it moves forward in the same transaction.
"""

from __future__ import annotations

from django.db import models


class TaskRollup(models.Model):
    """The tasks of one name that finished within one minute or one hour."""

    MINUTE = 60
    HOUR = 3600

    task = models.CharField(max_length=255)
    period = models.PositiveIntegerField(help_text="60 (a minute) or 3600 (an hour)")
    start = models.DateTimeField(help_text="when the period starts")
    completed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    runtime_total = models.FloatField(default=0.0, help_text="seconds, over all runs")
    runtime_max = models.FloatField(default=0.0)
    histogram = models.JSONField(default=list, blank=True, help_text="runs per runtime bucket")
    last_failure = models.UUIDField(null=True, blank=True)
    last_failure_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["period", "start", "task"], name="carrot_rollup_key")
        ]

    def __str__(self) -> str:
        return f"{self.task} @ {self.start:%Y-%m-%d %H:%M} ({self.period}s)"


class RollupMark(models.Model):
    """How far MessageLog has been summed into TaskRollup (one row)."""

    name = models.CharField(max_length=50, unique=True)
    upto = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} up to {self.upto:%Y-%m-%d %H:%M}"
