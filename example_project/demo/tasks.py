"""Demo tasks: one succeeds, one fails, one logs, one is slow."""

import logging
import random
import time

from carrot import periodic, task

logger = logging.getLogger("carrot")


@task
def add(a, b):
    """Add two numbers; the result shows as the task's output."""
    logger.info("Adding %s and %s", a, b)
    return a + b


@task
def fail(reason="this task always fails"):
    """Raise, so the monitor shows a failed task with its traceback."""
    logger.warning("About to fail: %s", reason)
    raise RuntimeError(reason)


@task
def log_demo():
    """Log at every level; the monitor's level selector filters them."""
    logger.debug("A debug line (hidden by default in the monitor)")
    logger.info("An info line")
    logger.warning("A warning line")
    logger.error("An error line")
    return {"levels": 4}


@task(queue="slow")
def slow(seconds=10):
    """Sleep, so a task stays IN_PROGRESS for a while."""
    for step in range(seconds):
        logger.info("Step %d of %d", step + 1, seconds)
        time.sleep(1)
    return f"slept {seconds}s"


@task
def report(user_id, password=None):
    """Take a secret keyword argument; the monitor masks it."""
    logger.info("Building a report for user %s", user_id)
    return {"user_id": user_id, "rows": random.randint(1, 100)}


@periodic(seconds=30)
def heartbeat():
    """Run every 30 seconds; the monitor's Scheduled tab shows it as declared in code."""
    logger.info("Still alive")
    return "ok"
