"""Where messages go (routes, delay buckets) and when a call may run (countdown, eta)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from carrot.broker.topology import delay_bucket
from carrot.tasks import resolve_eta


def test_delay_buckets_are_powers_of_two():
    assert [delay_bucket(s) for s in (0.6, 1, 3, 4, 5, 100, 10**9)] == [1, 1, 2, 4, 4, 64, 2**21]


def test_countdown_and_eta_validation():
    assert resolve_eta(None, None) is None
    eta = resolve_eta(60, None)
    assert timedelta(seconds=59) < eta - datetime.now(tz=UTC) <= timedelta(seconds=60)
    with pytest.raises(ValueError, match="not both"):
        resolve_eta(1, timezone.now())
    with pytest.raises(ValueError, match="aware"):
        resolve_eta(None, datetime(2030, 1, 1))  # noqa: DTZ001
    with pytest.raises(ValueError, match=">= 0"):
        resolve_eta(-1, None)
