"""``manage.py carrot_send TASK --args '[...]' --kwargs '{...}'``: publish a task by name."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from carrot.exceptions import CarrotError
from carrot.publishing.enqueue import enqueue
from carrot.registry import registry
from carrot.tasks import resolve_eta


def _json(value: str, kind: type, option: str) -> Any:
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{option} is not valid JSON: {exc.msg} (column {exc.colno}).") from None
    if not isinstance(data, kind):
        raise CommandError(f"{option} must be a JSON {'list' if kind is list else 'object'}.")
    return data


class Command(BaseCommand):
    help = "Publish a registered task with JSON arguments and print its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task", help="the registered task name, e.g. myapp.tasks.send_email")
        # dest is not "args": Django reserves options["args"] for positional arguments.
        parser.add_argument(
            "--args", dest="task_args", default="[]", help="positional arguments as a JSON list"
        )
        parser.add_argument(
            "--kwargs", dest="task_kwargs", default="{}", help="keyword arguments as a JSON object"
        )
        parser.add_argument("--queue", help="default: the task's queue")
        parser.add_argument("--priority", type=int, help="default: the task's priority")
        parser.add_argument("--countdown", type=float, help="run after this many seconds")

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["task"]
        task = registry.get(name)
        if task is None:
            raise CommandError(
                f"{name!r} is not a registered task. Registered: {', '.join(registry.names())}."
            )
        task_args = _json(options["task_args"], list, "--args")
        task_kwargs = _json(options["task_kwargs"], dict, "--kwargs")
        try:
            log = enqueue(
                name,
                task_args,
                task_kwargs,
                queue=options["queue"] or task.queue,
                priority=task.priority if options["priority"] is None else options["priority"],
                who="carrot_send",
                eta=resolve_eta(options["countdown"], None),
            )
        except (CarrotError, TypeError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Published {name} to {log.queue!r}: {log.uuid}")
