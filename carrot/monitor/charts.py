"""Server-rendered SVG charts: the geometry in Python, the drawing in a template.

No JavaScript charting library and nothing from a CDN: a chart is a few ``<rect>``
elements with a ``<title>`` each, so its numbers are readable as text too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

WIDTH = 600
HEIGHT = 120
GAP = 2


@dataclass(frozen=True)
class Bar:
    minute: datetime
    completed: int
    failed: int
    x: float
    width: float
    completed_y: float
    completed_height: float
    failed_y: float
    failed_height: float


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    peak: int
    completed: int
    failed: int
    width: int = WIDTH
    height: int = HEIGHT


def throughput_chart(minutes: list[tuple[datetime, int, int]]) -> Chart:
    """Stacked bars, one per minute: completed at the bottom, failed on top."""
    peak = max((c + f for _, c, f in minutes), default=0)
    scale = HEIGHT / peak if peak else 0.0
    step = WIDTH / max(len(minutes), 1)
    bars = []
    for i, (minute, completed, failed) in enumerate(minutes):
        done_h, failed_h = completed * scale, failed * scale
        bars.append(
            Bar(
                minute=minute,
                completed=completed,
                failed=failed,
                x=round(i * step, 2),
                width=round(max(step - GAP, 1.0), 2),
                completed_y=round(HEIGHT - done_h, 2),
                completed_height=round(done_h, 2),
                failed_y=round(HEIGHT - done_h - failed_h, 2),
                failed_height=round(failed_h, 2),
            )
        )
    return Chart(
        bars=bars,
        peak=peak,
        completed=sum(c for _, c, _ in minutes),
        failed=sum(f for _, _, f in minutes),
    )
