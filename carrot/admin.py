"""A read-only admin for MessageLog that masks like the monitor; the monitor
(``carrot.urls``) is where tasks are operated."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from carrot.masking import mask, mask_text
from carrot.models import MessageLog


def _json(value: Any) -> str:
    return json.dumps(mask(value), indent=2, ensure_ascii=False)


@admin.register(MessageLog)
class MessageLogAdmin(admin.ModelAdmin):
    list_display = ("task", "status", "queue", "priority", "publish_time", "attempts")
    list_filter = ("status", "queue")
    search_fields = ("task", "uuid")  # never the arguments: they may hold secrets
    date_hierarchy = "publish_time"
    show_full_result_count = False
    # The raw arguments, output, error and log are shown masked, through these instead.
    exclude = ("task_args", "task_kwargs", "output", "exception", "traceback", "log")
    readonly_fields = (
        "arguments",
        "keyword_arguments",
        "result",
        "error",
        "error_traceback",
        "log_lines",
    )

    @admin.display(description="arguments")
    def arguments(self, obj: MessageLog) -> str:
        return _json(obj.task_args)

    @admin.display(description="keyword arguments")
    def keyword_arguments(self, obj: MessageLog) -> str:
        return _json(obj.task_kwargs)

    @admin.display(description="output")
    def result(self, obj: MessageLog) -> str:
        return _json(obj.output)

    @admin.display(description="exception")
    def error(self, obj: MessageLog) -> str:
        return mask_text(obj.exception)

    @admin.display(description="traceback")
    def error_traceback(self, obj: MessageLog) -> str:
        return mask_text(obj.traceback)

    @admin.display(description="log")
    def log_lines(self, obj: MessageLog) -> str:
        return "\n".join(
            f"{r.get('time', '')} {r.get('level', '')} {mask_text(str(r.get('message', '')))}"
            for r in obj.log or []
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
