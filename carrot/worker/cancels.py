"""Stopping running tasks someone cancelled (``MessageLog.cancel()``, the monitor,
``carrot_cancel``): one thread per worker process.

Every second it asks the database which of the rows this process runs were asked to stop
(``cancelled_at``, set by ``carrot.models.cancelling``). Such a task's
``current_call().cancel_requested`` turns True at once; if it is still running
``CARROT['cancel_grace']`` seconds later, TaskCancelled is raised in its thread, the
mechanism time limits use (``runner.Guard``): code blocked outside Python (a socket, a C
call) is interrupted only when it returns to Python.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.db import DatabaseError, close_old_connections

from carrot.exceptions import TaskCancelled
from carrot.models import MessageLog
from carrot.worker.pool import TaskPool, Work


class CancelWatch(threading.Thread):
    EVERY = 1.0

    def __init__(
        self, pools: Callable[[], list[TaskPool]], grace: float, logger: logging.Logger
    ) -> None:
        super().__init__(name="cancel-watch", daemon=True)
        self.pools = pools
        self.grace = grace
        self.logger = logger
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.EVERY):
            close_old_connections()
            try:
                self.check()
            except DatabaseError as exc:
                self.logger.warning("Could not look for cancelled tasks (%s); trying again", exc)
        close_old_connections()

    def stop(self) -> None:
        self.stop_event.set()

    def check(self) -> None:
        """Ask cancelled tasks to stop; raise TaskCancelled in those past the grace."""
        works: dict[int, Work] = {
            w.claim.log_id: w
            for pool in self.pools()
            for w in pool.running()
            if w.claim.log_id is not None
        }
        if not works:
            return
        asked = MessageLog.objects.filter(
            pk__in=list(works), status=MessageLog.IN_PROGRESS, cancelled_at__isnull=False
        ).values_list("pk", "cancelled_by")
        now = time.monotonic()
        for pk, by in asked:
            work = works[pk]
            if not work.cancel.is_set():
                work.cancel_by = now + self.grace
                work.cancel.set()
                self.logger.info(
                    "Cancelling %s %s%s: asking it to stop, TaskCancelled in %gs",
                    work.task.name,
                    work.message_id,
                    f" (by {by})" if by else "",
                    self.grace,
                )
            elif work.cancel_by is not None and now >= work.cancel_by:
                work.cancel_by = None  # once: the exception ends the attempt
                if work.guard.interrupt(TaskCancelled):
                    self.logger.warning(
                        "Cancelled %s %s did not stop within %gs: raised TaskCancelled in it",
                        work.task.name,
                        work.message_id,
                        self.grace,
                    )
