"""Find the tasks at startup: every installed app's ``tasks`` module, and the modules listed
in ``CARROT['task_modules']`` (whose plain public functions become tasks, as in the seed).

Run once from ``CarrotConfig.ready()``; afterwards only the registry decides what runs.
"""

from __future__ import annotations

import importlib
import inspect
import logging

from django.utils.module_loading import autodiscover_modules

from carrot.conf import get_config
from carrot.registry import registry
from carrot.tasks import Task, make_task

logger = logging.getLogger(__name__)


def register_module_functions(module_path: str) -> None:
    """Register the public functions defined in a CARROT['task_modules'] module.

    The seed let any function of a listed module run as a task; listing the module is the
    explicit allow-list, so its plain functions become tasks with default options.
    """
    module = importlib.import_module(module_path)
    for attr, value in vars(module).items():
        if attr.startswith("_") or isinstance(value, Task):
            continue
        if inspect.isfunction(value) and value.__module__ == module.__name__:
            name = f"{value.__module__}.{value.__qualname__}"
            if name not in registry:
                registry.register(make_task(value))


def autodiscover() -> None:
    """Import every installed app's ``tasks`` module and the CARROT['task_modules']."""
    autodiscover_modules("tasks")
    for module_path in get_config().task_modules:
        try:
            register_module_functions(module_path)
        except ModuleNotFoundError as exc:
            # A missing listed module is reported by the system check carrot.E005; an
            # ImportError raised *inside* an existing module is a bug and propagates.
            if exc.name is None or not module_path.startswith(exc.name):
                raise
            logger.warning("CARROT['task_modules'] lists %r, which cannot be imported", module_path)
