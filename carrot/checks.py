"""System checks for the CARROT setting, with stable ids (carrot.E0xx / carrot.W0xx)."""

from __future__ import annotations

import importlib.util
from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from carrot.conf import get_problems, parse
from carrot.worker.consumer import QueueConsumer


@checks.register("carrot")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Report every problem in CARROT."""
    out: list[checks.CheckMessage] = []
    for problem in get_problems():
        cls = checks.Warning if problem.warning else checks.Error
        out.append(cls(problem.msg, hint=problem.hint, id=problem.id))
    return out


@checks.register("carrot")
def check_importable(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Check that task modules, consumer classes and monitor decorators can be imported."""
    config, _ = parse(getattr(settings, "CARROT", None))
    out: list[checks.CheckMessage] = []
    for index, module in enumerate(config.task_modules):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            out.append(
                checks.Error(
                    f"CARROT['task_modules'][{index}] is misconfigured: the module {module!r} "
                    "cannot be imported.",
                    hint="Fix the dotted path or remove it from the list.",
                    id="carrot.E005",
                )
            )
    for queue in config.queues:
        try:
            cls = import_string(queue.consumer_class)
        except ImportError:
            cls = None
        if not (isinstance(cls, type) and issubclass(cls, QueueConsumer)):
            out.append(
                checks.Error(
                    f"CARROT['queues'] entry {queue.name!r} is misconfigured: 'consumer_class' "
                    f"{queue.consumer_class!r} is not an importable subclass of "
                    "carrot.consumer.Consumer.",
                    id="carrot.E009",
                )
            )
    for index, path in enumerate(config.monitor_authentication or ()):
        try:
            decorator = import_string(path)
        except ImportError:
            decorator = None
        if not callable(decorator):
            out.append(
                checks.Error(
                    f"CARROT['monitor_authentication'][{index}] is misconfigured: {path!r} is "
                    "not an importable decorator.",
                    id="carrot.E006",
                )
            )
    return out
