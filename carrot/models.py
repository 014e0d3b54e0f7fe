"""Models: MessageLog follows one task call through its lifecycle."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.db import models
from django.db.models import F
from django.utils import timezone


class MessageLogQuerySet(models.QuerySet["MessageLog"]):
    """Filters for the monitor and conditional transitions for the worker.

    Every transition is one conditional UPDATE: it only matches rows in the states it may
    leave, so a late or duplicate writer changes nothing and a status never goes backwards.
    Each returns the number of rows it changed.
    """

    def queued(self) -> MessageLogQuerySet:
        return self.filter(status=MessageLog.PUBLISHED)

    def in_progress(self) -> MessageLogQuerySet:
        return self.filter(status=MessageLog.IN_PROGRESS)

    def failed(self) -> MessageLogQuerySet:
        return self.filter(status=MessageLog.FAILED)

    def completed(self) -> MessageLogQuerySet:
        return self.filter(status=MessageLog.COMPLETED)

    def finished(self) -> MessageLogQuerySet:
        return self.filter(status__in=MessageLog.FINISHED_STATUSES)

    def mark_started(self, *, worker: str, interrupted: bool = False) -> int:
        """Move PUBLISHED rows (or, after an interruption, IN_PROGRESS rows) to IN_PROGRESS."""
        statuses = [MessageLog.IN_PROGRESS] if interrupted else [MessageLog.PUBLISHED]
        changes: dict[str, Any] = {
            "status": MessageLog.IN_PROGRESS,
            "attempts": F("attempts") + 1,
            "start_time": timezone.now(),
            "worker": worker[:255],
        }
        if interrupted:
            changes["interruptions"] = F("interruptions") + 1
        return self.filter(status__in=statuses).update(**changes)

    def mark_completed(self, *, output: Any = None, log: list[dict[str, Any]] | None = None) -> int:
        """Move IN_PROGRESS rows to COMPLETED."""
        return self.filter(status=MessageLog.IN_PROGRESS).update(
            status=MessageLog.COMPLETED,
            output=output,
            log=log or [],
            exception="",
            traceback="",
            completion_time=timezone.now(),
        )

    def mark_retrying(
        self,
        *,
        eta: Any,
        exception: str,
        traceback: str,
        log: list[dict[str, Any]],
    ) -> int:
        """Put IN_PROGRESS rows back in the queue for a later attempt, keeping its error."""
        return self.filter(status=MessageLog.IN_PROGRESS).update(
            status=MessageLog.PUBLISHED,
            eta=eta,
            exception=exception,
            traceback=traceback,
            log=log,
            failure_time=timezone.now(),
        )

    def mark_failed(
        self,
        *,
        exception: str,
        traceback: str = "",
        log: list[dict[str, Any]] | None = None,
        from_statuses: tuple[str, ...] = ("IN_PROGRESS",),
    ) -> int:
        """Move rows in ``from_statuses`` (IN_PROGRESS by default) to FAILED."""
        changes: dict[str, Any] = {
            "status": MessageLog.FAILED,
            "exception": exception,
            "traceback": traceback,
            "failure_time": timezone.now(),
        }
        if log is not None:
            changes["log"] = log
        return self.filter(status__in=from_statuses).update(**changes)


class CallArguments:
    """The seed's accessors for a call's JSON ``task_args`` and ``task_kwargs``."""

    task_args: Any
    task_kwargs: Any

    @property
    def positionals(self) -> list[Any]:
        """Return the positional arguments."""
        return list(self.task_args or [])

    @property
    def keywords(self) -> dict[str, Any]:
        """Return the keyword arguments (the monitor shows them as a table)."""
        return dict(self.task_kwargs or {})


class MessageLog(CallArguments, models.Model):
    """One task call: what was asked, where it went, and what happened."""

    PUBLISHED = "PUBLISHED"
    IN_PROGRESS = "IN_PROGRESS"
    FAILED = "FAILED"
    COMPLETED = "COMPLETED"
    STATUS_CHOICES = (
        (PUBLISHED, "Published"),
        (IN_PROGRESS, "In progress"),
        (FAILED, "Failed"),
        (COMPLETED, "Completed"),
    )
    FINISHED_STATUSES = (FAILED, COMPLETED)

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(max_length=11, choices=STATUS_CHOICES, default=PUBLISHED)
    task = models.CharField(max_length=255, help_text="the registered name of the task")
    queue = models.CharField(max_length=255, default="default")
    exchange = models.CharField(max_length=255, blank=True, default="", help_text="the exchange")
    routing_key = models.CharField(max_length=255, blank=True, default="")
    priority = models.PositiveSmallIntegerField(default=0)
    task_args = models.JSONField(default=list, blank=True)
    task_kwargs = models.JSONField(default=dict, blank=True)
    output = models.JSONField(null=True, blank=True)
    exception = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    log = models.JSONField(default=list, blank=True)
    publish_time = models.DateTimeField(null=True, blank=True)
    start_time = models.DateTimeField(null=True, blank=True)
    completion_time = models.DateTimeField(null=True, blank=True)
    failure_time = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(
        default=0, help_text="how many times a worker started this task"
    )
    interruptions = models.PositiveSmallIntegerField(
        default=0,
        help_text="attempts that ended without an outcome (worker killed, connection lost)",
    )
    worker = models.CharField(max_length=255, blank=True, default="")
    schedule = models.ForeignKey(
        "carrot.ScheduledTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="runs",
        help_text="the schedule that published this task",
    )
    scheduled_for = models.DateTimeField(
        null=True, blank=True, help_text="the schedule tick this run is for (UTC)"
    )
    eta = models.DateTimeField(
        null=True, blank=True, help_text="not run before this time (countdown, eta, retry)"
    )

    objects = MessageLogQuerySet.as_manager()

    class Meta:
        ordering = ("-id",)
        indexes = [
            models.Index(fields=["status", "-id"], name="carrot_log_status_id"),
            models.Index(fields=["status", "task", "-id"], name="carrot_log_status_task"),
            models.Index(fields=["status", "queue", "-id"], name="carrot_log_status_queue"),
            models.Index(fields=["status", "completion_time"], name="carrot_log_status_done"),
        ]

    def __str__(self) -> str:
        return f"{self.task} [{self.status}] {self.uuid}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED_STATUSES

    @property
    def finish_time(self) -> Any:
        return self.completion_time or self.failure_time

    @property
    def duration(self) -> timedelta | None:
        """Return how long the last attempt ran, if it finished."""
        if self.start_time and self.finish_time:
            return self.finish_time - self.start_time
        return None

    def requeue(self) -> MessageLog:
        """Publish a FAILED task again under the same id; raise NotRequeueable otherwise."""
        from carrot.publisher import requeue

        return requeue(self)


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
        MessageLog, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
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

    @property
    def cadence(self) -> Any:
        """Return the schedule's Cadence (interval or cron with its timezone)."""
        from carrot.scheduler import Cadence

        return Cadence.from_fields(
            self.interval_type, self.interval_count, self.cron, self.timezone
        )


class OutboxEntry(models.Model):
    """A MessageLog that is committed but whose publish is not confirmed yet.

    Written in the same transaction as its MessageLog and deleted once the broker
    confirms; a sweeper publishes entries that stay behind (the publishing process died
    or the broker was down), so a committed task is never silently lost.
    """

    message = models.OneToOneField(
        MessageLog, on_delete=models.CASCADE, primary_key=True, related_name="outbox"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"outbox {self.message_id}"


class WorkerHeartbeat(models.Model):
    """A running worker process, refreshed every few seconds while it lives.

    The worker uses it to tell a task that is still running elsewhere from one whose
    worker died; ``carrot_status``, ``carrot_health`` and the monitor show it.
    """

    name = models.CharField(max_length=255, unique=True, help_text="host:pid")
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list, blank=True)
    scheduler = models.BooleanField(default=False)
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name
