"""A read-only admin for MessageLog; the monitor (``carrot.urls``) is where tasks are operated."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from carrot.models import MessageLog


@admin.register(MessageLog)
class MessageLogAdmin(admin.ModelAdmin):
    list_display = ("task", "status", "queue", "priority", "publish_time", "attempts")
    list_filter = ("status", "queue")
    search_fields = ("task", "uuid")
    date_hierarchy = "publish_time"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
