"""Tasks written with Django's own API, run by carrot through carrot.backends.

The signal receivers below run in every process that imports this module (the test
process and the workers) and leave an ``Effect`` row, so a test can see which process
sent which signal.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

try:  # Django 6.0+
    from django.tasks import task
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:  # Django 5.2 with the backport
    from django_tasks import task
    from django_tasks.signals import task_enqueued, task_finished, task_started

from tests.testapp.models import Effect


def _record(key: str) -> None:
    Effect.objects.create(key=key[:100], pid=os.getpid())


@task
def add(a, b):
    return a + b


@task(queue_name="other")
def record(key):
    _record(key)
    return key


@task
def fail(message):
    raise ValueError(message)


@task(takes_context=True)
def with_context(context, value):
    result = context.task_result
    return {
        "value": value,
        "attempt": context.attempt,
        "id": result.id,
        "status": str(result.status),
        "worker_ids": result.worker_ids,
    }


@task(takes_context=True, backend="retrying")
def flaky(context, fail_times):
    """Fail the first ``fail_times`` attempts (retries come from the backend's OPTIONS)."""
    if context.attempt <= fail_times:
        raise ConnectionError(f"attempt {context.attempt} fails")
    return context.attempt


@task
async def async_double(value):
    await asyncio.sleep(0)
    return value * 2


@task
def not_json():
    return object()


@task
def loose_json():
    """Values Django's JSON rules accept: integer keys (stored as strings), bytes (text)."""
    return {1: b"one", "list": (1, 2)}


@task(backend="limited")
async def async_sleep(seconds, marker):
    await asyncio.sleep(seconds)
    Path(marker).touch()  # no database: this may run after its attempt was failed


@task
async def async_whoami():
    import carrot

    call = carrot.current_call()
    return {"message_id": call.message_id, "attempt": call.attempt}


def not_a_task(path):
    """A plain function in a tasks module: a message naming it must not run it."""
    _record(f"not a task ran: {path}")


def _is_ours(task_result) -> bool:
    return task_result.task.module_path.startswith(__name__ + ".")


def _on_enqueued(sender, task_result, **kwargs):
    if _is_ours(task_result):
        _record(f"enqueued:{task_result.id}:{os.getpid()}")


def _on_started(sender, task_result, **kwargs):
    if _is_ours(task_result):
        _record(f"started:{task_result.id}:{task_result.status}:{os.getpid()}")


def _on_finished(sender, task_result, **kwargs):
    if _is_ours(task_result):
        handling = sys.exc_info()[0]
        name = handling.__name__ if handling else "-"
        _record(f"finished:{task_result.id}:{task_result.status}:{name}:{os.getpid()}")


task_enqueued.connect(_on_enqueued, dispatch_uid="tests.djangoapp.enqueued")
task_started.connect(_on_started, dispatch_uid="tests.djangoapp.started")
task_finished.connect(_on_finished, dispatch_uid="tests.djangoapp.finished")
