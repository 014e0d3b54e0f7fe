"""The dead-letter page: what each queue's ``<name>.dlq`` holds; re-drive and delete.

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
from urllib.parse import urlencode

from django.db import IntegrityError, router, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from carrot.broker.dead_letters import SCAN_LIMIT, DeadLetter, browse, holding
from carrot.broker.outgoing import Outgoing
from carrot.conf import CarrotConfig, QueueConfig, get_config
from carrot.exceptions import BrokerError, CarrotError, PublishError
from carrot.masking import mask, mask_text, search_text
from carrot.models import MessageLog
from carrot.models.handover import hand_over, outgoing, publishable
from carrot.models.lifecycle import FAILED, REJECTED_PREFIX, REJECTED_TYPE, REQUEUE
from carrot.models.outbox import add_entries, insert_with_entries
from carrot.monitor.access import may, monitor_view
from carrot.monitor.common import TAB_LABELS, confirm_first, counts, htmx, notify, with_notices
from carrot.publishing.calls import prepare
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


def _rejected_rows(queue: QueueConfig) -> Any:
    return MessageLog.objects.filter(queue=queue.name, **REJECTED).order_by("-id")


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def _preview(item: Item, config: CarrotConfig) -> None:
    """Set the item's masked arguments, or a masked preview of a body that is not JSON."""
    body = item.letter.delivery.body
    try:
        data = json.loads(body[: config.max_message_bytes])
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or too deep
        data = body[:400].decode("utf-8", "replace")
    if isinstance(data, dict) and set(data) >= {"args", "kwargs"}:
        item.args, item.kwargs = mask(data["args"]), mask(data["kwargs"])
    else:
        text = data if isinstance(data, str) else json.dumps(mask(data), ensure_ascii=False)
        item.body = mask_text(text)[:400]


def _describe(letter: DeadLetter, row: MessageLog | None, config: CarrotConfig) -> Item:
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
    ids = {u for u in (_uuid(x.delivery.message_id) for x in letters) if u is not None}
    rows = {r.uuid: r for r in MessageLog.objects.filter(uuid__in=ids)}
    candidates = list(_rejected_rows(section.queue).exclude(uuid__in=ids)[:500])
    used: set[int] = set()
    for letter in letters:
        message_id = _uuid(letter.delivery.message_id)
        row = rows.get(message_id) if message_id else _closest(letter, candidates, used)
        section.items.append(_describe(letter, row, config))
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
                rows = list(_rejected_rows(queue)[: ROWS + 1])
                out[queue.name] = Section(queue, error=str(exc), orphans=rows)
            continue
        for found in looked:
            section = Section(found.queue, start=found.start, waiting=found.waiting)
            section.complete = found.start == 0 and len(found.letters) >= found.waiting
            _pair(section, found.letters, config)
            out[found.queue.name] = section
    return [out[q.name] for q in queues]


def _context(request: HttpRequest, data: QueryDict) -> dict[str, Any]:
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
    context = _context(request, request.GET)
    if htmx(request).target == "dead-letters":
        return with_notices(request, render(request, "carrot/_dead_letters.html", context))
    return render(request, "carrot/dead_letters.html", context)  # notices through messages


def _after_action(request: HttpRequest, error: str = "") -> HttpResponse:
    """Show the page again: the fragment for htmx, a redirect (with the notices) otherwise."""
    if error:
        notify(request, error, "error")
    query = {k: str(request.POST.get(k, ""))[:255] for k in ("queue_shown", "start")}
    data = QueryDict(mutable=True)
    if query["queue_shown"]:
        data.update({"queue": query["queue_shown"], "start": query["start"]})
    if htmx(request):
        context = _context(request, data)
        return with_notices(request, render(request, "carrot/_dead_letters.html", context))
    url = reverse("carrot:dead_letters")
    return HttpResponseRedirect(f"{url}?{urlencode(data)}" if data else url)


def _target(
    request: HttpRequest, name: str, question: str, *, by_row: bool
) -> tuple[QueueConfig, str, uuid.UUID | None] | HttpResponse | None:
    """Return the queue, message key and row id an action names; None (with a notice) for
    an unknown queue, or the confirmation page when the browser could not ask."""
    try:
        queue = get_config().queue(name)
    except CarrotError:
        notify(request, f"There is no queue {name[:100]!r}.", "error")
        return None
    key = str(request.POST.get("key", ""))
    key = key if KEY.fullmatch(key) else ""
    row = _uuid(request.POST.get("row")) if request.POST.get("row") else None
    if not key and not (by_row and row):
        return queue, "", None  # nothing to ask about
    return confirm_first(request, question) or (queue, key, row)


def _label(letter: DeadLetter) -> str:
    return f"{letter.delivery.type or '(no task name)'} ({letter.delivery.message_id or 'no id'})"


def _choose(request: HttpRequest, target: Any) -> HttpResponse:  # no queue, or no message
    return _after_action(request, "Choose a dead-lettered message first." if target else "")


GONE = (
    "That message is no longer in {} (already re-driven or deleted, or another page was "
    "reading the queue at that moment); the list is fresh now."
)


@transaction.non_atomic_requests
@require_POST
@monitor_view(permission=CHANGE)
def dead_letter_redrive(request: HttpRequest, queue: str) -> HttpResponse:
    """Publish a dead-lettered message's call to its queue again, then drop the copy."""
    target = _target(request, queue, f"Re-drive this message to {queue[:100]}?", by_row=False)
    if not isinstance(target, tuple) or not target[1]:
        return target if isinstance(target, HttpResponse) else _choose(request, target)
    config, (work, key, _row) = get_config(), target
    try:
        with holding(work, config, lambda letter: letter.key == key) as held:
            if not held.letters:
                notify(request, GONE.format(work.dead_letter_queue), "error")
                return _after_action(request)
            letter = held.letters[0]
            message_id = _uuid(letter.delivery.message_id)
            row = MessageLog.objects.filter(uuid=message_id).first() if message_id else None
            blocked = _describe(letter, row, config).blocked
            text, level = (f"{_label(letter)} cannot be re-driven: {blocked}.", "refused")
            if not blocked:
                text, level = _redrive(letter, row, work, config)
            if level != "refused":
                try:
                    held.ack(letter)
                except BrokerError as exc:
                    text += f" Its copy stays in {work.dead_letter_queue} ({exc}); delete it."
            notify(request, text, "error" if level in ("error", "refused") else "success")
    except BrokerError as exc:
        notify(request, f"Nothing was re-driven: {exc}", "error")
    return _after_action(request)


def _record(letter: DeadLetter, row: MessageLog | None, queue: QueueConfig) -> Outgoing | None:
    """Write the message's call as PUBLISHED with an outbox entry: the rejected row goes
    through REQUEUE with the message's arguments, or a new row is inserted under the
    message's id. Return the message to hand over, None if the row changed meanwhile."""
    config = get_config()
    admitted = gate.admit(letter.delivery, letter.delivery.type, config.max_message_bytes)
    assert not isinstance(admitted, str)  # _describe blocked it otherwise
    args, kwargs = admitted.args, admitted.kwargs
    using = router.db_for_write(MessageLog)
    if row is None:
        options: dict[str, Any] = {"queue": queue.name, "queue_config": queue, "who": "re-drive"}
        options["priority"] = min(max(letter.delivery.priority or 0, 0), queue.max_priority)
        options["uuid"] = _uuid(letter.delivery.message_id)
        prepared = prepare(admitted.task.name, args, kwargs, **options)
        with transaction.atomic(using=using):
            written = insert_with_entries([prepared.log], using)
        return outgoing(prepared.log, written, body=prepared.body, queue=prepared.queue)
    row.task_args, row.task_kwargs = args, kwargs
    publishable(row)  # its queue is configured and the arguments fit
    rows = MessageLog.objects.using(using).filter(pk=row.pk, **REJECTED)
    with transaction.atomic(using=using):
        text = search_text(args, kwargs)
        if not rows.update(task_args=args, task_kwargs=kwargs, search_text=text):
            return None
        rows.apply(REQUEUE)
        written = add_entries([row.pk], using)
    row.refresh_from_db(using=using)
    return outgoing(row, written)


def _redrive(
    letter: DeadLetter, row: MessageLog | None, queue: QueueConfig, config: CarrotConfig
) -> tuple[str, str]:
    """Record and publish the message's call; return the notice and "success",
    "unconfirmed", "error" (the row owns the call now) or "refused" (nothing written)."""
    label = _label(letter)
    try:
        message = _record(letter, row, queue)
    except IntegrityError:
        return f"{label} was not re-driven: a task with its id appeared meanwhile.", "refused"
    except (CarrotError, ValueError, TypeError) as exc:
        return f"{label} was not re-driven: {exc}", "refused"
    if message is None:
        return f"{label} was not re-driven: its task changed meanwhile.", "refused"
    # The row and its outbox entry own the call now: the copy is acked whatever RabbitMQ
    # answers (a refusal leaves the task FAILED "Not published", to requeue).
    try:
        hand_over([message], wait=config.publish_timeout)
    except PublishError as exc:
        return f"{label}: RabbitMQ refused the re-driven message ({exc}); requeue it.", "error"
    except BrokerError as exc:
        return f"{label} is queued again; it is published when RabbitMQ is back ({exc}).", "error"
    if message.receipt is not None and not message.receipt.wait(0):
        text = f"Re-drove {label} to {queue.name!r}; RabbitMQ has not confirmed it yet."
        return f"{text} The outbox publishes it again if needed.", "unconfirmed"
    return f"Re-drove {label} to queue {queue.name!r}; it is queued again.", "success"


@transaction.non_atomic_requests
@require_POST
@monitor_view(permission=DELETE)
def dead_letter_delete(request: HttpRequest, queue: str) -> HttpResponse:
    """Drop a dead-lettered message and its "Message rejected" row (or a rejected row
    whose message is gone, with any copy of it still in the queue)."""
    question = f"Delete this dead-lettered message of queue {queue[:100]}?"
    target = _target(request, queue, question, by_row=True)
    if not isinstance(target, tuple) or not (target[1] or target[2]):
        return target if isinstance(target, HttpResponse) else _choose(request, target)
    config, (work, key, row_id) = get_config(), target
    wanted = (lambda x: x.key == key) if key else (lambda x: _uuid(x.delivery.message_id) == row_id)
    using = router.db_for_write(MessageLog)
    try:
        with holding(work, config, wanted, first=bool(key)) as held:
            if key and not held.letters:
                notify(request, GONE.format(work.dead_letter_queue), "error")
                return _after_action(request)
            ids = {_uuid(x.delivery.message_id) for x in held.letters} - {None}
            ids = ids or ({row_id} if row_id else set())  # a message without a usable id
            # An ack that fails rolls the delete back: the queue and the rows still agree.
            with transaction.atomic(using=using):
                _, per_model = _rejected_rows(work).filter(uuid__in=ids).delete()
                for letter in held.letters:
                    held.ack(letter)
    except BrokerError as exc:
        notify(request, f"Nothing was deleted: {exc}", "error")
        return _after_action(request)
    rows = per_model.get(MessageLog._meta.label, 0)
    notify(request, f"Deleted {len(held.letters)} message(s) and {rows} rejected task row(s).")
    return _after_action(request)
