"""Tasks the test suite publishes; each records its executions in Effect."""

import logging
import os
import signal
import time
from pathlib import Path

from carrot import task

logger = logging.getLogger("carrot")


def _record(key):
    from tests.testapp.models import Effect

    Effect.objects.create(key=key, pid=os.getpid())


@task
def add(a, b):
    logger.info("adding %s and %s", a, b)
    return a + b


@task
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@task
def record(key):
    _record(key)
    return key


@task
def fail(message="boom"):
    logger.warning("about to fail")
    raise ValueError(message)


@task
def chatty():
    logger.debug("a debug line")
    logger.info("an info line")
    logger.warning("a warning line")
    logger.error("an error line")
    return "done"


@task
def sleep_then_record(key, seconds):
    marker = os.environ.get("CARROT_TEST_MARKER_DIR")
    if marker:
        Path(marker, f"started-{key}").touch()
    logger.info("started %s", key)
    time.sleep(seconds)
    _record(key)
    return key


@task
def crash(key):
    """Kill the worker process running this task, every time."""
    _record(key)
    os.kill(os.getpid(), signal.SIGKILL)


@task
def not_json():
    return {1, 2, 3}


@task(queue="other", priority=3)
def on_other_queue(key):
    _record(key)
    return key
