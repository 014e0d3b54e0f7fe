"""The dead-letter page: what each queue's ``<name>.dlq`` holds (the actions, re-drive
and delete, are in ``dead_letter_actions``).

A message is paired with its MessageLog by ``message_id``; one without a usable id (the
worker gave its row a fresh one) with the closest "Message rejected" row of its queue and
task name, within a minute of RabbitMQ's ``x-death`` time. Re-drive writes the message's
call through the outbox (the rejected row's REQUEUE, or a new row under its id), publishes
it, then acks the dead-letter copy; delete acks the copy and deletes the rejected row.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from carrot.broker.dead_letters import SCAN_LIMIT, DeadLetter, browse
from carrot.conf import CarrotConfig, QueueConfig, get_config
from carrot.exceptions import BrokerError, CarrotError
from carrot.masking import SECRET_NAME, mask, mask_text
from carrot.models import MessageLog
from carrot.models.lifecycle import FAILED, REJECTED_PREFIX, REJECTED_TYPE
from carrot.monitor.access import may, monitor_view
from carrot.monitor.common import TAB_LABELS, counts, htmx, notify, with_notices
from carrot.worker import gate

PAGE = 100  # messages per queue and page view
ROWS = 100  # rejected rows without a message shown per queue
MATCH_WINDOW = timedelta(seconds=60)
KEY = re.compile(r"[0-9a-f]{32}")
CHANGE, DELETE = "carrot.change_messagelog", "carrot.delete_messagelog"
REJECTED = {"status": FAILED, "exception_type": REJECTED_TYPE}  # a "Message rejected" row
FIXED = {"slug": "dead-letters", "tabs": TAB_LABELS, "page_size": PAGE, "scan_limit": SCAN_LIMIT}


@dataclass
class Item:
    """One dead-lettered message as the page shows it."""

    letter: DeadLetter
    row: MessageLog | None
    task: str
    reason: str
    when: datetime | None
    args: Any = None
    kwargs: Any = None
    body: str = ""  # a masked preview when the body is not carrot's envelope
    blocked: str = ""  # why it cannot be re-driven ("" = it can)

    @property
    def rejected(self) -> bool:
        return self.row is not None and _is_rejected(self.row)


@dataclass
class Section:
    """One queue's dead letters."""

    queue: QueueConfig
    items: list[Item] = field(default_factory=list)
    start: int = 0
    waiting: int = 0
    error: str = ""
    orphans: list[MessageLog] = field(default_factory=list)  # rejected rows, no message
    complete: bool = False  # every message of the queue is on this page

    @property
    def end(self) -> int:
        return self.start + len(self.items)

    @property
    def next_start(self) -> int | None:
        later = self.start + PAGE
        return later if self.waiting > self.end and later + PAGE <= SCAN_LIMIT else None


def _is_rejected(row: MessageLog) -> bool:
    return row.status == FAILED and row.exception_type == REJECTED_TYPE


def rejected_rows(queue: QueueConfig) -> Any:
    return MessageLog.objects.filter(queue=queue.name, **REJECTED).order_by("-id")


def uuid_of(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _preview(item: Item, config: CarrotConfig) -> None:
    """Set the item's masked arguments, or a preview of a body that is not carrot's JSON.

    Free text cannot be masked reliably (``mask_text`` knows ``name=value``, not every way
    a secret can be written), so a body that is too large, or not JSON and mentioning a
    secret-looking name, is described instead of shown.
    """
    body = item.letter.delivery.body
    if len(body) > config.max_message_bytes:
        item.body = f"(larger than max_message_bytes, {config.max_message_bytes:,}: not shown)"
        return
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or too deep
        data = body[:400].decode("utf-8", "replace")
        if SECRET_NAME.search(data):
            item.body = "(not JSON, and it mentions a secret-looking name: not shown)"
            return
    if isinstance(data, dict) and set(data) >= {"args", "kwargs"}:
        item.args, item.kwargs = mask(data["args"]), mask(data["kwargs"])
    else:
        text = data if isinstance(data, str) else json.dumps(mask(data), ensure_ascii=False)
        item.body = mask_text(text)[:400]


def describe(letter: DeadLetter, row: MessageLog | None, config: CarrotConfig) -> Item:
    delivery, death = letter.delivery, letter.death
    now_says = gate.admit(delivery, delivery.type, config.max_message_bytes)
    if row is not None and _is_rejected(row):
        reason = row.exception.removeprefix(REJECTED_PREFIX)
    elif isinstance(now_says, str):
        reason = now_says
    else:  # it would pass the gate: RabbitMQ's reason, or none (put there by hand)
        reason = f"RabbitMQ: {death.reason}" if death else "no x-death header: put there directly"
    when = death.time if death and death.time else None
    if when is None and row is not None and _is_rejected(row):
        when = row.failure_time
    if when is None and delivery.timestamp:
        when = datetime.fromtimestamp(delivery.timestamp, UTC)
    item = Item(letter, row, delivery.type or "", mask_text(reason), when)
    _preview(item, config)
    if isinstance(now_says, str):
        again = "" if now_says == reason else f": {now_says}"
        item.blocked = mask_text(f"it would be rejected again{again}")
    elif row is not None and not _is_rejected(row):
        item.blocked = f"its task is {row.status} (this is a stray copy)"
    elif row is not None and row.task != delivery.type:
        item.blocked = f"its task row names another task ({row.task})"
    return item


def _pair(section: Section, letters: list[DeadLetter], config: CarrotConfig) -> None:
    ids = {u for u in (uuid_of(x.delivery.message_id) for x in letters) if u is not None}
    rows = {r.uuid: r for r in MessageLog.objects.filter(uuid__in=ids)}
    candidates = list(rejected_rows(section.queue).exclude(uuid__in=ids)[:500])
    used: set[int] = set()
    for letter in letters:
        message_id = uuid_of(letter.delivery.message_id)
        row = rows.get(message_id) if message_id else _closest(letter, candidates, used)
        section.items.append(describe(letter, row, config))
    if section.complete:
        section.orphans = [r for r in candidates if r.pk not in used][: ROWS + 1]


def _closest(letter: DeadLetter, rows: list[MessageLog], used: set[int]) -> MessageLog | None:
    """Return the rejected row written for a message without a usable id: same task name,
    failed closest to RabbitMQ's dead-lettering time (within a minute)."""
    death = letter.death
    if death is None or death.time is None:
        return None
    task, when = (letter.delivery.type or "(no task name)")[:255], death.time
    gaps = {r.pk: abs(r.failure_time - when) for r in rows if r.failure_time and r.task == task}
    near = [r for r in rows if r.pk not in used and gaps.get(r.pk, MATCH_WINDOW) < MATCH_WINDOW]
    best = min(near, key=lambda r: gaps[r.pk], default=None)
    if best is not None:
        used.add(best.pk)
    return best


def _sections(queues: list[QueueConfig], start: int, config: CarrotConfig) -> list[Section]:
    by_broker: dict[Any, list[QueueConfig]] = {}
    for queue in queues:
        by_broker.setdefault(queue.broker.key, []).append(queue)
    out = {}
    for group in by_broker.values():
        try:
            looked = browse(group, config, start=start, limit=PAGE)
        except BrokerError as exc:  # the rows are listed, read-only
            for queue in group:
                rows = list(rejected_rows(queue)[: ROWS + 1])
                out[queue.name] = Section(queue, error=str(exc), orphans=rows)
            continue
        for found in looked:
            section = Section(found.queue, start=found.start, waiting=found.waiting)
            section.complete = found.start == 0 and len(found.letters) >= found.waiting
            _pair(section, found.letters, config)
            out[found.queue.name] = section
    return [out[q.name] for q in queues]


def context_of(request: HttpRequest, data: QueryDict) -> dict[str, Any]:
    """Build the page from its query (``queue`` to show one queue, ``start`` to page)."""
    config = get_config()
    shown = str(data.get("queue", ""))[:255]
    queues, start = list(config.queues), 0
    if shown:
        try:
            queues = [config.queue(shown)]
        except CarrotError:
            notify(request, f"There is no queue {shown!r}; showing every queue.", "error")
            shown = ""
        raw = str(data.get("start", "0"))
        if re.fullmatch(r"[0-9]{1,4}", raw) and int(raw) % PAGE == 0:
            start = min(int(raw), SCAN_LIMIT - PAGE)
        elif raw:
            notify(request, f"'start' must be a multiple of {PAGE} below {SCAN_LIMIT}.", "error")
    return {
        **FIXED,
        "sections": _sections(queues, start, config),
        "shown": shown,
        "start": start,
        "may_redrive": may(request, CHANGE),
        "may_delete": may(request, DELETE),
        "list_url": reverse("carrot:dead_letters"),
        "counts": counts(),
    }


@require_GET
@monitor_view
def dead_letter_list(request: HttpRequest) -> HttpResponse:
    """Every queue's dead letters: reason, task, masked arguments, time, and actions."""
    context = context_of(request, request.GET)
    if htmx(request).target == "dead-letters":
        return with_notices(request, render(request, "carrot/_dead_letters.html", context))
    return render(request, "carrot/dead_letters.html", context)  # notices through messages
