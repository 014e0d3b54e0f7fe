"""Django tasks in carrot's registry, and how the worker runs them.

A Django task that a carrot backend validates is registered under its ``module_path`` as a
carrot ``Task`` whose function is a ``DjangoTaskCall``: the worker runs it like any carrot
task (claim, time limit, log capture, retries, ack after commit) and the call adds what
Django's API promises: ``task_started`` before the function, a ``TaskContext`` for
``takes_context`` tasks, a JSON return value, and ``task_finished`` once the outcome is
committed (sent while the task's exception is being handled, as Django does).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from carrot.backends import compat
from carrot.backends.entries import DjangoTaskEntry
from carrot.current import current_call
from carrot.registry import registry

logger = logging.getLogger("carrot")


class DjangoTaskCall:
    """The function of the carrot task that runs one Django task."""

    def __init__(self, task: Any, backend_class: type, alias: str) -> None:
        self.task = task
        self.backend_class = backend_class
        self.alias = alias
        func = task.func
        self.__module__ = func.__module__
        self.__name__ = func.__name__
        self.__qualname__ = func.__qualname__
        self.__doc__ = func.__doc__

    def __repr__(self) -> str:
        return f"<Django task {self.task.module_path} on {self.alias!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call = current_call()
        result = None
        if call is not None and call.row_id is not None:
            # lazy: the results read the models, which are not loaded when tasks register.
            from carrot.backends.results import result_by_row

            result = result_by_row(call.row_id, self.alias)
            compat.task_started.send(self.backend_class, task_result=result)
        if self.task.takes_context:
            if result is None:
                raise RuntimeError(
                    f"{self.task.module_path} takes a TaskContext, which only a carrot worker "
                    "can give it; call it through enqueue(), or call task.func(context, ...)."
                )
            value = self.task.call(compat.TaskContext(task_result=result), *args, **kwargs)
        else:
            value = self.task.call(*args, **kwargs)
        # Django's rules for a return value: one its normalize_json refuses fails the
        # attempt with its TypeError; then a JSON round trip (integer keys become strings).
        return json.loads(json.dumps(compat.normalize_json(value)))

    def finished(self, row_id: int, succeeded: bool, error: BaseException | None) -> None:
        """Send ``task_finished`` once the outcome is committed (the worker calls this)."""
        # lazy: as in __call__.
        from carrot.backends.results import result_by_row

        result = result_by_row(row_id, self.alias)
        if error is None:
            compat.task_finished.send(self.backend_class, task_result=result)
            return
        try:
            raise error
        except BaseException:  # receivers (Django's logger) see the task's exception
            compat.task_finished.send(self.backend_class, task_result=result)


def register(task: Any, backend_class: type, alias: str, options: dict[str, Any]) -> None:
    """Register a Django task in carrot's registry so workers run it.

    The first carrot backend to validate a task registers it: in every process that is
    the decorator's (a tasks module is imported before anything enqueues), so its alias
    and OPTIONS are the same in the web process and in every worker; ``using()`` and
    ``enqueue()`` validate again and change nothing. A carrot ``@task`` of the same name
    keeps its entry (a Django ``Task`` is built over it only to read its rows).
    """
    name = task.module_path
    existing = registry.get(name)
    if existing is not None and (
        not isinstance(existing, DjangoTaskEntry) or existing.django_task.func is task.func
    ):
        return
    call = DjangoTaskCall(task, backend_class, alias)
    registry.register(
        DjangoTaskEntry(
            func=call,
            name=name,
            queue=task.queue_name,
            on_outcome=call.finished,
            django_task=task,
            alias=alias,
            **options,
        )
    )
