"""The schedule form: a registered task, an interval or cron, and JSON arguments."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import available_timezones

from django import forms
from django.conf import settings

from carrot.conf import get_config
from carrot.masking import mask, unmask
from carrot.models import ScheduledTask
from carrot.registry import registry
from carrot.scheduling.cadence import UNITS, Cadence
from carrot.scheduling.edits import save_schedule

MAX_JSON_BYTES = 64 * 1024
MAX_JSON_DEPTH = 20


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


class JSONField(forms.CharField):
    """A textarea holding JSON of one type (a list or an object), with precise errors."""

    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "mono"})

    def __init__(self, *, kind: type, **kwargs: Any) -> None:
        self.kind = kind
        kwargs.setdefault("required", False)
        super().__init__(strip=True, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | dict):
            return json.dumps(mask(value), indent=None, ensure_ascii=False)
        return value

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if not text:
            return self.kind()
        if len(text.encode()) > MAX_JSON_BYTES:
            raise forms.ValidationError(f"This is longer than {MAX_JSON_BYTES // 1024} KB.")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from None
        except RecursionError:
            raise forms.ValidationError("This JSON is nested too deeply.") from None
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}.") from None
        if not isinstance(data, self.kind):
            wanted = (
                'a JSON list, e.g. [1, "two"]'
                if self.kind is list
                else ('a JSON object, e.g. {"name": "value"}')
            )
            raise forms.ValidationError(f"Enter {wanted}.")
        if _depth(data) > MAX_JSON_DEPTH:
            raise forms.ValidationError(f"This JSON is nested more than {MAX_JSON_DEPTH} levels.")
        if "\x00" in json.dumps(data, ensure_ascii=False):
            raise forms.ValidationError("Text in this JSON contains a NUL character (\\u0000).")
        return data


def timezone_choices() -> list[tuple[str, str]]:
    default = getattr(settings, "TIME_ZONE", "UTC") or "UTC"
    return [("", f"Default ({default})")] + [(z, z) for z in sorted(available_timezones())]


class ScheduleForm(forms.Form):
    """Create or edit a schedule created by a person."""

    KIND_CHOICES = (("interval", "Every …"), ("cron", "Cron expression"))

    task_name = forms.CharField(
        label="Name", max_length=200, help_text="Unique; shown in the list and the logs."
    )
    task = forms.ChoiceField(label="Task", help_text="Only registered tasks can be scheduled.")
    kind = forms.ChoiceField(choices=KIND_CHOICES, initial="interval", widget=forms.RadioSelect)
    interval_count = forms.IntegerField(label="Every", min_value=1, required=False, initial=1)
    interval_type = forms.ChoiceField(
        label="Unit", choices=[(u, u) for u in UNITS], required=False, initial="minutes"
    )
    cron = forms.CharField(
        label="Cron",
        max_length=200,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "*/5 * * * *", "class": "mono"}),
        help_text="minute hour day-of-month month day-of-week",
    )
    timezone = forms.ChoiceField(label="Time zone", required=False)
    queue = forms.ChoiceField(label="Queue", required=False)
    priority = forms.IntegerField(label="Priority", required=False, min_value=0, max_value=255)
    task_args = JSONField(kind=list, label="Positional arguments (JSON list)")
    task_kwargs = JSONField(kind=dict, label="Keyword arguments (JSON object)")
    active = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args: Any, instance: ScheduledTask | None = None, **kwargs: Any) -> None:
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "task_name": instance.task_name,
                "task": instance.task,
                "kind": "cron" if instance.cron else "interval",
                "interval_count": instance.interval_count,
                "interval_type": instance.interval_type or "minutes",
                "cron": instance.cron,
                "timezone": instance.timezone,
                "queue": instance.queue,
                "priority": instance.priority,
                "task_args": instance.task_args,
                "task_kwargs": instance.task_kwargs,
                "active": instance.active,
            }
        super().__init__(*args, **kwargs)
        names = registry.names()
        if instance is not None and instance.task not in names:
            names = [instance.task, *names]  # shown, but refused on save (see clean_task)
        task_field = self.fields["task"]
        assert isinstance(task_field, forms.ChoiceField)
        task_field.choices = [("", "Choose a task…")] + [(n, n) for n in names]
        queue_field = self.fields["queue"]
        assert isinstance(queue_field, forms.ChoiceField)
        queue_field.choices = [("", "The task's queue")] + [
            (q, q) for q in get_config().queue_names
        ]
        tz_field = self.fields["timezone"]
        assert isinstance(tz_field, forms.ChoiceField)
        tz_field.choices = timezone_choices()

    def clean_task_name(self) -> str:
        name = self.cleaned_data["task_name"].strip()
        clash = ScheduledTask.objects.filter(task_name=name)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise forms.ValidationError("A schedule with this name already exists.")
        return name

    def clean_task(self) -> str:
        name = self.cleaned_data["task"]
        if name not in registry:
            raise forms.ValidationError(f"{name!r} is not a registered task.")
        return name

    # Both fields are shown masked (a positional argument may be a dict with a secret);
    # a mask sent back unchanged keeps the stored secret.
    def clean_task_args(self) -> list[Any]:
        data = self.cleaned_data["task_args"]
        return data if self.instance is None else unmask(data, self.instance.task_args)

    def clean_task_kwargs(self) -> dict[str, Any]:
        data = self.cleaned_data["task_kwargs"]
        return data if self.instance is None else unmask(data, self.instance.task_kwargs)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        try:
            if kind == "cron":
                if not data.get("cron"):
                    self.add_error("cron", "Enter a cron expression.")
                    return data
                cadence = Cadence(cron=data["cron"], timezone=data.get("timezone") or "")
                data["cron"] = cadence.cron
            else:
                if not data.get("interval_count"):
                    self.add_error("interval_count", "Enter how often to run, e.g. 5.")
                    return data
                cadence = Cadence.every(data.get("interval_type") or "", data["interval_count"])
        except ValueError as exc:
            self.add_error("cron" if kind == "cron" else "interval_count", f"{exc}.")
            return data
        data["cadence"] = cadence
        self._check_priority(data)
        return data

    def _check_priority(self, data: dict[str, Any]) -> None:
        priority, task_name = data.get("priority"), data.get("task")
        if priority is None or not isinstance(task_name, str) or task_name not in registry:
            return
        queue_name = data.get("queue") or registry[task_name].queue
        maximum = get_config().queue(queue_name).max_priority
        if priority > maximum:
            self.add_error("priority", f"Queue {queue_name!r} accepts priorities up to {maximum}.")

    def save(self) -> ScheduledTask:
        """Create or update the schedule and compute its next run from now."""
        data = self.cleaned_data
        fields = {
            "task_name": data["task_name"],
            "task": data["task"],
            "queue": data.get("queue") or "",
            "priority": data.get("priority"),
            "task_args": data["task_args"],
            "task_kwargs": data["task_kwargs"],
            "active": data["active"],
        }
        return save_schedule(fields, data["cadence"], self.instance)
