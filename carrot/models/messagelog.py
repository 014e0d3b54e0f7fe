"""MessageLog: one task call followed through its lifecycle (see ``lifecycle``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, models, router, transaction

from carrot.conf import get_config
from carrot.exceptions import CarrotError, NotCancellable, NotRequeueable
from carrot.masking import search_text
from carrot.models import lifecycle
from carrot.models.cancelling import cancel_rows
from carrot.models.handover import hand_over_after_commit, outgoing, publishable
from carrot.models.outbox import add_entries
from carrot.models.querysets import MessageLogQuerySet
from carrot.observability import tracing
from carrot.registry import registry


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

    PUBLISHED = lifecycle.PUBLISHED
    IN_PROGRESS = lifecycle.IN_PROGRESS
    FAILED = lifecycle.FAILED
    COMPLETED = lifecycle.COMPLETED
    CANCELLED = lifecycle.CANCELLED
    STATUS_CHOICES = (
        (PUBLISHED, "Published"),
        (IN_PROGRESS, "In progress"),
        (FAILED, "Failed"),
        (COMPLETED, "Completed"),
        (CANCELLED, "Cancelled"),
    )
    FINISHED_STATUSES = lifecycle.FINISHED

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
    exception_type = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text="the dotted path of the exception class the task failed with",
    )
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
    cancelled_at = models.DateTimeField(
        null=True, blank=True, help_text="when it was cancelled (running: asked to stop)"
    )
    cancelled_by = models.CharField(
        max_length=150, blank=True, default="", help_text="who cancelled it, when known"
    )
    attempt_history = models.JSONField(
        default=list,
        blank=True,
        help_text="the earlier attempts: worker, start time and error of each",
    )
    backend = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="the TASKS alias of the Django task backend that enqueued it, if one did",
    )
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
    search_text = models.TextField(
        blank=True,
        default="",
        editable=False,
        help_text="the arguments as the monitor searches them, with secrets masked",
    )
    trace_context = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="the W3C trace context of its publish (OpenTelemetry), sent in its headers",
    )

    # NULL, not "": rows without a key must never collide in the unique index.
    unique_key = models.CharField(  # noqa: DJ001
        max_length=64,
        null=True,
        blank=True,
        editable=False,
        help_text="a unique task's key (a hash): one row with it may be queued or running",
    )

    objects = MessageLogQuerySet.as_manager()

    class Meta:
        ordering = ("-id",)
        constraints = [
            # @task(unique=True): at most one queued or running row per key, in the
            # database, so it holds across processes and hosts (publishing/unique.py).
            models.UniqueConstraint(
                fields=["unique_key"],
                condition=models.Q(status__in=lifecycle.ACTIVE),
                name="carrot_log_unique_active",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-id"], name="carrot_log_status_id"),
            models.Index(fields=["status", "task", "-id"], name="carrot_log_status_task"),
            models.Index(fields=["status", "queue", "-id"], name="carrot_log_status_queue"),
            models.Index(fields=["status", "completion_time"], name="carrot_log_status_done"),
            models.Index(fields=["status", "failure_time"], name="carrot_log_status_failed"),
            # Only rows with an eta: the overview's "delayed" count, at no cost to delay().
            models.Index(
                fields=["status", "queue", "eta"],
                name="carrot_log_delayed",
                condition=models.Q(eta__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task} [{self.status}] {self.uuid}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.search_text = search_text(self.task_args, self.task_kwargs)
        super().save(*args, **kwargs)

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

    def cancel(self, by: str = "") -> MessageLog:
        """Cancel this task and return it, refreshed: queued, it never runs (CANCELLED now);
        running, it is asked to stop (``cancel_requested``, then TaskCancelled in its
        thread after ``CARROT['cancel_grace']``). Raise NotCancellable once it finished."""
        rows = MessageLog.objects.filter(pk=self.pk)
        for moment in ("before", "after"):
            status = rows.values_list("status", flat=True).first()
            if status is None:
                raise NotCancellable(f"Cannot cancel {self.uuid}: it was deleted.")
            if status in lifecycle.FINISHED and not (
                moment == "after" and status == self.CANCELLED
            ):
                raise NotCancellable(
                    f"Cannot cancel {self.uuid}: it already finished ({status}); only queued "
                    "and running tasks can be cancelled."
                )
            if moment == "before":
                cancel_rows(rows, by)
        self.refresh_from_db()
        return self

    @property
    def unique_by(self) -> str:
        """Say what makes this call unique ("" when it is not a unique task's)."""
        if self.unique_key is None:
            return ""
        task = registry.get(self.task)
        chooser = task.unique_key if task is not None else None
        if chooser is None:
            return "its arguments"
        return f"{getattr(chooser, '__module__', '')}.{getattr(chooser, '__qualname__', '')}()"

    @property
    def trace_id(self) -> str:
        """Return the OpenTelemetry trace id of its publish, or "" (see ``trace_context``)."""
        parts = str((self.trace_context or {}).get("traceparent", "")).split("-")
        return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""

    def task_result(self, alias: str | None = None) -> Any:
        """Return this task as Django's ``TaskResult``, so code can move between
        ``@carrot.task`` and ``django.tasks`` without losing history.

        Read through ``alias``, the backend that enqueued it, or the first
        ``carrot.backends.RabbitMQBackend`` in ``TASKS``; raises ImproperlyConfigured
        when there is none.
        """
        # lazy: Django's task framework is optional; projects without it never import it.
        from carrot.backends import compat

        if not compat.available:
            raise ImproperlyConfigured(compat.UNAVAILABLE)
        aliases = list(compat.task_backends.settings)
        for name in [alias] if alias else [self.backend, *aliases]:
            if name in aliases and getattr(compat.task_backends[name], "carrot_backend", False):
                return compat.task_backends[name].get_result(str(self.uuid))
        if alias:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}] is not a carrot backend ({alias!r} must be configured with "
                "'BACKEND': 'carrot.backends.RabbitMQBackend')."
            )
        raise ImproperlyConfigured(
            "MessageLog.task_result() needs a carrot backend in TASKS, e.g. TASKS = "
            "{'default': {'BACKEND': 'carrot.backends.RabbitMQBackend'}}."
        )

    def requeue(self) -> MessageLog:
        """Publish a FAILED task again under the same id; raise NotRequeueable otherwise.

        The row goes back to PUBLISHED with an outbox entry in one transaction, then out
        through the relay like any publish; RabbitMQ's confirm is awaited, so a refusal
        raises PublishError here.
        """
        if self.exception.startswith(lifecycle.REJECTED_PREFIX):
            reason = self.exception[len(lifecycle.REJECTED_PREFIX) :]
            raise NotRequeueable(
                f"Task {self.uuid} was rejected before it ran ({reason}); there is nothing "
                "valid to requeue. The original message is in the dead-letter queue."
            )
        if self.task not in registry:
            raise NotRequeueable(
                f"Cannot requeue {self.uuid}: {self.task!r} is not a registered task."
            )
        try:
            publishable(self)  # its queue is configured and its arguments fit
        except CarrotError as exc:
            raise NotRequeueable(f"Cannot requeue {self.uuid}: {exc}") from None
        using = router.db_for_write(MessageLog)
        rows = MessageLog.objects.using(using).filter(pk=self.pk)
        with tracing.publishing([self], trigger="requeue"), _unique_held(self, using):
            with transaction.atomic(using=using):
                if not rows.apply(lifecycle.REQUEUE):
                    current = rows.values_list("status", flat=True).first() or "deleted"
                    raise NotRequeueable(
                        f"Only failed tasks can be requeued; {self.uuid} is {current}."
                    )
                if self.trace_context:  # this publish's, set by the span
                    rows.update(trace_context=self.trace_context)
                written = add_entries([self.pk], using)
            self.refresh_from_db(using=using)
            wait = get_config().publish_timeout
            hand_over_after_commit([outgoing(self, written)], using, fail_fast=True, wait=wait)
        return self


@contextmanager
def _unique_held(log: MessageLog, using: str) -> Iterator[None]:
    """Turn the unique index's refusal of a requeue into NotRequeueable, naming the row
    that holds the key (``carrot.publishing.unique``)."""
    try:
        yield
    except IntegrityError:
        if log.unique_key is None:
            raise
        holder = (
            MessageLog.objects.using(using)
            .filter(unique_key=log.unique_key, status__in=lifecycle.ACTIVE)
            .values_list("uuid", flat=True)
            .first()
        )
        raise NotRequeueable(
            f"Cannot requeue {log.uuid}: {log.task} is a unique task and another call with "
            f"the same key is queued or running ({holder or 'it just finished: try again'})."
        ) from None
