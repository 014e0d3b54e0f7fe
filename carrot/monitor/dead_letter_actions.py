"""The dead-letter page's actions: re-drive a dead-lettered message, or delete it.

Re-drive writes the message's call through the outbox (the rejected row's REQUEUE, or a
new row under its id), publishes it, then acks the dead-letter copy; delete acks the copy
(and any other copy of the same message) and deletes the rejected row, in one
transaction, so the dead-letter queue and the "Message rejected" rows agree.
"""

from __future__ import annotations

import uuid
from contextlib import nullcontext
from typing import Any
from urllib.parse import urlencode

from django.db import IntegrityError, router, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from carrot.broker.dead_letters import DeadLetter, holding
from carrot.broker.outgoing import Outgoing
from carrot.conf import CarrotConfig, QueueConfig, get_config
from carrot.exceptions import BrokerError, CarrotError, PublishError
from carrot.masking import search_text
from carrot.models import MessageLog
from carrot.models.handover import hand_over, outgoing, publishable
from carrot.models.lifecycle import REQUEUE
from carrot.models.outbox import add_entries, insert_with_entries
from carrot.monitor.access import monitor_view
from carrot.monitor.common import confirm_first, htmx, notify, with_notices
from carrot.monitor.dead_letters import (
    CHANGE,
    DELETE,
    KEY,
    REJECTED,
    context_of,
    describe,
    rejected_rows,
    uuid_of,
)
from carrot.publishing.calls import prepare
from carrot.worker import gate


def _after_action(request: HttpRequest, error: str = "") -> HttpResponse:
    """Show the page again: the fragment for htmx, a redirect (with the notices) otherwise."""
    if error:
        notify(request, error, "error")
    query = {k: str(request.POST.get(k, ""))[:255] for k in ("queue_shown", "start")}
    data = QueryDict(mutable=True)
    if query["queue_shown"]:
        data.update({"queue": query["queue_shown"], "start": query["start"]})
    if htmx(request):
        context = context_of(request, data)
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
    row = uuid_of(request.POST.get("row")) if request.POST.get("row") else None
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
            message_id = uuid_of(letter.delivery.message_id)
            row = MessageLog.objects.filter(uuid=message_id).first() if message_id else None
            blocked = describe(letter, row, config).blocked
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
        options["uuid"] = uuid_of(letter.delivery.message_id)
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
    wanted = (
        (lambda x: x.key == key) if key else (lambda x: uuid_of(x.delivery.message_id) == row_id)
    )
    using = router.db_for_write(MessageLog)
    try:
        with holding(work, config, wanted, first=bool(key)) as held:
            if key and not held.letters:
                notify(request, GONE.format(work.dead_letter_queue), "error")
                return _after_action(request)
            ids = {uuid_of(x.delivery.message_id) for x in held.letters} - {None}
            ids = ids or ({row_id} if row_id else set())  # a message without a usable id
            # Other copies of the same message (a publish repeated after a lost confirm)
            # go with it: its row is deleted, so none may stay behind without one.
            copies = (
                holding(work, config, lambda x: uuid_of(x.delivery.message_id) in ids, first=False)
                if key and ids
                else nullcontext(None)
            )
            with copies as more:
                extra = more.letters if more is not None else []
                letters = [*held.letters, *extra]
                # An ack that fails rolls the delete back: the queue and the rows agree.
                with transaction.atomic(using=using):
                    _, per_model = rejected_rows(work).filter(uuid__in=ids).delete()
                    for letter in held.letters:
                        held.ack(letter)
                    if more is not None:
                        for letter in extra:
                            more.ack(letter)
    except BrokerError as exc:
        notify(request, f"Nothing was deleted: {exc}", "error")
        return _after_action(request)
    rows = per_model.get(MessageLog._meta.label, 0)
    notify(request, f"Deleted {len(letters)} message(s) and {rows} rejected task row(s).")
    return _after_action(request)
