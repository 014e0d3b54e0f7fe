"""ScheduledTask: a task published at an interval or on a cron expression."""

from __future__ import annotations

from django.db import models

from carrot.models.messagelog import CallArguments


class ScheduledTask(CallArguments, models.Model):
    """A task published at an interval or on a cron expression.

    Schedules declared in code (``@periodic``) are synced into this table when the worker
    starts (``source="code"``); people create the others in the monitor or with
    ``carrot.utilities.create_scheduled_task`` (``source="user"``).
    """

    SECONDS, MINUTES, HOURS, DAYS = "seconds", "minutes", "hours", "days"
    INTERVAL_CHOICES = (
        (SECONDS, "seconds"),
        (MINUTES, "minutes"),
        (HOURS, "hours"),
        (DAYS, "days"),
    )
    SOURCE_CODE, SOURCE_USER = "code", "user"
    SOURCE_CHOICES = ((SOURCE_CODE, "Declared in code"), (SOURCE_USER, "Created by a person"))

    task_name = models.CharField(max_length=200, unique=True, help_text="the schedule's name")
    task = models.CharField(max_length=255, help_text="the registered task to publish")
    interval_type = models.CharField(max_length=7, choices=INTERVAL_CHOICES, blank=True, default="")
    interval_count = models.PositiveIntegerField(null=True, blank=True)
    cron = models.CharField(max_length=200, blank=True, default="")
    timezone = models.CharField(
        max_length=64, blank=True, default="", help_text="for cron; empty means TIME_ZONE"
    )
    queue = models.CharField(
        max_length=255, blank=True, default="", help_text="empty means the task's queue"
    )
    exchange = models.CharField(max_length=255, blank=True, default="")
    routing_key = models.CharField(max_length=255, blank=True, default="")
    priority = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="empty means the task's priority"
    )
    task_args = models.JSONField(default=list, blank=True)
    task_kwargs = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=True)
    source = models.CharField(max_length=4, choices=SOURCE_CHOICES, default=SOURCE_USER)
    removed_at = models.DateTimeField(
        null=True, blank=True, help_text="when a schedule declared in code disappeared from it"
    )
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_message = models.ForeignKey(
        "carrot.MessageLog", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("task_name",)
        indexes = [models.Index(fields=["active", "next_run_at"], name="carrot_sched_due")]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(cron="", interval_count__gt=0) & ~models.Q(interval_type=""))
                | (~models.Q(cron="") & models.Q(interval_count__isnull=True)),
                name="carrot_schedule_interval_xor_cron",
            )
        ]

    def __str__(self) -> str:
        return self.task_name

    @property
    def is_declared(self) -> bool:
        """Return True when the schedule comes from a ``@periodic`` declaration."""
        return self.source == self.SOURCE_CODE
