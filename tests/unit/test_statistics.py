"""Runtime buckets, percentiles and the chart geometry: pure, no services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from carrot.models.statistics import BOUNDS, Summary, floor
from carrot.monitor.charts import HEIGHT, WIDTH, throughput_chart

T0 = datetime(2026, 12, 1, 10, 17, 42, 123456, tzinfo=UTC)


def summary(*runtimes: float, failed: int = 0) -> Summary:
    s = Summary()
    for i, seconds in enumerate(runtimes):
        s.add(i < len(runtimes) - failed, seconds, f"id-{i}", T0 + timedelta(seconds=i))
    return s


def test_floor_to_the_minute_and_the_hour():
    assert floor(T0, 60) == datetime(2026, 12, 1, 10, 17, tzinfo=UTC)
    assert floor(T0, 3600) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_counts_rate_mean_and_max():
    s = summary(0.1, 0.2, 0.3, 3.0, failed=1)
    assert (s.completed, s.failed, s.runs) == (3, 1, 4)
    assert s.failure_rate == pytest.approx(0.25)
    assert s.mean == pytest.approx(0.9)
    assert s.runtime_max == 3.0
    assert s.last_failure == "id-3"


def test_percentiles_stay_inside_the_bucket_of_the_true_value():
    runtimes = [0.001 * (i + 1) for i in range(1000)]  # 1 ms .. 1 s, evenly
    s = summary(*runtimes)
    for p, true in ((0.5, 0.5), (0.95, 0.95), (0.99, 0.99)):
        estimate = s.percentile(p)
        assert estimate is not None
        # The estimate lies in the bucket that holds the true value.
        i = next(i for i, bound in enumerate(BOUNDS) if true <= bound)
        low = BOUNDS[i - 1] if i else 0.0
        assert low <= estimate <= BOUNDS[i], (p, estimate)
    assert s.percentile(1.0) == pytest.approx(1.0)


def test_a_percentile_never_exceeds_the_maximum():
    s = summary(0.7, 0.7, 0.7)  # bucket (0.5, 1.0]; the max is 0.7
    assert s.percentile(0.95) <= 0.7
    assert Summary().percentile(0.5) is None


def test_merging_equals_adding_everything_to_one():
    a, b = summary(0.01, 0.5, failed=1), summary(2.0, 40.0, 4000.0, failed=1)
    merged = Summary()
    merged.merge(a)
    merged.merge(b)
    assert (merged.completed, merged.failed) == (3, 2)
    assert merged.runtime_max == 4000.0
    assert merged.histogram == [x + y for x, y in zip(a.histogram, b.histogram, strict=True)]
    assert sum(merged.histogram) == 5
    assert merged.histogram[-1] == 1  # above an hour: the last bucket


def test_the_latest_failure_wins_whatever_the_merge_order():
    early, late = Summary(), Summary()
    early.add(False, 1.0, "early", T0)
    late.add(False, 1.0, "late", T0 + timedelta(minutes=5))
    merged = Summary()
    merged.merge(late)
    merged.merge(early)
    assert merged.last_failure == "late"


def test_chart_bars_are_stacked_and_scaled_to_the_peak():
    minutes = [
        (T0 + timedelta(minutes=i), c, f) for i, (c, f) in enumerate([(0, 0), (30, 10), (10, 0)])
    ]
    chart = throughput_chart(minutes)
    assert (chart.peak, chart.completed, chart.failed) == (40, 40, 10)
    empty, busy, light = chart.bars
    assert empty.completed_height == 0 and empty.failed_height == 0
    assert busy.completed_height + busy.failed_height == pytest.approx(HEIGHT)
    assert busy.failed_y == pytest.approx(0)  # the tallest bar reaches the top
    assert busy.completed_y == pytest.approx(HEIGHT - busy.completed_height)
    assert light.completed_height == pytest.approx(HEIGHT / 4)
    assert all(b.x + b.width <= WIDTH for b in chart.bars)
    assert busy.x > empty.x


def test_an_idle_hour_draws_no_bars():
    chart = throughput_chart([(T0 + timedelta(minutes=i), 0, 0) for i in range(60)])
    assert chart.peak == 0 and len(chart.bars) == 60
    assert all(b.completed_height == 0 for b in chart.bars)
