"""Unique tasks: at most one queued or running row per key, enforced by the database.

A unique task's call gets a key (``key_of``): a hash of the task's name and either the
call's JSON arguments (``@task(unique=True)``) or what its ``unique_key(*args, **kwargs)``
returns. The partial unique index ``carrot_log_unique_active`` admits one PUBLISHED or
IN_PROGRESS row per key, whichever process or host inserts it; ``insert()`` inserts a row
in a savepoint and, when the index refuses it, returns the row that holds the key. Once
that row is COMPLETED or FAILED the key is free again.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction

from carrot.models import MessageLog
from carrot.models.lifecycle import ACTIVE
from carrot.models.outbox import insert_with_entries

if TYPE_CHECKING:
    from carrot.tasks import Task

# A key freed between the refused insert and the read of its holder: insert again.
ATTEMPTS = 5


def key_of(task: Task, args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """Return the key of a call of ``task`` (JSON arguments), or None if it is not unique."""
    if not task.unique:
        return None
    if task.unique_key is not None:
        chosen = task.unique_key(*args, **kwargs)
        if not isinstance(chosen, str):
            raise TypeError(f"The unique_key of {task.name} must return a string, got {chosen!r}.")
        material = f"key\0{chosen}"
    else:
        material = "args\0" + json.dumps([args, kwargs], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{task.name}\0{material}".encode()).hexdigest()


def holder(key: str, using: str) -> MessageLog | None:
    """Return the queued or running row that holds ``key``, if any."""
    return MessageLog.objects.using(using).filter(unique_key=key, status__in=ACTIVE).first()


def insert(log: MessageLog, using: str) -> tuple[MessageLog, datetime | None]:
    """Insert a unique task's new row with its outbox entry (inside a transaction).

    Return ``(log, when its entry was written)``, or ``(the row holding its key, None)``
    when one is queued or running: then nothing was written and ``log`` stays unsaved.
    """
    assert log.unique_key is not None
    refused: IntegrityError | None = None
    for _ in range(ATTEMPTS):
        try:
            # A savepoint: a refused row leaves the caller's transaction usable.
            with transaction.atomic(using=using):
                return log, insert_with_entries([log], using)
        except IntegrityError as exc:
            refused = exc
        existing = holder(log.unique_key, using)
        if existing is not None:
            return existing, None
    assert refused is not None
    raise refused  # not the key after all (no row holds it): a different integrity error
