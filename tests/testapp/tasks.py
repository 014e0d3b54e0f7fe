"""Tasks the test suite publishes; each records its executions in Effect."""

import logging
import os
import signal
import time
from pathlib import Path

from carrot import Retry, task

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


@task(retries=3, retry_backoff=1, retry_jitter=False)
def flaky(key, fail_times):
    """Fail the first ``fail_times`` runs, then succeed."""
    from tests.testapp.models import Effect

    _record(key)
    runs = Effect.objects.filter(key=key).count()
    if runs <= fail_times:
        raise ConnectionError(f"attempt {runs} failed")
    return runs


@task(retries=2)
def asks_for_retry(key):
    from tests.testapp.models import Effect

    _record(key)
    if Effect.objects.filter(key=key).count() == 1:
        raise Retry(countdown=0.5)
    return "second time lucky"


@task(retries=2, retry_backoff=0.1, autoretry_for=(ValueError,))
def only_value_errors_retry(key, error):
    _record(key)
    raise {"value": ValueError, "key": KeyError}[error](key)


@task(time_limit=1)
def busy_loop(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


@task(time_limit=1)
def blocked_sleep(key, seconds):
    time.sleep(seconds)  # blocked in C: the time limit cannot interrupt it
    _record(key)


@task
def sleep_then_touch(key, seconds):
    """Sleep, then leave a file: an effect that needs no database (for DB outage tests)."""
    marker = os.environ.get("CARROT_TEST_MARKER_DIR", "/tmp")
    Path(marker, f"started-{key}").touch()
    time.sleep(seconds)
    Path(marker, f"done-{key}").touch()
    return key


@task
def record_or_fail(key, fail=False):
    _record(key)
    if fail:
        raise RuntimeError(f"{key} fails on purpose")
    return key


@task(retries=1, retry_backoff=0.1, retry_jitter=False)
def whoami(fail_first=False):
    """Return what carrot.current_call() says; fail the first attempt if asked."""
    import carrot

    call = carrot.current_call()
    if fail_first and call.attempt == 1:
        raise RuntimeError("first attempt fails")
    return {
        "message_id": call.message_id,
        "row_id": call.row_id,
        "attempt": call.attempt,
        "task": call.task,
        "queue": call.queue,
    }


def _wait_for(path, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


@task
def log_until_released(key, lines=3, burst=0, burst_seconds=1.0):
    """Log ``lines`` lines, wait for ``release-<key>`` in CARROT_TEST_MARKER_DIR, log
    ``burst`` lines spread over ``burst_seconds`` and a last line, touch ``logged-<key>``,
    then wait for ``finish-<key>`` (each wait gives up after a minute)."""
    marker = Path(os.environ.get("CARROT_TEST_MARKER_DIR", "/tmp"))
    for i in range(lines):
        logger.info("%s line %d", key, i + 1)
    _wait_for(marker / f"release-{key}")
    started = time.monotonic()
    for i in range(burst):
        logger.debug("%s burst %d", key, i + 1)
        pause = started + burst_seconds * (i + 1) / burst - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    logger.warning("%s released", key)
    Path(marker, f"logged-{key}").touch()
    _wait_for(marker / f"finish-{key}")
    return key


@task(unique=True)
def unique_record(key, seconds=0.0):
    """A unique task (by its arguments): record a run, after ``seconds``."""
    time.sleep(seconds)
    _record(key)
    return key


def _account_key(account, **_options):
    return f"account-{account}"


@task(unique_key=_account_key)
def sync_account(account, full=False):
    """A unique task by account only: a full and a quick sync of one account are the same."""
    _record(f"sync-{account}")
    return {"account": account, "full": full}


@task(retries=3, retry_backoff=0.1, retry_jitter=False)
def cancellable(key, seconds=30.0, polite=True):
    """Run up to ``seconds``: a polite one returns once cancel_requested, a stubborn one
    keeps going (and is interrupted by TaskCancelled after the grace)."""
    import carrot

    marker = os.environ.get("CARROT_TEST_MARKER_DIR")
    if marker:
        Path(marker, f"started-{key}").touch()
    logger.info("working on %s", key)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if polite and carrot.current_task().cancel_requested:
            logger.info("%s: asked to stop, stopping", key)
            raise carrot.TaskCancelled(f"{key} stopped when asked")
        time.sleep(0.05)
    _record(key)
    return key
