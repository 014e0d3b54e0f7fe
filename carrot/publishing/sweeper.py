"""The outbox sweeper: publish committed rows whose first hand-over did not end in a
confirm (the process died, the broker was down or refused to answer).

Every worker process runs ``sweep_outbox()`` every few seconds. Entries younger than
``OUTBOX_GRACE`` are left to the process that wrote them; older ones are leased with a
conditional UPDATE first, so several sweepers (one per worker host) never publish the
same entry at the same time, and a sweeper that dies holding a lease only delays the
entry by ``OUTBOX_LEASE``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from carrot.broker.relays import relays
from carrot.conf import get_config
from carrot.exceptions import BrokerError, CarrotError
from carrot.models import MessageLog, OutboxEntry
from carrot.models.handover import hand_over, outgoing
from carrot.models.lifecycle import NOT_PUBLISHED, not_published

logger = logging.getLogger(__name__)

# An entry younger than this may still be published by the process that wrote it.
OUTBOX_GRACE = timedelta(seconds=30)
OUTBOX_LEASE = timedelta(seconds=60)


def _unreachable_brokers() -> dict[Any, str]:
    """Return why this process cannot publish to each broker it cannot reach now
    (connecting if it must)."""
    config = get_config()
    unreachable = {}
    for broker in config.brokers():
        try:
            relays.get(broker, config).ensure_ready(config.connect_timeout)
        except BrokerError as exc:
            unreachable[broker.key] = str(exc)
    return unreachable


def sweep_outbox(now: datetime | None = None, *, limit: int = 100) -> int:
    """Hand over outbox entries older than the grace period; return how many."""
    now = now or timezone.now()
    unreachable = _unreachable_brokers()
    candidates = (
        OutboxEntry.objects.filter(created_at__lte=now - OUTBOX_GRACE)
        .exclude(lease_until__gt=now)
        .select_related("message")
        .order_by("created_at")[:limit]
    )
    items = []
    for entry in candidates:
        log: MessageLog = entry.message
        try:
            message = (
                outgoing(log, entry.created_at) if log.status == MessageLog.PUBLISHED else None
            )
        except CarrotError as exc:  # its queue is gone from the settings, or it is too large
            MessageLog.objects.filter(pk=log.pk).apply(
                NOT_PUBLISHED, exception=not_published(str(exc))
            )
            entry.delete()
            continue
        if message is None:
            entry.delete()  # already consumed: the first publish did go through
            continue
        if message.queue.broker.key in unreachable:
            # Left for a later sweep (not leased: any sweeper may take it); the entry says
            # why it waits.
            reason = unreachable[message.queue.broker.key][:2000]
            if entry.last_error != reason:
                OutboxEntry.objects.filter(pk=entry.pk).update(last_error=reason)
            continue
        leased = OutboxEntry.objects.filter(pk=entry.pk, lease_until=entry.lease_until).update(
            lease_until=now + OUTBOX_LEASE, attempts=entry.attempts + 1
        )
        if leased:
            items.append(message)
    if items:
        hand_over(items)
        for item in items:
            logger.info("Outbox: publishing %s %s again", item.task, item.message_id)
    return len(items)
